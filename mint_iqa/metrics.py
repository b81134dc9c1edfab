"""IQA agreement metrics: SRCC, KRCC, PLCC after the usual 4-parameter logistic fit, RMSE, bootstrap CIs."""

from __future__ import annotations

import numpy as np
from scipy import stats

from mint_iqa.calibration import apply_logistic, logistic_params


def logistic_fit(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Map predictions onto the label scale with the fitted logistic (see `logistic_params`)."""
    return apply_logistic(pred, logistic_params(pred, label))


def _corr(fn, a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(fn(a, b)[0])


def agreement(pred: np.ndarray, label: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, object]:
    """SRCC, PLCC (after logistic fit), KRCC, RMSE (after fit) and a bootstrap 95% CI of SRCC."""
    pred, label = np.asarray(pred, float), np.asarray(label, float)
    fitted = logistic_fit(pred, label)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(pred), len(pred))
        boots.append(_corr(stats.spearmanr, pred[idx], label[idx]))
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return {
        "srcc": round(_corr(stats.spearmanr, pred, label), 4),
        "plcc": round(_corr(stats.pearsonr, fitted, label), 4),
        "krcc": round(_corr(stats.kendalltau, pred, label), 4),
        "rmse": round(float(np.sqrt(np.mean((fitted - label) ** 2))), 4),
        "srcc_ci95": [round(float(lo), 4), round(float(hi), 4)],
    }


def srcc(pred: np.ndarray, label: np.ndarray) -> float:
    return _corr(stats.spearmanr, np.asarray(pred, float), np.asarray(label, float))


def tie_share(label: np.ndarray) -> float:
    """The share of labels that hold the most common value (0 for no labels)."""
    values = np.asarray(label, float)
    values = values[np.isfinite(values)]
    return float(np.unique(values, return_counts=True)[1].max() / len(values)) if len(values) else 0.0


def srcc_ceiling(label: np.ndarray) -> float:
    """The highest SRCC a prediction without ties can reach against `label`. Tied labels cannot be told
    apart, so even a perfect ranking orders them somehow and loses correlation there (about
    sqrt(1 - f^3) when a share f of the labels are tied): 0.81 when 70 % of the images are flawless in a
    dimension and share its top label, as in the proxy set's test splits."""
    label = np.asarray(label, float)
    return srcc(stats.rankdata(label, method="ordinal"), label)


# ------------------------------------------------------------------ damage maps


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `score` for the `positive` items (ties count half); NaN without both
    classes."""
    score, positive = np.asarray(score, float).ravel(), np.asarray(positive, bool).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def map_agreement(pred: np.ndarray, truth: np.ndarray, damaged: float = 0.5) -> tuple[float, float]:
    """How well one predicted damage map points at the true one (same shape): Pearson CC over the cells
    (NaN when either map is flat), and the AUROC of the prediction for the cells whose true damage is at
    least `damaged` (NaN unless the image has both kinds of cell)."""
    pred, truth = np.asarray(pred, float).ravel(), np.asarray(truth, float).ravel()
    cc = float(np.corrcoef(pred, truth)[0, 1]) if pred.std() > 1e-9 and truth.std() > 1e-9 else float("nan")
    return cc, auroc(pred, truth >= damaged)


# ------------------------------------------------------------------ text agreement (explanations)


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-z0-9]+", text.lower())


def rouge_l(candidates: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (longest common subsequence of words)."""
    scores = []
    for cand, ref in zip(candidates, references):
        a, b = _words(cand), _words(ref)
        if not a or not b:
            scores.append(0.0)
            continue
        row = [0] * (len(b) + 1)
        for x in a:
            prev = 0
            for j, y in enumerate(b, 1):
                prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
        lcs = row[-1]
        p, r = lcs / len(a), lcs / len(b)
        scores.append(0.0 if lcs == 0 else 2 * p * r / (p + r))
    return float(np.mean(scores)) if scores else 0.0


def bleu4(candidates: list[str], references: list[str]) -> float:
    """Corpus BLEU-4 (uniform weights, brevity penalty, add-one smoothing of higher orders)."""
    from collections import Counter

    matches, totals = [0] * 4, [0] * 4
    cand_len = ref_len = 0
    for cand, ref in zip(candidates, references):
        a, b = _words(cand), _words(ref)
        cand_len, ref_len = cand_len + len(a), ref_len + len(b)
        for n in range(1, 5):
            ca = Counter(tuple(a[i : i + n]) for i in range(len(a) - n + 1))
            cb = Counter(tuple(b[i : i + n]) for i in range(len(b) - n + 1))
            matches[n - 1] += sum(min(c, cb[g]) for g, c in ca.items())
            totals[n - 1] += max(0, len(a) - n + 1)
    if cand_len == 0:
        return 0.0
    logs = [
        np.log((m + (n > 0)) / (t + (n > 0))) if t else -np.inf
        for n, (m, t) in enumerate(zip(matches, totals))
    ]
    brevity = 1.0 if cand_len > ref_len else np.exp(1 - ref_len / cand_len)
    return float(brevity * np.exp(np.mean(logs)))
