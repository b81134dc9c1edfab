"""MLflow tracking in one place: the embedded default store (a sqlite file and an artifact folder in the
project) or whatever `MLFLOW_TRACKING_URI` points to (e.g. a real `mlflow server`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXPERIMENT = "mint-iqa"
RUN_FILE = "mlflow_run.json"  # beside a trained model: the MLflow run its training and evaluation log into
DEFAULT_DB, DEFAULT_ARTIFACTS = Path("mlflow.db"), Path("mlruns")


def run_id_of(folder: str | Path) -> str | None:
    """The MLflow run recorded in `folder` (None: none yet)."""
    path = Path(folder) / RUN_FILE
    return json.loads(path.read_text())["run_id"] if path.exists() else None


def record_run(folder: str | Path, run_id: str) -> None:
    from mint_iqa.io import write_text

    write_text(Path(folder) / RUN_FILE, json.dumps({"run_id": run_id}) + "\n")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB.resolve()}"


def _setup(experiment: str) -> str:
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = DEFAULT_ARTIFACTS.resolve().as_uri() if uri.startswith("sqlite:") else None
    return mlflow.create_experiment(experiment, artifact_location=location)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value, default=str) if isinstance(value, (list, dict)) else str(value)
    return out


@contextmanager
def run(
    name: str, run_id: str | None = None, experiment: str = EXPERIMENT, tags: dict[str, str] | None = None
) -> Iterator[Any]:
    """Start (or reopen, given `run_id`) an MLflow run."""
    import mlflow

    experiment_id = _setup(experiment)
    with mlflow.start_run(
        run_id=run_id, run_name=None if run_id else name, experiment_id=experiment_id, tags=tags
    ) as active:
        yield active
