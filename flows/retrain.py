"""Prefect flow `retrain`: new rated data in, a better model out (or the champion stays).

1. refresh the raw data: `dvc pull` from the remote, or copy a new rated CSV/JSONL (generic adapter) in;
2. validate (great-expectations) — on failure the flow stops with the report as an artifact, no retry;
3. reproduce the rest of the pipeline, register the challenger, promote it only if the gate passes.
Scheduled weekly by `prefect.yaml` (deployment `retrain`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

try:
    from flows.pipeline import PipelineResult, dvc_pull, pipeline
except ModuleNotFoundError:  # loaded by file path (a Prefect worker): make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from flows.pipeline import PipelineResult, dvc_pull, pipeline


@task(name="ingest-rated-file")
def ingest(rated: str, project: Path, params_file: str) -> str:
    """Copy a new rated file (image,prompt,labels) into `data/incoming/` and point the generic adapter at it
    in `params.yaml` (DVC then sees the change and reruns what depends on it). The retrain deployment owns its
    workspace; the previous params file is kept as `<params>.prev`, the rated file itself is only read."""
    source = Path(rated)
    if not source.is_file():
        raise FileNotFoundError(f"{rated}: rated file not found")
    inbox = project / "data" / "incoming"
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / source.name
    if target.exists() and target.read_bytes() != source.read_bytes():
        raise FileExistsError(
            f"{target}: a different file of that name was ingested before; rename the new one"
        )
    shutil.copy2(source, target)
    from mint_iqa.io import write_text

    path = project / params_file
    shutil.copy2(path, path.with_name(path.name + ".prev"))
    params = yaml.safe_load(path.read_text())
    params["data"].update(source="generic", annotations=str(target), images_dir=str(source.parent.resolve()))
    write_text(path, yaml.safe_dump(params, sort_keys=False))
    return params_file


@flow(name="retrain", log_prints=True)
def retrain(
    project: str = ".", params_file: str = "params.yaml", pull: bool = False, rated_file: str | None = None
) -> PipelineResult:
    """Refresh data, validate, reproduce, register, promote if better."""
    root = Path(project).resolve()
    if pull:
        dvc_pull(root)
    if rated_file:
        params_file = ingest(rated_file, root, params_file)
        get_run_logger().info("training on %s via %s", rated_file, params_file)
    result = pipeline(project=str(root), params_file=params_file)
    create_markdown_artifact(
        key="retrain-summary",
        markdown=(
            f"# Retrain\n\nchallenger: version {result.challenger_version}, "
            f"{'promoted' if result.promoted else 'not promoted'}; champion: {result.champion_version}\n\n"
            + result.decision
        ),
    )
    return result


if __name__ == "__main__":
    print(retrain().model_dump_json(indent=2))
