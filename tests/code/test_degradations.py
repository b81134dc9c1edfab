"""Distortion functions: shape and range kept, deterministic for a seed, stronger with the level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mint_iqa.config import load_params
from mint_iqa.data import degradations

ROOT = Path(__file__).resolve().parents[2]
PARAMS = load_params(ROOT / "params.yaml").prepare
CASES = [(family, name) for family in degradations.REGISTRY for name in degradations.REGISTRY[family]]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from skimage import data

    return data.astronaut()[100:228, 150:278].astype(np.float32) / 255.0


@pytest.mark.parametrize("family, name", CASES)
def test_shape_range_and_determinism(image: np.ndarray, family: str, name: str) -> None:
    ladders = getattr(PARAMS, family)
    out = degradations.apply(image, family, name, 3, ladders, np.random.default_rng(1))
    again = degradations.apply(image, family, name, 3, ladders, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.array_equal(out, again)
    assert np.abs(out - image).mean() > 1e-3  # it did something


@pytest.mark.parametrize("family, name", CASES)
def test_severity_grows_with_level(image: np.ndarray, family: str, name: str) -> None:
    """Mean absolute change from the original, averaged over seeds, increases from level 1 to level 5."""
    ladders = getattr(PARAMS, family)

    def change(level: int) -> float:
        return float(np.mean([np.abs(degradations.apply(image, family, name, level, ladders,
                                                        np.random.default_rng(seed)) - image).mean()
                              for seed in range(6)]))

    assert change(1) < change(3) < change(5)


def test_every_registered_distortion_has_a_defect_name() -> None:
    names = {name for family in degradations.REGISTRY.values() for name in family}
    assert names <= set(degradations.DEFECT_NAMES)
