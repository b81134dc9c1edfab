"""Adapters produce the manifest schema: AIGCIQA2023+ on the real annotation files, AGIQA-3K, generic.

The AIGCIQA2023+ annotation files (MIT, IntMeGroup/MINT-IQA) are vendored unmodified in
tests/fixtures/aigciqa2023plus/ (NOTICE.md there). The prompts table, whose upstream states no licence, is
written at run time from the vendored instruction JSON's prompt texts.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mint_iqa.config import Params
from mint_iqa.data import adapters, manifest
from mint_iqa.prepare import prepare

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aigciqa2023plus"


def _tiny_png(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _params(tmp_path: Path, **data: object) -> Params:
    return Params.model_validate(
        {
            "data": data,
            "prepare": {"out_dir": str(tmp_path / "prepared")},
            "validate": {
                "out_dir": str(tmp_path / "validation"),
                "metrics": str(tmp_path / "validation.json"),
            },
        }
    )


def _prompts_table(annotations: Path) -> pd.DataFrame:
    """The 100 prompts in the layout of AIGCIQA2023_Prompts.xlsx (category, challenge, prompt; row PPP is the
    prompt of the images `PPP-K.png`), from the vendored CSV's file names and the JSON's prompt texts."""
    rows = pd.read_csv(
        annotations / adapters.AIGCIQA_CSV, header=None, encoding="gbk", dtype=str, keep_default_na=False
    )
    records = json.loads((annotations / adapters.AIGCIQA_JSON).read_text(encoding="utf-8"))
    text = {int(rec["id"]): rec["prompt"] for rec in records}
    by_index: dict[int, set[str]] = {}
    for row, file in zip(rows[0].astype(int), rows[1], strict=True):
        by_index.setdefault(int(file.split("-")[0]), set()).add(text[row].strip())
    assert sorted(by_index) == list(range(100)) and all(len(t) == 1 for t in by_index.values())
    return pd.DataFrame({"category": "", "challenge": "", "prompt": [by_index[i].pop() for i in range(100)]})


def _annotations(folder: Path, prompts: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in (adapters.AIGCIQA_CSV, adapters.AIGCIQA_JSON):
        shutil.copyfile(FIXTURES / name, folder / name)
    prompts.to_excel(folder / adapters.AIGCIQA_PROMPTS, header=False, index=False)  # first row is data
    return folder


@pytest.fixture(scope="module")
def aigciqa_prompts() -> pd.DataFrame:
    return _prompts_table(FIXTURES)


@pytest.fixture(scope="module")
def aigciqa_dir(aigciqa_prompts: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The AIGCIQA2023+ annotation folder: the vendored CSV and JSON, and the prompts table."""
    return _annotations(tmp_path_factory.mktemp("aigciqa_annotations"), aigciqa_prompts)


def test_vendored_fixtures_are_unmodified() -> None:
    """Every vendored file is listed in NOTICE.md with its SHA-256 and still has it; the licence is there."""
    notice = (FIXTURES / "NOTICE.md").read_text()
    listed = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", notice, re.MULTILINE))
    assert set(listed) == {adapters.AIGCIQA_CSV, adapters.AIGCIQA_JSON, "LICENSE", "SOURCE.md"}
    assert {p.name for p in FIXTURES.iterdir()} == {*listed, "NOTICE.md"}
    for name, digest in listed.items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, name
    assert (FIXTURES / "LICENSE").read_text().startswith("MIT License")


def test_aigciqa2023plus_prompts_must_agree(aigciqa_prompts: pd.DataFrame, tmp_path: Path) -> None:
    """The prompts table is cross-checked against the JSON: a header row read as data shifts it by one."""
    shifted = pd.concat(
        [
            pd.DataFrame({"category": ["category"], "challenge": ["challenge"], "prompt": ["prompt"]}),
            aigciqa_prompts,
        ],
        ignore_index=True,
    )
    folder = _annotations(tmp_path / "annotations", shifted)
    with pytest.raises(ValueError, match="disagrees with"):
        adapters.read_aigciqa2023plus(folder)


