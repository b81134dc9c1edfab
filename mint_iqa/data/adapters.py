"""Adapters: real annotation files -> the manifest schema of `data/manifest.py` (splits added later).

* `aigciqa2023plus`: the AIGCIQA2023+ annotation folder (GBK CSV without header, quoted multi-line
  notes; instruction JSON with normalised MOS and answers; prompts xlsx) + the images folder, laid out
  flat (`<N>.png`, N = row index, as in the MINT-IQA release) or by generator (`<generator>/PPP-K.png`).
* `agiqa3k`: AGIQA-3K `data.csv` (name, prompt, adj1, adj2, style, mos_quality, std_quality,
  mos_align, std_align); no authenticity label. MOS mapped from `label_range` (default [0, 5]).
* `generic`: CSV or JSONL with `image`, `prompt` and optional `quality` / `authenticity` /
  `correspondence` (mapped from `label_range`, default [0, 1]).

Content groups (`ref_id`, used by the strict protocol) are prompts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mint_iqa.config import DIMENSIONS, DataConfig
from mint_iqa.data.answers import QUESTIONS, answers
from mint_iqa.data.manifest import ANSWER_COLUMNS

AIGCIQA_CSV, AIGCIQA_JSON, AIGCIQA_PROMPTS = "AIGIQA2023+.csv", "AIGIQA2023.json", "AIGCIQA2023_Prompts.xlsx"
AIGCIQA_FIELDS = [
    "row",
    "file",
    "generator",
    "grade_clarity",
    "grade_outline",
    "grade_detail",
    "grade_authenticity",
    "grade_correspondence",
    "note_authenticity_zh",
    "note_correspondence_zh",
    "note_authenticity",
    "note_correspondence",
]
_QUESTION_KEY = {question: key for key, question in QUESTIONS.items()}


def _require(path: Path | None, what: str) -> Path:
    if path is None:
        raise ValueError(f"data.{what} must be set for this data.source")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    return Path(path)


def _frame(rows: pd.DataFrame, source: str, licence: str) -> pd.DataFrame:
    rows = rows.copy()
    rows["source"], rows["family"], rows["distortion"], rows["level"] = source, "real", "none", 0
    rows["licence"] = licence
    return rows


def read_aigciqa2023plus(annotations: Path) -> pd.DataFrame:
    """The 2,400 annotated images joined with their prompts, MOS and four instruction answers."""
    csv = pd.read_csv(
        annotations / AIGCIQA_CSV,
        header=None,
        names=AIGCIQA_FIELDS,
        encoding="gbk",
        keep_default_na=False,
        dtype=str,
    )
    prompts = pd.read_excel(
        annotations / AIGCIQA_PROMPTS, header=None, names=["category", "challenge", "prompt"]
    )
    records = json.loads((annotations / AIGCIQA_JSON).read_text(encoding="utf-8"))
    by_image: dict[int, dict[str, Any]] = {}
    for rec in records:
        entry = by_image.setdefault(
            int(rec["id"]),
            {
                "prompt_json": rec["prompt"].strip(),
                "quality": rec["moz1"],
                "authenticity": rec["moz2"],
                "correspondence": rec["moz3"],
            },
        )
        entry[ANSWER_COLUMNS[_QUESTION_KEY[rec["q1"]]]] = rec["a1"].strip()
    df = csv.assign(row=csv["row"].astype(int))
    for col in AIGCIQA_FIELDS[3:8]:
        df[col] = pd.to_numeric(df[col])
    df["prompt_index"] = df["file"].str.split("-").str[0].astype(int)
    df["prompt"] = prompts["prompt"].str.strip().to_numpy()[df["prompt_index"]]
    df = df.join(pd.DataFrame.from_dict(by_image, orient="index"), on="row")
    mismatched = df[df["prompt"] != df["prompt_json"]]
    if len(mismatched):
        raise ValueError(
            f"{annotations}: row {mismatched['row'].iloc[0]}: prompt in {AIGCIQA_JSON} "
            f"disagrees with {AIGCIQA_PROMPTS}"
        )
    df["id"] = df["generator"] + "/" + df["file"].str.removesuffix(".png")
    df["ref_id"] = "prompt_" + df["prompt_index"].map("{:03d}".format)
    return df.drop(columns=["prompt_json"])


def _aigciqa_images(df: pd.DataFrame, images: Path) -> pd.Series:
    if (images / "0.png").exists():
        return df["row"].map("{}.png".format)
    if (images / df["generator"].iloc[0] / df["file"].iloc[0]).exists():
        return df["generator"] + "/" + df["file"]
    raise FileNotFoundError(
        f"{images}: neither '0.png' (flat layout) nor "
        f"'{df['generator'].iloc[0]}/{df['file'].iloc[0]}' (by-generator layout) found"
    )


def _scale(values: pd.Series, lo_hi: tuple[float, float]) -> pd.Series:
    lo, hi = lo_hi
    return (pd.to_numeric(values) - lo) / (hi - lo)


def _templated_answers(df: pd.DataFrame) -> pd.DataFrame:
    rows = [answers({dim: row.get(dim, np.nan) for dim in DIMENSIONS}) for row in df.to_dict("records")]
    out = pd.DataFrame(rows, index=df.index)
    return df.assign(**{ANSWER_COLUMNS[k]: out[k] for k in QUESTIONS})


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(
        path,
        dtype={"image": str, "name": str, "prompt": str},
        keep_default_na=False,
        na_values={c: [""] for c in (*DIMENSIONS, "mos_quality", "mos_align")},
    )


def build(cfg: DataConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Manifest rows and dataset metadata for `cfg.source` (anything but `proxy`)."""
    if cfg.source == "aigciqa2023plus":
        annotations = _require(cfg.annotations, "annotations")
        images = _require(cfg.images_dir, "images_dir")
        df = read_aigciqa2023plus(annotations)
        df["image"] = _aigciqa_images(df, images)
        labels = list(DIMENSIONS)
        df = _frame(df, "aigciqa2023plus", "annotations MIT (IntMeGroup); images: see dataset authors")
    elif cfg.source == "agiqa3k":
        table = _require(cfg.annotations, "annotations")
        images = cfg.images_dir or table.parent
        raw = _read_table(table)
        lo_hi = cfg.label_range or (0.0, 5.0)
        df = pd.DataFrame(
            {
                "image": raw["name"],
                "prompt": raw["prompt"],
                "quality": _scale(raw["mos_quality"], lo_hi),
                "authenticity": np.nan,
                "correspondence": _scale(raw["mos_align"], lo_hi),
            }
        )
        df = df.join(raw[[c for c in ("adj1", "adj2", "style", "std_quality", "std_align") if c in raw]])
        labels = ["quality", "correspondence"]
        df = _templated_answers(_frame(df, "agiqa3k", "see AGIQA-3K authors"))
    else:
        table = _require(cfg.annotations, "annotations")
        images = cfg.images_dir or table.parent
        raw = _read_table(table)
        missing = {"image", "prompt"} - set(raw.columns)
        if missing:
            raise ValueError(f"{table}: missing required column(s) {sorted(missing)}")
        labels = [dim for dim in DIMENSIONS if dim in raw.columns]
        df = raw[["image", "prompt"]].copy()
        for dim in DIMENSIONS:
            df[dim] = _scale(raw[dim], cfg.label_range or (0.0, 1.0)) if dim in labels else np.nan
        df = _templated_answers(_frame(df, "generic", "user data"))
    if "id" not in df.columns:
        df["id"] = df["image"]
    if "ref_id" not in df.columns:
        df["ref_id"] = df["prompt"]
    meta = {"source": cfg.source, "image_root": str(Path(images).resolve()), "labels": labels}
    return df, meta
