"""The proxy set: schema, balance, labels, splits, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mint_iqa.config import DIMENSIONS, load_params
from mint_iqa.data import manifest
from mint_iqa.data.answers import grade, parse_grades
from mint_iqa.data.references import REFERENCES
from mint_iqa.io import load_image, sha256_file
from mint_iqa.prepare import prepare
from tests.conftest import PER_REFERENCE, ROOT, small_params


@pytest.fixture(scope="module")
def frame(prepared: Path) -> pd.DataFrame:
    return manifest.read(prepared)[0]


def test_schema_and_counts(prepared: Path, frame: pd.DataFrame) -> None:
    assert list(frame.columns[: len(manifest.COLUMNS)]) == list(manifest.COLUMNS)
    assert len(frame) == PER_REFERENCE * len(REFERENCES)
    meta = json.loads((prepared / manifest.META).read_text())
    assert meta["images"] == len(frame) and meta["labels"] == list(DIMENSIONS)
    lines = (prepared / manifest.INSTRUCTIONS).read_text().splitlines()
    assert len(lines) == 4 * len(frame)
    record = json.loads(lines[0])
    assert record["question"] == "What is the quality of the image?" and record["answer"]


def test_nearly_every_image_is_damaged_in_each_dimension(frame: pd.DataFrame) -> None:
    """The evaluation design (`prepare.mix`): each dimension's defect drawn independently for nearly every
    image, so labels are continuous and hardly tie (the share of the most common value stays small)."""
    from mint_iqa.metrics import tie_share

    top = 0.9
    assert (frame["quality"] < top).mean() > 0.85 and (frame["authenticity"] < top).mean() > 0.8
    assert 0.7 < (frame["correspondence"] < top).mean() < 0.97
    assert tie_share(frame["quality"].to_numpy()) < 0.1 and tie_share(frame["authenticity"].to_numpy()) < 0.15
    assert set(frame["family"]) <= {"pristine", "quality", "authenticity", "correspondence"}


def test_labels_follow_the_defects(frame: pd.DataFrame) -> None:
    """Correspondence from the mismatch level; quality and authenticity below flawless only where a defect of
    that family was made; the answers state the labels' grades."""
    from mint_iqa.data import degradations
    from mint_iqa.data.synth import parse_defects

    for row in frame.itertuples():
        parts = dict(parse_defects(row.defects))
        assert row.correspondence == pytest.approx(0.9 - 0.8 * parts.get("mismatch", 0) / 5, abs=1e-6)
        for dim in ("quality", "authenticity"):
            if not set(parts) & set(degradations.REGISTRY[dim]):
                assert getattr(row, dim) == pytest.approx(0.9)
            assert 0.1 < getattr(row, dim) <= 0.9
        assert parse_grades(row.answer_all) == {dim: grade(getattr(row, dim)) for dim in DIMENSIONS}


def test_damage_labels_fall_with_level(frame: pd.DataFrame) -> None:
    """Measured damage follows the nominal level: within each family, images whose only defect of that family
    is milder get higher labels (rank correlation over the set)."""
    from mint_iqa.data import degradations
    from mint_iqa.data.synth import parse_defects
    from mint_iqa.metrics import srcc

    for family in ("quality", "authenticity"):
        rows = [
            (lvl[0], getattr(r, family))
            for r in frame.itertuples()
            if len(lvl := [v for k, v in parse_defects(r.defects) if k in degradations.REGISTRY[family]]) == 1
        ]
        levels, labels = np.array(rows).T
        assert srcc(labels, -levels) > 0.3, family


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
    params = small_params(raw_dir, tmp_path / "seed1", images_per_reference=1)
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


