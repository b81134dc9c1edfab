"""Batch prediction for `mint-iqa score`: inputs from image paths/folders or a manifest, one output row per
input, in order, written atomically as CSV, JSON or Parquet.

* `IMAGES...` with `--prompt P`: files, or folders (their image files, sorted, not recursive).
* `--manifest M.csv` with columns `image,prompt`: image paths are relative to M's folder and may not
  leave it; rows are numbered from 1 (the first row after the header).

Output columns: `image, prompt, quality, authenticity, correspondence, status` (+ `explanation_<dim>` with
`--explain`). A row that cannot be scored keeps its place with the reason in `status` (missing or
unreadable file, not an image, too many pixels, empty or over-long prompt, path outside the manifest's
folder, duplicate row); the others are scored. An existing output is never replaced without `force`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mint_iqa.config import DIMENSIONS
from mint_iqa.io import OK, atomic_write, confined

OUTPUT_COLUMNS = ["image", "prompt", *DIMENSIONS, "status"]
FORMATS = (".csv", ".json", ".parquet")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def read_manifest(path: Path) -> pd.DataFrame:
    """The manifest's rows plus `path` (resolved, or None) and `status` (OK or why the row is unusable)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save the manifest as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = {"image", "prompt"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected image,prompt")
    root = path.resolve().parent
    paths: list[Path | None] = []
    status: list[str] = []
    first: dict[tuple[str, str], int] = {}
    for row, (image, prompt) in enumerate(zip(df["image"], df["prompt"]), start=1):
        try:
            paths.append(confined(root, image))
            status.append(OK)
        except ValueError as exc:
            paths.append(None)
            status.append(str(exc))
        if (image, prompt) in first:
            status[-1] = f"duplicate of row {first[(image, prompt)]} (same image and prompt)"
        first.setdefault((image, prompt), row)
    return df[["image", "prompt"]].assign(path=paths, status=status)


def images_table(images: list[Path], prompt: str) -> pd.DataFrame:
    """Rows for image files and folders given on the command line, all with one prompt."""
    rows: list[dict[str, Any]] = []
    for item in images:
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            rows += [{"image": str(f), "prompt": prompt, "path": f, "status": OK} for f in files]
            if not files:
                rows.append({"image": str(item), "prompt": prompt, "path": None,
                             "status": f"{item}: folder has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"})
        else:
            rows.append({"image": str(item), "prompt": prompt, "path": item, "status": OK})
    return pd.DataFrame(rows, columns=["image", "prompt", "path", "status"])


def check_output(out: Path, force: bool) -> None:
    """Refuse before any work: unknown format, missing folder, or an existing file without `force`."""
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"{out}: output must end in {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: output folder does not exist")
    if out.exists() and not force:
        raise FileExistsError(f"{out}: exists; pass --force to overwrite")


def write_table(df: pd.DataFrame, out: Path) -> None:
    """CSV, JSON (a list of records) or Parquet by suffix; the file appears whole or not at all."""
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        with atomic_write(out, "wb") as fh:
            df.to_parquet(fh, index=False)
    elif suffix == ".json":
        records = json.loads(df.to_json(orient="records", force_ascii=False))
        with atomic_write(out, "w", encoding="utf-8") as fh:
            json.dump(records, fh, indent=1, ensure_ascii=False)
    else:
        with atomic_write(out, "w", encoding="utf-8", newline="") as fh:
            df.to_csv(fh, index=False)


def read_table(path: Path) -> pd.DataFrame:
    """A table written by `write_table`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".json":
            return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
        return pd.read_csv(path, keep_default_na=False, na_values=[""], encoding="utf-8")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable results table ({str(exc).splitlines()[0]})") from None


def score_table(model: Any, table: pd.DataFrame, explain: bool = False, scale: str = "mos",
                batch_size: int = 32) -> pd.DataFrame:
    """Score (and explain) the usable rows of `table` (columns image, prompt, path, status) with a
    loaded `mint_iqa.Model`; returns the output table, one row per input row, in order."""
    from mint_iqa.assess import EXPLANATION_COLUMNS

    extra = EXPLANATION_COLUMNS if explain else []
    result = pd.DataFrame({"image": table["image"], "prompt": table["prompt"], **{d: np.nan for d in DIMENSIONS},
                           "status": table["status"], **{c: "" for c in extra}}, index=table.index)
    todo = table.index[table["status"] == OK]
    if len(todo):
        images, prompts = list(table.loc[todo, "path"]), list(table.loc[todo, "prompt"])
        scores = (model.assess(images, prompts, batch_size=batch_size, scale=scale) if explain
                  else model.score(prompts, images, batch_size=batch_size, scale=scale))
        columns = [*DIMENSIONS, "status", *extra]
        result.loc[todo, columns] = scores[columns].to_numpy()
    return result[[*OUTPUT_COLUMNS, *extra]].reset_index(drop=True)


def score_manifest(manifest: Path, out: Path, model: Any, batch_size: int = 32, force: bool = False,
                   explain: bool = False, scale: str = "mos") -> pd.DataFrame:
    """`mint-iqa score --manifest`: score every row of `manifest` into `out`."""
    from mint_iqa.api import Model, load

    check_output(out, force)
    table = read_manifest(manifest)
    result = score_table(model if isinstance(model, Model) else load(model), table, explain, scale, batch_size)
    write_table(result, out)
    return result
