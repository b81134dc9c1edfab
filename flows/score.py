"""Prefect flow `score`: batch scoring of a folder, a manifest or an S3 prefix with a registered model.

Inputs are split into chunks, one task each, on threads (default) or Dask (`prefect-dask`: a LocalCluster,
or the address of an existing cluster). Each worker loads the model once. Output: one Parquet file, one
row per input in order, with a `status` column; chunk parts make a rerun skip finished chunks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from mint_iqa.inference import batch


class ScoreResult(BaseModel):
    out: str
    rows: int
    failed: int
    chunks: int
    skipped_chunks: int
    images_per_second: float
    summary: dict[str, Any]


@task(name="score-chunk", retries=1, retry_delay_seconds=5)
def score_chunk(index: int, items: list[batch.Item], model: str, parts: str, explain: bool) -> dict[str, Any]:
    return batch.score_chunk(index, items, model, Path(parts), explain)


def task_runner(runner: Literal["threads", "dask"], workers: int, dask_address: str | None) -> Any:
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    # one torch thread per worker process: `workers` processes share the machine's cores
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "env": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        }
    )


@flow(name="score", log_prints=True)
def score_flow(
    source: str,
    out: str,
    prompt: str | None = None,
    model: str = "models:/mint-iqa@champion",
    chunk_size: int = 256,
    explain: bool = False,
) -> ScoreResult:
    """Score every image of `source` into the Parquet file `out` (resumable through `<out>.parts/`)."""
    items = batch.list_inputs(source, prompt)
    if not items:
        raise ValueError(f"{source}: no images found")
    out_path = Path(out)
    parts = out_path.with_name(out_path.name + ".parts")
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    started = time.perf_counter()
    futures = [score_chunk.submit(i, chunk, model, str(parts), explain) for i, chunk in enumerate(chunks)]
    reports = [f.result() for f in futures]
    df = batch.assemble(parts, len(chunks), out_path)
    scored = sum(r["rows"] for r in reports if not r["skipped"])
    rate = scored / max(time.perf_counter() - started, 1e-9)
    get_run_logger().info("%d images (%d scored now) at %.1f images/s -> %s", len(df), scored, rate, out_path)
    info = batch.summary(df)
    return ScoreResult(
        out=str(out_path),
        rows=len(df),
        failed=info["failed"],
        chunks=len(chunks),
        skipped_chunks=sum(r["skipped"] for r in reports),
        images_per_second=round(rate, 2),
        summary=info,
    )


def score(
    source: str,
    out: str,
    runner: Literal["threads", "dask"] = "threads",
    workers: int = 2,
    dask_address: str | None = None,
    **kwargs: Any,
) -> ScoreResult:
    """Run `score_flow` with the chosen task runner."""
    return score_flow.with_options(task_runner=task_runner(runner, workers, dask_address))(
        source, out, **kwargs
    )


if __name__ == "__main__":
    import sys

    print(score(*sys.argv[1:3]).model_dump_json(indent=2))
