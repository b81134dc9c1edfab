"""Step `evaluate`: score each protocol's test split with that protocol's best scorer.

Writes `metrics/scorer.json` — `{protocol: {dimension: {srcc, plcc, krcc, rmse, srcc_ci95}}}`, PLCC and
RMSE after the 4-parameter logistic fit, CI by bootstrap — a per-distortion breakdown, scatter plots
(PNG, and CSV for `dvc plots`), and logs all of it to the protocol's MLflow training run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mint_iqa.config import DIMENSIONS, FLAWLESS, Params
from mint_iqa.data import manifest
from mint_iqa.data.splits import split_rows
from mint_iqa.data.synth import kinds_of
from mint_iqa.inference.scoring import Scorer, resolve_device
from mint_iqa.io import atomic_write, write_text
from mint_iqa.metrics import agreement, srcc, srcc_ceiling


def predict_split(params: Params, protocol: str, split: str = "test") -> pd.DataFrame:
    """The split's manifest rows with `<dimension>_pred` columns from the protocol's best scorer."""
    prepared = Path(params.prepare.out_dir)
    df, meta = manifest.read(prepared)
    root = manifest.image_root(prepared, meta)
    df = split_rows(df, protocol, split)
    scorer = Scorer.load(
        Path(params.train.out_dir) / protocol / "best", device=resolve_device(params.evaluate.device)
    )
    scores = scorer.score(
        [root / p for p in df["image"]], list(df["prompt"]), params.evaluate.batch_size, scale="raw"
    )
    for dim in DIMENSIONS:
        df[f"{dim}_pred"] = scores[dim].to_numpy()
    df["status"] = scores["status"].to_numpy()
    return df


def per_kind(df: pd.DataFrame, dim: str, kinds: list[str]) -> dict[str, float]:
    """SRCC of `dim` over the images showing each defect kind (composites: other defects vary too)."""
    shown = [set(kinds_of(d)) for d in df["defects"]]
    out = {}
    for kind in kinds:
        rows = df[[kind in s for s in shown]]
        if len(rows) >= 5:
            out[kind] = round(srcc(rows[f"{dim}_pred"], rows[dim]), 4)
    return out


def breakdown(df: pd.DataFrame) -> dict[str, Any]:
    """SRCC of each image family's dimension per defect kind, over the images showing that kind."""
    from mint_iqa.data.degradations import REGISTRY

    if "defects" not in df:
        return {}
    return {dim: per_kind(df, dim, list(REGISTRY[dim])) for dim in ("quality", "authenticity")}


def scatter(df: pd.DataFrame, protocol: str, dims: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 4), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        for family, group in df.groupby("family"):
            ax.scatter(group[dim], group[f"{dim}_pred"], s=10, alpha=0.6, label=family)
        ax.set(
            title=f"{protocol} / {dim}  SRCC={srcc(df[f'{dim}_pred'], df[dim]):.3f}",
            xlabel="label",
            ylabel="prediction",
        )
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def evaluate(params: Params) -> dict[str, Any]:
    cfg = params.evaluate
    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for protocol in params.train.protocols:
        df = predict_split(params, protocol)
        _, meta = manifest.read(params.prepare.out_dir)
        dims = [d for d in DIMENSIONS if d in meta.get("labels", DIMENSIONS)]
        ok = df[df["status"] == "ok"]
        results[protocol] = {
            dim: agreement(ok[f"{dim}_pred"].to_numpy(), ok[dim].to_numpy(), cfg.bootstrap, params.seed)
            for dim in dims
        }
        details[protocol] = {
            "images": len(df),
            "failed": int((df["status"] != "ok").sum()),
            "srcc_ceiling": {dim: round(srcc_ceiling(ok[dim].to_numpy()), 4) for dim in dims},
            "by_distortion": breakdown(ok),
        }
        Path(cfg.plots).mkdir(parents=True, exist_ok=True)
        scatter(ok, protocol, dims, Path(cfg.plots) / f"{protocol}.png")
        long = pd.concat(
            [
                pd.DataFrame({"id": ok["id"], "dimension": d, "label": ok[d], "prediction": ok[f"{d}_pred"]})
                for d in dims
            ]
        )
        with atomic_write(Path(cfg.plots) / f"{protocol}.csv", "w") as fh:
            long.to_csv(fh, index=False)
        _log(params, protocol, results[protocol], details[protocol], Path(cfg.plots) / f"{protocol}.png")
    write_text(cfg.metrics, json.dumps(results, indent=2) + "\n")
    write_text(
        Path(cfg.metrics).with_name(Path(cfg.metrics).stem + "_details.json"),
        json.dumps(details, indent=2) + "\n",
    )
    return results