@pytest.fixture(scope="module")
def aigciqa_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stand-in images folder in the flat layout of the MINT-IQA release (0.png ... 2399.png)."""
    folder = tmp_path_factory.mktemp("aigciqa_images")
    for i in range(2400):
        _tiny_png(folder / f"{i}.png", i % 256)
    return folder


@pytest.fixture(scope="module")
def aigciqa_prepared(
    aigciqa_dir: Path, aigciqa_images: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    tmp = tmp_path_factory.mktemp("aigciqa")
    return prepare(
        _params(tmp, source="aigciqa2023plus", annotations=str(aigciqa_dir), images_dir=str(aigciqa_images))
    )


def test_aigciqa2023plus_counts(aigciqa_prepared: Path) -> None:
    df, meta = manifest.read(aigciqa_prepared)
    assert len(df) == 2400 and df["id"].is_unique
    assert meta["instructions"] == 9600
    assert len((aigciqa_prepared / manifest.INSTRUCTIONS).read_text().splitlines()) == 9600
    assert df["generator"].value_counts().to_dict() == {
        g: 400 for g in ("Controlnet", "DALLE", "Glide", "Lafite", "stable-diffusion", "Unidiffuser")
    }
    for dim in ("quality", "authenticity", "correspondence"):
        assert df[dim].notna().all() and df[dim].between(0, 1).all()
    assert df["ref_id"].nunique() == 100


def test_aigciqa2023plus_content(aigciqa_prepared: Path) -> None:
    df, _ = manifest.read(aigciqa_prepared)
    first = df[df["file"] == "000-1.png"].iloc[0]
    assert first["prompt"] == "a corgi" and first["generator"] == "Controlnet" and first["image"] == "0.png"
    assert first["quality"] == pytest.approx(0.601641784272688)
    assert "Corgi Partial Distortion" in first["answer_authenticity"]
    assert first["answer_all"].startswith("The image quality is very clear")
    # a quoted note spanning several lines stays one field of its row
    pineapple = df[df["id"] == "Controlnet/025-1"].iloc[0]
    assert pineapple["note_correspondence"].startswith("In the text is a pineapple")
    assert "\n" in pineapple["note_correspondence"] and pineapple["row"] == 100
    strict = df.groupby("ref_id")["split_strict"].nunique()
    assert (strict == 1).all()


def test_aigciqa2023plus_by_generator_layout(aigciqa_dir: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    for gen in ("Controlnet", "DALLE", "Glide", "Lafite", "stable-diffusion", "Unidiffuser"):
        _tiny_png(images / gen / "000-1.png")
    out = prepare(
        _params(tmp_path, source="aigciqa2023plus", annotations=str(aigciqa_dir), images_dir=str(images))
    )
    df, _ = manifest.read(out)
    assert df.loc[df["id"] == "DALLE/000-1", "image"].item() == "DALLE/000-1.png"


def test_aigciqa2023plus_needs_images_dir(aigciqa_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="images_dir"):
        prepare(_params(tmp_path, source="aigciqa2023plus", annotations=str(aigciqa_dir)))


def test_agiqa3k(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "name": [f"img_{i}.jpg" for i in range(12)],
            "prompt": [f"a photo of thing {i % 4}" for i in range(12)],
            "adj1": "red",
            "adj2": "",
            "style": "photo",
            "mos_quality": np.linspace(0.5, 4.5, 12),
            "std_quality": 0.3,
            "mos_align": np.linspace(5, 0, 12),
            "std_align": 0.4,
        }
    )
    rows.to_csv(tmp_path / "data.csv", index=False)
    out = prepare(_params(tmp_path, source="agiqa3k", annotations=str(tmp_path / "data.csv")))
    df, meta = manifest.read(out)
    assert meta["labels"] == ["quality", "correspondence"]
    assert df["quality"].iloc[0] == pytest.approx(0.1) and df["correspondence"].iloc[0] == pytest.approx(1.0)
    assert df["authenticity"].isna().all() and df["ref_id"].nunique() == 4
    assert (
        df["answer_authenticity"].eq("").all()
        and df["answer_quality"].str.startswith("The image quality").all()
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_generic(tmp_path: Path, fmt: str) -> None:
    rows = pd.DataFrame(
        {
            "image": ["a.png", "b.png", "c.png", "d.png", "e.png"],
            "prompt": ["x", "y", "x", "z", "w"],
            "quality": [1, 2, 3, 4, 5],
        }
    )
    path = tmp_path / f"labels.{fmt}"
    rows.to_csv(path, index=False) if fmt == "csv" else rows.to_json(path, orient="records", lines=True)
    params = _params(tmp_path, source="generic", annotations=str(path), label_range=[1, 5])
    df, meta = manifest.read(prepare(params))
    assert meta["labels"] == ["quality"] and meta["image_root"] == str(tmp_path.resolve())
    assert df["quality"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert df["correspondence"].isna().all()


def test_generic_missing_column_is_clear(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("img,prompt\na.png,x\n")
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['image'\]"):
        prepare(_params(tmp_path, source="generic", annotations=str(tmp_path / "t.csv")))
    assert not (tmp_path / "prepared").exists()
