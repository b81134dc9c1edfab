"""The generalisation benchmark's degradations (bench/generalisation.py): shape and dtype kept, deterministic
for a seed, stronger with the severity, and none of them a kind the training recipe knows."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from mint_iqa.data import degradations

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("generalisation", ROOT / "bench" / "generalisation.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[60:188, 120:248])


@pytest.mark.parametrize("kind", list(bench.KINDS))
def test_shape_dtype_determinism_and_severity(image: np.ndarray, kind: str) -> None:
    _, fn, ladder = bench.KINDS[kind]
    outs = [fn(image, value, np.random.default_rng(3)) for value in ladder]
    again = fn(image, ladder[2], np.random.default_rng(3))
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(outs[2], again)
    change = [np.abs(o.astype(float) - image).mean() for o in outs]
    assert change[0] > 0.05, f"{kind} at severity 1 leaves the image unchanged"
    assert all(b > a for a, b in itertools.pairwise(change)), f"{kind}: {change} does not grow with severity"


def test_kinds_are_outside_the_training_recipe() -> None:
    trained = {name for family in degradations.REGISTRY.values() for name in family}
    assert not set(bench.KINDS) & trained


def test_damaged_set_and_table(image: np.ndarray) -> None:
    """Every base appears once untouched and once per kind and severity; a score that falls with severity
    gets SRCC 1 on every row (means included), its negation -1."""
    df = bench.damaged_set([image, image[::-1].copy()], seed=0)
    n_kinds = len(bench.KINDS)
    assert len(df) == 2 + 2 * n_kinds * 5
    assert (df["kind"] == "none").sum() == 2
    df["mint-iqa_quality"] = df["mint-iqa_authenticity"] = -df["severity"].astype(float)
    df["brisque"] = df["severity"].astype(float)
    out = bench.table(df, ["mint-iqa", "brisque"])
    assert len(out) == 2 + n_kinds
    assert np.allclose(out["mint-iqa"], 1.0) and np.allclose(out["brisque"], -1.0)