def test_samples_draw_each_dimension_independently_with_continuous_labels(raw_dir: Path) -> None:
    """Each dimension's defect is drawn on its own (`mix`), at a continuous level, and labelled by the damage
    its defects do: an image may carry a quality and an authenticity defect and a wrong prompt at once, the
    presence of one says nothing about the others, and labels hardly ever tie."""
    from mint_iqa.config import MixConfig
    from mint_iqa.data.references import load_references
    from mint_iqa.data.synth import Synthesiser, kinds_of

    refs, cfg = load_references(raw_dir), load_params(ROOT / "params.yaml").prepare
    top = cfg.labels.pristine
    synth = Synthesiser(
        refs, cfg, out_size=64, mix=MixConfig(quality=0.5, second=0.0, authenticity=0.5, correspondence=0.5)
    )
    rng = np.random.default_rng(0)
    samples = [synth.random(rng) for _ in range(300)]
    q = np.array([s.labels["quality"] < top for s in samples])
    a = np.array([s.labels["authenticity"] < top for s in samples])
    c = np.array([s.labels["correspondence"] < top for s in samples])
    assert 0.35 < q.mean() < 0.65 and 0.35 < a.mean() < 0.65 and 0.35 < c.mean() < 0.65
    assert abs(a[q].mean() - a[~q].mean()) < 0.15 and abs(c[a].mean() - c[~a].mean()) < 0.15
    for s in samples:  # a damaged dimension has its damage map; the manifest cell names every defect
        assert (s.where[..., 0].max() > 0) == (s.labels["quality"] < top)
        assert len(kinds_of(s.defects)) >= (s.labels["quality"] < top) + (s.labels["authenticity"] < top)
        assert ("mismatch@" in s.defects) == (s.labels["correspondence"] < top)
    damaged = [s.labels["quality"] for s in samples if s.labels["quality"] < top]
    assert len(set(damaged)) == len(damaged)  # continuous: no two damaged images share a label
    only = Synthesiser(refs, cfg, out_size=64, kinds=["noise", "smear"])
    assert {k for s in (only.random(rng) for _ in range(40)) for k in kinds_of(s.defects)} == {
        "noise",
        "smear",
    }


def test_kind_folds_deal_every_kind_once_and_spread_groups() -> None:
    """Every defect kind lands in exactly one fold; each fold holds kinds of several groups (a held-out fold
    asks for new kinds of known families); the `lko` training synthesiser never draws a held-out kind."""
    from mint_iqa.data import degradations
    from mint_iqa.data.splits import held_out_kinds, kind_folds

    folds = kind_folds(degradations.GROUPS, 3, seed=0)
    assert set(folds) == set(degradations.GROUPS) and set(folds.values()) == {0, 1, 2}
    sizes = np.bincount(list(folds.values()))
    assert sizes.max() - sizes.min() <= 1
    for fold in range(3):
        held = held_out_kinds(degradations.GROUPS, 3, fold, seed=0)
        assert len({degradations.GROUPS[k] for k in held}) >= 5
        assert any(k in degradations.QUALITY for k in held) and any(
            k in degradations.AUTHENTICITY for k in held
        )
    assert kind_folds(degradations.GROUPS, 3, seed=1) != folds  # the seed deals them anew


def test_lko_training_never_draws_a_held_out_kind(raw_dir: Path, prepared_copy: Path) -> None:
    from mint_iqa.data.synth import kinds_of
    from mint_iqa.train.data import Split, held_out, training_synthesiser

    params = small_params(raw_dir, prepared_copy)
    fixed = Split.load(prepared_copy, "lko", "train", 256, without=held_out(params))
    assert all(not set(kinds_of(d)) & set(held_out(params)) for d in fixed.frame["defects"])
    synth = training_synthesiser(params, fixed, "lko")
    rng = np.random.default_rng(0)
    drawn = {k for _ in range(200) for k in kinds_of(synth.random(rng).defects)}
    assert drawn and not drawn & set(held_out(params))


def test_a_mismatched_prompt_is_never_a_matching_pair(raw_dir: Path, prepared_copy: Path) -> None:
    """The contrastive loss takes an image and its prompt as a pair only when the prompt describes the image:
    with composites a mismatched prompt may sit on an image whose worst defect is a blur."""
    from mint_iqa.train.data import Split, TrainStream, describes, training_synthesiser

    assert not describes("noise@3.00;mismatch@2", "quality") and describes("noise@3.00", "quality")
    assert describes("", "pristine") and not describes(None, "correspondence") and describes(None, "quality")
    params = small_params(raw_dir, prepared_copy)
    fixed = Split.load(prepared_copy, "paper", "train", 256)
    stream = TrainStream(training_synthesiser(params, fixed, "paper"), [0, 1, 2], fixed, 0, 0, 64, 0.5, 64)
    items = [stream[i] for i in range(64)]
    top = params.prepare.labels.pristine
    assert all(item["matching"] == (float(item["labels"][2]) >= top - 1e-6) for item in items)
    assert any(not item["matching"] and float(item["labels"][0]) < float(item["labels"][2]) for item in items)