def _log(params: Params, protocol: str, metrics: dict[str, Any], details: dict[str, Any], plot: Path) -> None:
    from mint_iqa import tracking

    run_id = tracking.run_id_of(Path(params.train.out_dir) / protocol)
    import mlflow

    with tracking.run(f"scorer-{protocol}", run_id=run_id):
        mlflow.log_metrics(
            {
                f"test_{dim}_{k}": float(v)
                for dim, m in metrics.items()
                for k, v in m.items()
                if not isinstance(v, list)
            }
        )
        mlflow.log_artifact(str(plot), artifact_path="plots")
        mlflow.log_dict(details, "evaluation_details.json")


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'protocol':8s} {'dimension':15s} {'SRCC':>6s} {'PLCC':>6s} {'KRCC':>6s} {'RMSE':>6s}"
        "  95% CI (SRCC)"
    ]
    for protocol, dims in results.items():
        for dim, m in dims.items():
            lines.append(
                f"{protocol:8s} {dim:15s} {m['srcc']:6.3f} {m['plcc']:6.3f} {m['krcc']:6.3f} "
                f"{m['rmse']:6.3f}  [{m['srcc_ci95'][0]:.3f}, {m['srcc_ci95'][1]:.3f}]"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------ stage 2: explanations


def explanation_metrics(
    frame: pd.DataFrame, answers: list[str], scores: Any, level_cuts: dict[str, list[float]] | None = None
) -> dict[str, Any]:
    """Level accuracy per dimension; defect mention (the sentence of the dimension an image's worst defect
    hurts names that defect's group, `kinds.GROUPS`: blur, noise, compression, geometry, ...) and defect kind
    (it names that very kind); ROUGE-L / BLEU-4 against the reference answers; and consistency: the level
    stated in words against the level the explainer reads from the stage-1 score (`score_grades` with the
    explainer's `level_cuts`)."""
    import torch

    from mint_iqa.data.answers import grade, parse_grades, split_answer
    from mint_iqa.data.kinds import GROUPS, named_defects
    from mint_iqa.metrics import bleu4, rouge_l
    from mint_iqa.models.decoding import score_grades

    level: dict[str, list[bool]] = {d: [] for d in DIMENSIONS}
    consistent, mentions, kinds = [], [], []
    implied = score_grades(torch.as_tensor(np.asarray(scores, dtype=np.float32)), level_cuts).tolist()
    for text, levels, (_, row) in zip(answers, implied, frame.iterrows()):
        stated = parse_grades(text)
        for i, dim in enumerate(DIMENSIONS):
            level[dim].append(stated[dim] == grade(row[dim]))
            if stated[dim] is not None:
                consistent.append(stated[dim] == levels[i])
        if row["family"] in ("quality", "authenticity") and row[row["family"]] < FLAWLESS:  # a visible defect
            named = named_defects(split_answer(text)[row["family"]])
            kinds.append(named == {row["distortion"]})
            mentions.append(bool(named) and {GROUPS[d] for d in named} == {GROUPS[row["distortion"]]})
    return {
        "level_accuracy": {d: round(float(np.mean(v)), 4) for d, v in level.items()},
        "defect_mention_accuracy": round(float(np.mean(mentions)), 4) if mentions else None,
        "defect_kind_accuracy": round(float(np.mean(kinds)), 4) if kinds else None,
        "rouge_l": round(rouge_l(answers, list(frame["answer_all"])), 4),
        "bleu4": round(bleu4(answers, list(frame["answer_all"])), 4),
        "consistency": round(float(np.mean(consistent)), 4) if consistent else None,
    }


def evaluate_explainer(params: Params) -> dict[str, Any]:
    """Explain each protocol's test images ('all three' question) and write `explain.metrics`."""
    from mint_iqa.data.answers import QUESTIONS
    from mint_iqa.inference.assess import Assessor
    from mint_iqa.models.explaining import explain_batch
    from mint_iqa.progress import progress

    results, examples = {}, {}
    for protocol in params.train.protocols:
        prepared = Path(params.prepare.out_dir)
        df, meta = manifest.read(prepared)
        root = manifest.image_root(prepared, meta)
        df = split_rows(df, protocol, "test")
        if params.explain.test_images:
            df = df.sample(n=min(len(df), params.explain.test_images), random_state=params.seed).reset_index(
                drop=True
            )
        assessor = Assessor.load(
            Path(params.explain.out_dir) / protocol / "best",
            num_beams=params.explain.num_beams,
            device=resolve_device(params.evaluate.device),
        )
        answers, scores = [], []
        for start in progress(range(0, len(df), 32), desc=f"explaining {protocol} test images", unit="batch"):
            chunk = df.iloc[start : start + 32]
            images = assessor.scorer.decode([root / p for p in chunk["image"]])
            texts, stage1 = explain_batch(
                assessor.explainer,
                assessor.texts,
                images,
                list(chunk["prompt"]),
                [QUESTIONS["all"]] * len(chunk),
                params.explain.num_beams,
            )
            answers += texts
            scores.append(stage1.scores.float().cpu().numpy())
        results[protocol] = explanation_metrics(
            df, answers, np.concatenate(scores), assessor.explainer.config.level_cuts
        )
        examples[protocol] = [
            {
                "image": row["image"],
                "prompt": row["prompt"],
                "reference": row["answer_all"],
                "generated": text,
            }
            for text, (_, row) in list(zip(answers, df.iterrows()))[:12]
        ]
        _log_explainer(params, protocol, results[protocol])
    write_text(params.explain.metrics, json.dumps(results, indent=2) + "\n")
    write_text(
        Path(params.explain.metrics).with_name(Path(params.explain.metrics).stem + "_examples.json"),
        json.dumps(examples, indent=2, ensure_ascii=False) + "\n",
    )
    return results


def _log_explainer(params: Params, protocol: str, metrics: dict[str, Any]) -> None:
    import mlflow

    from mint_iqa import tracking

    run_id = tracking.run_id_of(Path(params.explain.out_dir) / protocol)
    flat = {
        **{f"test_level_acc_{d}": v for d, v in metrics["level_accuracy"].items()},
        **{f"test_{k}": v for k, v in metrics.items() if k != "level_accuracy" and v is not None},
    }
    with tracking.run(f"explainer-{protocol}", run_id=run_id):
        mlflow.log_metrics({k: float(v) for k, v in flat.items()})
