"""Prefect flow `pipeline`: the DVC stages in order, then register and promote.

DVC stays the single definition of the pipeline: each task runs `dvc repro <stage>` (one at a time —
DVC does not support parallel repro in one workspace). Registration and promotion call the same
library functions as `mint-iqa register` / `promote`. Only infrastructure steps retry (remote storage,
tracking server); a validation failure stops the flow at once with the GX report as an artifact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from mint_iqa.config import load_params

STAGES = [
    "prepare",
    "validate",
    "train_scorer",
    "train_scorer_lko",
    "generalise",
    "train_explainer",
    "evaluate",
    "evaluate_explainer",
]
PER_PROTOCOL = ("train_scorer", "train_explainer")  # DVC foreach stages: one target per protocol


class PipelineResult(BaseModel):
    champion_version: str | None
    challenger_version: str
    promoted: bool
    metrics: dict[str, Any]
    decision: str


def _dvc(*args: str, cwd: Path) -> str:
    exe = Path(sys.executable).with_name("dvc")
    proc = subprocess.run(
        [str(exe if exe.exists() else "dvc"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-25:]
        raise RuntimeError(f"dvc {' '.join(args)} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return proc.stdout


@task(name="dvc-pull", retries=2, retry_delay_seconds=10)
def dvc_pull(project: Path) -> None:
    """Fetch data from the DVC remote (infrastructure: retried)."""
    _dvc("pull", cwd=project)


@task(name="dvc-push", retries=2, retry_delay_seconds=10)
def dvc_push(project: Path) -> None:
    """Send the pipeline's outputs to the DVC remote (infrastructure: retried)."""
    _dvc("push", cwd=project)


@task(name="validation-report")
def publish_validation(project: Path, params_file: str) -> bool:
    params = load_params(project / params_file)
    report = json.loads((project / params.validation.metrics).read_text())
    create_table_artifact(
        key="validation",
        description=f"great-expectations: {report['failed']} failed",
        table=[
            {k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()}
            for r in report["results"]
        ],
    )
    return bool(report["success"])


@task(name="dvc-repro")
def repro(stage: str, project: Path) -> str:
    """`dvc repro <stage>` (its upstream stages are already up to date: tasks run in order)."""
    out = _dvc("repro", stage, cwd=project)
    get_run_logger().info("dvc repro %s:\n%s", stage, "\n".join(out.strip().splitlines()[-5:]))
    return out


@task(name="register", retries=2, retry_delay_seconds=15)
def register_task(project: Path, params_file: str) -> str:
    from mint_iqa.registry import register

    os.chdir(project)
    return str(register(load_params(project / params_file)).version)


@task(name="promote", retries=2, retry_delay_seconds=15)
def promote_task(project: Path, params_file: str) -> dict[str, Any]:
    from mint_iqa.registry import promote

    os.chdir(project)
    decision = promote(load_params(project / params_file))
    create_markdown_artifact(key="promotion-decision", markdown=decision.markdown())
    return {
        "promoted": decision.promoted,
        "challenger": decision.challenger,
        "champion": decision.champion,
        "markdown": decision.markdown(),
    }


def run_stages(project: Path, params_file: str) -> dict[str, Any]:
    """prepare -> validate (gate) -> training -> evaluation; returns the metrics files' contents."""
    params = load_params(project / params_file)
    for stage in STAGES:
        targets = [f"{stage}@{p}" for p in params.train.protocols] if stage in PER_PROTOCOL else [stage]
        for target in targets:
            try:
                repro(target, project)
            except RuntimeError:
                if stage == "validate" and (project / params.validation.metrics).exists():
                    publish_validation(project, params_file)
                raise
            if stage == "validate":
                publish_validation(project, params_file)
    metrics = {
        name: json.loads((project / path).read_text())
        for name, path in (
            ("scorer", params.evaluate.metrics),
            ("explainer", params.explain.metrics),
            ("generalisation", params.generalise.metrics),
            ("pointing", params.generalise.pointing),
        )
    }
    create_table_artifact(
        key="scorer-metrics",
        table=[
            {"protocol": p, "dimension": d, **{k: v for k, v in m.items() if k != "srcc_ci95"}}
            for p, dims in metrics["scorer"].items()
            for d, m in dims.items()
        ],
    )
    return metrics


@flow(name="pipeline", log_prints=True)
def pipeline(
    project: str = ".", params_file: str = "params.yaml", pull: bool = False, push: bool = False
) -> PipelineResult:
    """Reproduce the pipeline with DVC (`pull` inputs from / `push` outputs to the DVC remote), register the
    assessor, promote it if it beats the champion."""
    root = Path(project).resolve()
    if pull:
        dvc_pull(root)
    metrics = run_stages(root, params_file)
    if push:
        dvc_push(root)
    challenger = register_task(root, params_file)
    decision = promote_task(root, params_file)
    champion = decision["challenger"] if decision["promoted"] else decision["champion"]
    return PipelineResult(
        champion_version=champion,
        challenger_version=challenger,
        promoted=decision["promoted"],
        metrics=metrics,
        decision=decision["markdown"],
    )


if __name__ == "__main__":
    print(pipeline().model_dump_json(indent=2))
