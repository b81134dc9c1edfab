"""Step `evaluate`: score each protocol's test split with that protocol's best scorer.

Writes `metrics/scorer.json` — `{protocol: {dimension: {srcc, plcc, krcc, rmse, srcc_ci95}}}`, PLCC and
RMSE after the 4-parameter logistic fit, CI by bootstrap — a per-distortion breakdown, scatter plots
(PNG, and CSV for `dvc plots`), and logs all of it to the protocol's MLflow training run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from mint_iqa.config import DIMENSIONS, Params
from mint_iqa.data import manifest
from mint_iqa.data.splits import split_column
from mint_iqa.inference import Scorer
from mint_iqa.io import atomic_write, write_text
from mint_iqa.metrics import agreement, srcc


def predict_split(params: Params, protocol: str, split: str = "test") -> pd.DataFrame:
    """The split's manifest rows with `<dimension>_pred` columns from the protocol's best scorer."""
    prepared = Path(params.prepare.out_dir)
    df, meta = manifest.read(prepared)
    root = manifest.image_root(prepared, meta)
    df = df[df[split_column(protocol)] == split].reset_index(drop=True)
    scorer = Scorer.load(Path(params.train.out_dir) / protocol / "best")
    scores = scorer.score([root / p for p in df["image"]], list(df["prompt"]), params.evaluate.batch_size)
    for dim in DIMENSIONS:
        df[f"{dim}_pred"] = scores[dim].to_numpy()
    df["status"] = scores["status"].to_numpy()
    return df


def breakdown(df: pd.DataFrame) -> dict[str, Any]:
    """SRCC of each distortion family's own dimension, per distortion type (levels 0-5 incl. pristine)."""
    out: dict[str, Any] = {}
    pristine = df[df["family"] == "pristine"]
    for dim in ("quality", "authenticity"):
        fam = df[df["family"] == dim]
        out[dim] = {name: round(srcc(pd.concat([g, pristine])[f"{dim}_pred"], pd.concat([g, pristine])[dim]), 4)
                    for name, g in fam.groupby("distortion")}
    return out


def scatter(df: pd.DataFrame, protocol: str, dims: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 4), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        for family, group in df.groupby("family"):
            ax.scatter(group[dim], group[f"{dim}_pred"], s=10, alpha=0.6, label=family)
        ax.set(title=f"{protocol} / {dim}  SRCC={srcc(df[f'{dim}_pred'], df[dim]):.3f}", xlabel="label",
               ylabel="prediction")
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
        results[protocol] = {dim: agreement(ok[f"{dim}_pred"].to_numpy(), ok[dim].to_numpy(), cfg.bootstrap,
                                            params.seed) for dim in dims}
        details[protocol] = {"images": len(df), "failed": int((df["status"] != "ok").sum()),
                             "by_distortion": breakdown(ok) if "family" in ok else {}}
        Path(cfg.plots).mkdir(parents=True, exist_ok=True)
        scatter(ok, protocol, dims, Path(cfg.plots) / f"{protocol}.png")
        long = pd.concat([pd.DataFrame({"id": ok["id"], "dimension": d, "label": ok[d], "prediction": ok[f"{d}_pred"]})
                          for d in dims])
        with atomic_write(Path(cfg.plots) / f"{protocol}.csv", "w") as fh:
            long.to_csv(fh, index=False)
        _log(params, protocol, results[protocol], details[protocol], Path(cfg.plots) / f"{protocol}.png")
    write_text(cfg.metrics, json.dumps(results, indent=2) + "\n")
    write_text(Path(cfg.metrics).with_name(Path(cfg.metrics).stem + "_details.json"),
               json.dumps(details, indent=2) + "\n")
    return results


def _log(params: Params, protocol: str, metrics: dict[str, Any], details: dict[str, Any], plot: Path) -> None:
    from mint_iqa import tracking

    run_file = Path(params.train.out_dir) / protocol / "mlflow_run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if run_file.exists() else None
    import mlflow

    with tracking.run(f"scorer-{protocol}", run_id=run_id):
        mlflow.log_metrics({f"test_{dim}_{k}": float(v) for dim, m in metrics.items() for k, v in m.items()
                            if not isinstance(v, list)})
        mlflow.log_artifact(str(plot), artifact_path="plots")
        mlflow.log_dict(details, "evaluation_details.json")


def table(results: dict[str, Any]) -> str:
    lines = [f"{'protocol':8s} {'dimension':15s} {'SRCC':>6s} {'PLCC':>6s} {'KRCC':>6s} {'RMSE':>6s}  95% CI (SRCC)"]
    for protocol, dims in results.items():
        for dim, m in dims.items():
            lines.append(f"{protocol:8s} {dim:15s} {m['srcc']:6.3f} {m['plcc']:6.3f} {m['krcc']:6.3f} "
                         f"{m['rmse']:6.3f}  [{m['srcc_ci95'][0]:.3f}, {m['srcc_ci95'][1]:.3f}]")
    return "\n".join(lines)

