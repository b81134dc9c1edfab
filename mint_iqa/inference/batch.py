"""Batch scoring at scale: inputs split into chunks, each chunk scored once and written as its own part.

Used by the Prefect `score` flow (threads or Dask) and testable on its own. A chunk's part file is
written atomically, so a rerun skips chunks that are already done; the final Parquet is assembled in
input order and written atomically too. Each worker process loads the model once (`_MODELS` cache).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mint_iqa.config import DIMENSIONS
from mint_iqa.inference.predict import read_manifest, score_table
from mint_iqa.io import IMAGE_SUFFIXES, OK, atomic_write

_MODELS: dict[str, Any] = {}


@dataclass
class Item:
    image: str  # local path, or s3://bucket/key
    prompt: str
    status: str = (
        OK  # why the item cannot be scored, found while listing (e.g. a path outside the manifest's root)
    )


def list_inputs(source: str, prompt: str | None = None) -> list[Item]:
    """A folder of images (one `prompt` for all), a CSV manifest (image,prompt; paths relative to it) or an
    `s3://bucket/prefix` of images (endpoint from AWS_ENDPOINT_URL)."""
    if source.startswith("s3://"):
        bucket, _, prefix = source[5:].partition("/")
        keys = []
        for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [
                o["Key"] for o in page.get("Contents", []) if Path(o["Key"]).suffix.lower() in IMAGE_SUFFIXES
            ]
        return [Item(f"s3://{bucket}/{k}", prompt or "") for k in sorted(keys)]
    path = Path(source)
    if path.is_dir():
        return [
            Item(str(p), prompt or "") for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES
        ]
    df = read_manifest(path)
    return [
        Item(str(p) if p is not None else image, text, status)
        for image, text, p, status in zip(df["image"], df["prompt"], df["path"], df["status"])
    ]


def _s3() -> Any:
    import os

    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))


def _model(model: str) -> Any:
    """The worker's copy of the model (`mint_iqa.load`: a folder or an MLflow URI), loaded once."""
    if model not in _MODELS:
        from mint_iqa.inference.api import load

        _MODELS[model] = load(model)
    return _MODELS[model]


def score_chunk(
    index: int, items: list[Item], model: str, parts: Path, explain: bool = False
) -> dict[str, Any]:
    """Score one chunk into `parts/chunk-<index>.parquet` unless that part exists already."""
    part = parts / f"chunk-{index:06d}.parquet"
    if part.exists():
        return {"chunk": index, "rows": len(items), "skipped": True}
    with tempfile.TemporaryDirectory() as tmp:
        table = pd.DataFrame(
            {
                "image": [item.image for item in items],
                "prompt": [item.prompt for item in items],
                "path": [_fetch(item.image, Path(tmp)) if item.status == OK else None for item in items],
                "status": [item.status for item in items],
            }
        )
        result = score_table(_model(model), table, explain=explain)
    parts.mkdir(parents=True, exist_ok=True)
    with atomic_write(part, "wb") as fh:
        result.to_parquet(fh, index=False)
    return {
        "chunk": index,
        "rows": len(items),
        "skipped": False,
        "failed": int((result["status"] != OK).sum()),
    }


def _fetch(image: str, tmp: Path) -> str:
    if not image.startswith("s3://"):
        return image
    bucket, _, key = image[5:].partition("/")
    local = tmp / key.replace("/", "_")
    _s3().download_file(bucket, key, str(local))
    return str(local)


def assemble(parts: Path, n_chunks: int, out: Path) -> pd.DataFrame:
    """Concatenate the chunk parts in input order into `out` (Parquet, written atomically)."""
    frames = [pd.read_parquet(parts / f"chunk-{i:06d}.parquet") for i in range(n_chunks)]
    df = pd.concat(frames, ignore_index=True)
    with atomic_write(out, "wb") as fh:
        df.to_parquet(fh, index=False)
    return df


def summary(df: pd.DataFrame) -> dict[str, Any]:
    ok = df["status"] == "ok"
    return {
        "rows": len(df),
        "ok": int(ok.sum()),
        "failed": int((~ok).sum()),
        **{f"mean_{d}": round(float(df.loc[ok, d].mean()), 4) for d in DIMENSIONS if ok.any()},
    }
