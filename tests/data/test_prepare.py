"""The proxy set: schema, balance, labels, splits, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mint_iqa.config import DIMENSIONS
from mint_iqa.data import manifest
from mint_iqa.data.answers import parse_grades, grade
from mint_iqa.data.references import REFERENCES
from mint_iqa.io import sha256_file, load_image
from mint_iqa.prepare import prepare
from mint_iqa.config import load_params
from tests.conftest import ROOT, small_params


@pytest.fixture(scope="module")
def frame(prepared: Path) -> pd.DataFrame:
    return manifest.read(prepared)[0]


def test_schema_and_counts(prepared: Path, frame: pd.DataFrame) -> None:
    assert list(frame.columns[: len(manifest.COLUMNS)]) == list(manifest.COLUMNS)
    assert len(frame) == 10 * len(REFERENCES)
    meta = json.loads((prepared / manifest.META).read_text())
    assert meta["images"] == len(frame) and meta["labels"] == list(DIMENSIONS)
    lines = (prepared / manifest.INSTRUCTIONS).read_text().splitlines()
    assert len(lines) == 4 * len(frame)
    record = json.loads(lines[0])
    assert record["question"] == "What is the quality of the image?" and record["answer"]


def test_family_balance_per_reference(frame: pd.DataFrame) -> None:
    counts = frame.groupby(["ref_id", "family"]).size().unstack()
    # 10 images with mix .1/.3/.3/.3 -> exactly 1/3/3/3 per reference
    assert (counts["pristine"] == 1).all()
    assert (counts[["quality", "authenticity", "correspondence"]] == 3).all().all()


def test_labels_follow_family_and_damage(frame: pd.DataFrame) -> None:
    scale = load_params(ROOT / "params.yaml").prepare.labels.damage_scale
    for row in frame.itertuples():
        for dim in DIMENSIONS:
            if row.family != dim:
                expected = 0.9
            elif dim == "correspondence":
                expected = 0.9 - 0.8 * row.level / 5
            else:
                expected = 0.9 - 0.8 * min(1.0, row.damage / scale[row.distortion])
            assert getattr(row, dim) == pytest.approx(expected, abs=1e-5)  # damage is stored rounded
        assert (row.damage > 0) == (row.family in ("quality", "authenticity"))
        grades = parse_grades(row.answer_all)
        assert grades == {dim: grade(getattr(row, dim)) for dim in DIMENSIONS}


def test_damage_labels_fall_with_level(frame: pd.DataFrame) -> None:
    """Measured damage follows the nominal ladder on average (per family, level 1 vs level 5)."""
    for family in ("quality", "authenticity"):
        sub = frame[frame["family"] == family]
        by_level = sub.groupby("level")[family].mean()
        assert by_level[1] > by_level[5] + 0.15


def test_images_match_manifest(prepared: Path, frame: pd.DataFrame) -> None:
    for rel in frame["image"].head(20):
        img = load_image(prepared / rel)
        assert img.size == (256, 256)


def test_splits(frame: pd.DataFrame) -> None:
    assert set(frame["split_paper"]) == {"train", "val", "test"}
    assert frame["split_paper"].value_counts()["test"] == round(0.2 * len(frame))
    per_ref = frame.groupby("ref_id")["split_strict"].nunique()
    assert (per_ref == 1).all()  # content-disjoint
    test_refs = set(frame.loc[frame.split_strict == "test", "ref_id"])
    val_refs = set(frame.loc[frame.split_strict == "val", "ref_id"])
    train_refs = set(frame.loc[frame.split_strict == "train", "ref_id"])
    assert test_refs and val_refs and train_refs
    assert not (test_refs & val_refs) and not (test_refs & train_refs) and not (val_refs & train_refs)
    assert frame["strict_fold"].nunique() == 5


def test_same_seed_same_bytes_any_worker_count(raw_dir: Path, prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    prepare(small_params(raw_dir, out, workers=2))
    files = sorted(p.relative_to(prepared) for p in prepared.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert all(sha256_file(prepared / f) == sha256_file(out / f) for f in files)


def test_other_seed_other_images(raw_dir: Path, prepared: Path, tmp_path: Path) -> None:
    params = small_params(raw_dir, tmp_path / "seed1", images_per_reference=2)
    params.seed = 1
    prepare(params)
    a = np.asarray(load_image(prepared / "images" / "astronaut_0000.png"))
    b = np.asarray(load_image(tmp_path / "seed1" / "images" / "astronaut_0000.png"))
    assert not np.array_equal(a, b)


def test_failed_prepare_leaves_previous_output(raw_dir: Path, prepared_copy: Path) -> None:
    before = sha256_file(prepared_copy / manifest.MANIFEST)
    bad = small_params(raw_dir, prepared_copy)
    bad.prepare.quality = {"no_such_blur": {"sigma": [1, 2, 3, 4, 5]}}
    with pytest.raises(ValueError, match="no_such_blur"):
        prepare(bad)
    assert sha256_file(prepared_copy / manifest.MANIFEST) == before


def test_composite_training_samples_draw_each_image_defect_independently(raw_dir: Path) -> None:
    """`train.composite` (training samples only): each of the quality and authenticity defects is drawn
    on its own, so neither says anything about the other; each is labelled by the damage it does itself.
    0, the default and the evaluation set, keeps one defect per image."""
    from mint_iqa.data.references import load_references
    from mint_iqa.data.synth import Synthesiser

    refs, cfg = load_references(raw_dir), load_params(ROOT / "params.yaml").prepare
    top = cfg.labels.pristine

    def draw(composite: float, n: int) -> list:
        synth = Synthesiser(refs, cfg, out_size=64, composite=composite)
        rng = np.random.default_rng(0)
        return [s for s in (synth.random(rng) for _ in range(n)) if s.family != "correspondence"]

    for s in draw(0.0, 60):  # one defect family at most: one damage channel, the other label flawless
        assert (s.where.max(axis=(0, 1)) > 0).sum() <= 1
        assert sum(s.labels[d] < top for d in ("quality", "authenticity")) <= 1
    for s in draw(1.0, 30):  # both, each with its own damage map and a label no higher than flawless
        assert (s.where.max(axis=(0, 1)) > 0).all() and s.family == "quality"
    both = np.array([(s.where.max(axis=(0, 1)) > 0) for s in draw(0.5, 300)])
    q, a = both[:, 0], both[:, 1]
    assert 0.35 < q.mean() < 0.65 and 0.35 < a.mean() < 0.65
    assert abs(a[q].mean() - a[~q].mean()) < 0.15  # authenticity damage as likely with a quality defect as without
