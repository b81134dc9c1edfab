"""IQA agreement metrics: SRCC, KRCC, PLCC after the usual 4-parameter logistic fit, RMSE, bootstrap CIs."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats


def _logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    return (b1 - b2) / (1 + np.exp(-(x - b3) / np.abs(b4))) + b2


def logistic_fit(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Map predictions onto the label scale with the monotonic 4-parameter logistic (VQEG practice)."""
    pred, label = np.asarray(pred, float), np.asarray(label, float)
    p0 = [label.max(), label.min(), float(np.median(pred)), float(np.std(pred)) or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(_logistic4, pred, label, p0=p0, maxfev=20000)
        return _logistic4(pred, *params)
    except (RuntimeError, ValueError):
        slope, intercept = np.polyfit(pred, label, 1) if np.std(pred) > 0 else (0.0, label.mean())
        return slope * pred + intercept


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
