"""A short account of what the pipeline produced and where (printed at the end of `make demo`)."""

from __future__ import annotations

import json
from pathlib import Path

from mint_iqa.config import Params


def _size(path: Path) -> str:
    total = (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        if path.is_dir()
        else path.stat().st_size
    )
    return f"{total / 1e6:.1f} MB"


def summarise(params: Params) -> str:
    lines = ["mint-iqa: what was produced", *_data(params), *_models(params), *_release(params)]
    return "\n".join(lines)


def _data(params: Params) -> list[str]:
    """The raw data, the prepared set and its validation."""
    lines = []
    raw = Path(params.data.raw_dir)
    if raw.exists():
        lines.append(
            f"  raw data         {raw}/ ({len(list((raw / 'references').glob('*.png')))} "
            f"reference photographs, {_size(raw)}; tracked by data.dvc)"
        )
    prepared = Path(params.prepare.out_dir)
    if (prepared / "dataset.json").exists():
        meta = json.loads((prepared / "dataset.json").read_text())
        lines.append(
            f"  prepared set     {prepared}/ ({meta['images']} images, {meta['instructions']} "
            f"instruction records, source={meta['source']}, {_size(prepared)})"
        )
    report = Path(params.validation.metrics)
    if report.exists():
        r = json.loads(report.read_text())
        state = "passed" if r["success"] else "FAILED"
        lines.append(
            f"  validation       {state}: {r['expectations']} expectations on {r['rows']} rows "
            f"({report}, {Path(params.validation.out_dir) / 'summary.md'})"
        )
    return lines


def _models(params: Params) -> list[str]:
    """The trained scorers and explainers, and how they measure."""
    lines = []
    for protocol in params.train.protocols:
        best = Path(params.train.out_dir) / protocol / "best"
        if (best / "model.safetensors").exists():
            epoch = (
                json.loads((best / "epoch.json").read_text())["epoch"]
                if (best / "epoch.json").exists()
                else "?"
            )
            lines.append(
                f"  scorer [{protocol:6s}] {best}/ (best epoch {epoch} on validation, {_size(best)})"
            )
    metrics = Path(params.evaluate.metrics)
    if metrics.exists():
        results = json.loads(metrics.read_text())
        lines.append(f"  test metrics     {metrics} (SRCC; plots in {params.evaluate.plots}/)")
        for protocol, dims in results.items():
            lines.append(f"    {protocol:8s} " + "  ".join(f"{d} {m['srcc']:.3f}" for d, m in dims.items()))
    general = Path(params.generalise.metrics)
    if general.exists():
        g = json.loads(general.read_text())
        lines.append(
            f"  leave-kinds-out  {general} ({g['images']} images, {len(g['held_out'])} defect kinds the lko "
            f"scorer never saw): quality {g['quality']['srcc']:.3f}  authenticity "
            f"{g['authenticity']['srcc']:.3f}"
        )
    pointing = Path(params.generalise.pointing)
    if pointing.exists():
        strict = json.loads(pointing.read_text())["strict"]
        cells = "  ".join(
            f"{d} CC {strict[d]['cc']:.2f} AUROC {strict[d]['auroc']:.2f}"
            for d in ("quality", "authenticity")
            if strict.get(d, {}).get("cc") is not None
        )
        lines.append(f"  damage maps      {pointing} (strict test photographs): {cells or 'no map head'}")
    explained = Path(params.explain.metrics)
    if explained.exists():
        lines.append(
            f"  explainer        {params.explain.out_dir}/<protocol>/best/ (assessor: scorer/ + explainer/), "
            f"metrics {explained}"
        )
        for protocol, m in json.loads(explained.read_text()).items():
            levels = "  ".join(f"{d} {v:.2f}" for d, v in m["level_accuracy"].items())
            lines.append(f"    {protocol:8s} level accuracy {levels}  consistency {m['consistency']:.2f}")
    return lines


def _release(params: Params) -> list[str]:
    """The registered model, and what to run next."""
    lines = []
    record = Path(params.registry.record)
    if record.exists():
        version = json.loads(record.read_text())["version"]
        decision = Path(params.registry.decision)
        verdict = (
            decision.read_text().splitlines()[0].removeprefix("# Promotion: ") if decision.exists() else "?"
        )
        lines.append(
            f"  registry         {params.registry.model_name} version {version} ({verdict}); "
            "mint-iqa registry show champion"
        )
        lines.append(
            "  serve it         make serve   (REST on 127.0.0.1:5001, POST /invocations; see README)"
        )
    sheet = Path("plots/degradations.png")
    if sheet.exists():
        lines.append(f"  contact sheet    {sheet}")
    lines.append(
        "  try it           mint-iqa rank --prompt P IMAGES...  |  mint-iqa score IMAGES --prompt P -o "
        "scores.csv --explain  |  mint-iqa report scores.csv -o report.html"
    )
    return lines
