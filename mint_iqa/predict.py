"""Batch prediction over a manifest file: `mint-iqa score --manifest M.csv --out P.csv`.

The manifest has columns `image,prompt`; image paths are relative to the manifest's folder and may not
leave it. The output has one row per input row, in order: `image,prompt,quality,authenticity,
correspondence,status`. A row that cannot be scored keeps its place with a status message; the file
is written atomically and never replaces an existing one unless asked to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mint_iqa.config import DIMENSIONS
from mint_iqa.inference import OK, Scorer
from mint_iqa.io import atomic_write, confined

OUTPUT_COLUMNS = ["image", "prompt", *DIMENSIONS, "status"]


def read_manifest(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save the manifest as UTF-8") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = {"image", "prompt"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected image,prompt")
    return df


def check_output(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise FileExistsError(f"{out}: exists; pass --force to overwrite")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: output folder does not exist")


def score_manifest(manifest: Path, out: Path, model: Path, batch_size: int = 32, force: bool = False,
                   explain: bool = False) -> pd.DataFrame:
    """Score (and with `explain`, explain) every row of `manifest` into `out`; see the module docstring."""
    check_output(out, force)
    df = read_manifest(manifest)
    root = manifest.resolve().parent
    status = pd.Series(OK, index=df.index, dtype=object)
    paths: dict[int, Path] = {}
    for i, rel in df["image"].items():
        try:
            paths[i] = confined(root, rel)
        except ValueError as exc:
            status[i] = str(exc)
    if explain:
        from mint_iqa.assess import EXPLANATION_COLUMNS, Assessor

        runner, extra = Assessor.load(model), EXPLANATION_COLUMNS
    else:
        runner, extra = Scorer.load(model), []
    result = pd.DataFrame({"image": df["image"], "prompt": df["prompt"], **{d: np.nan for d in DIMENSIONS},
                           **{c: "" for c in extra}}, index=df.index)
    if paths:
        index = list(paths)
        images, prompts = [paths[i] for i in index], [df.at[i, "prompt"] for i in index]
        scores = runner.assess(images, prompts, batch_size) if explain else runner.score(images, prompts, batch_size)
        scores.index = index
        columns = [*DIMENSIONS, *extra]
        result.loc[index, columns] = scores[columns].to_numpy()
        status[index] = scores["status"].to_numpy()
    result["status"] = status
    columns = [*OUTPUT_COLUMNS, *extra]
    with atomic_write(out, "w", encoding="utf-8", newline="") as fh:
        result[columns].to_csv(fh, index=False)
    return result[columns]
