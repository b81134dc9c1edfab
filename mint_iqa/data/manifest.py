"""The prepared dataset on disk: one schema for the proxy set and every adapter.

    <out_dir>/manifest.parquet    one row per image (columns below)
    <out_dir>/instructions.jsonl  four question/answer records per image
    <out_dir>/dataset.json        source, image root, which labels exist, counts
    <out_dir>/images/             proxy images (adapters point `image_root` at the user's folder)

Labels are MOS-like in [0, 1], higher is better; `image` is relative to the image root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from mint_iqa.config import DIMENSIONS
from mint_iqa.data.answers import QUESTIONS
from mint_iqa.io import atomic_write, write_text

ANSWER_COLUMNS = {key: f"answer_{key}" for key in QUESTIONS}
COLUMNS: dict[str, str] = {
    "id": "string",
    "image": "string",
    "prompt": "string",
    "ref_id": "string",
    "source": "string",
    "family": "string",
    "distortion": "string",
    "level": "int64",
    **{dim: "float64" for dim in DIMENSIONS},
    **{col: "string" for col in ANSWER_COLUMNS.values()},
    "split_paper": "string",
    "strict_fold": "int64",
    "split_strict": "string",
    "licence": "string",
}
MANIFEST, INSTRUCTIONS, META = "manifest.parquet", "instructions.jsonl", "dataset.json"


def write(df: pd.DataFrame, out_dir: Path, meta: dict[str, Any]) -> None:
    """Write manifest, instructions and metadata (each file atomically); extra columns are kept."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"manifest is missing columns {missing}")
    df = df.astype({c: t for c, t in COLUMNS.items()})
    ordered = list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]
    df = df[ordered].reset_index(drop=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / MANIFEST, "wb") as fh:
        df.to_parquet(fh, index=False)
    with atomic_write(out_dir / INSTRUCTIONS, "w", encoding="utf-8") as fh:
        for row in df.itertuples(index=False):
            for key, question in QUESTIONS.items():
                record = {
                    "id": row.id,
                    "image": row.image,
                    "prompt": row.prompt,
                    "question": question,
                    "answer": getattr(row, ANSWER_COLUMNS[key]),
                    **{dim: _nan_to_none(getattr(row, dim)) for dim in DIMENSIONS},
                }
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    meta = {
        **meta,
        "images": len(df),
        "instructions": len(df) * len(QUESTIONS),
        "references": int(df["ref_id"].nunique()),
    }
    write_text(out_dir / META, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _nan_to_none(value: Any) -> Any:
    return None if pd.isna(value) else value


def read(out_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).exists():
        raise FileNotFoundError(f"{out_dir / MANIFEST}: missing; run `dvc repro prepare` first")
    meta = json.loads((out_dir / META).read_text())
    return pd.read_parquet(out_dir / MANIFEST), meta


def image_root(out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Folder that manifest `image` paths are relative to (relative roots are relative to `out_dir`)."""
    root = Path(meta.get("image_root", "."))
    return root if root.is_absolute() else Path(out_dir) / root
