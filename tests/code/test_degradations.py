"""Distortion functions: shape and range kept, deterministic for a seed, stronger with the level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mint_iqa.config import load_params
from mint_iqa.data import degradations
from mint_iqa.data.damage import damage, damage_map

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
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.array_equal(out, again)
    assert np.abs(out - image).mean() > 1e-3  # it did something


@pytest.mark.parametrize("family, name", CASES)
def test_severity_grows_with_level(image: np.ndarray, family: str, name: str) -> None:
    """Mean absolute change from the original, averaged over seeds, increases from level 1 to level 5."""
    ladders = getattr(PARAMS, family)

    def change(level: int) -> float:
        return float(
            np.mean(
                [
                    np.abs(
                        degradations.apply(image, family, name, level, ladders, np.random.default_rng(seed))
                        - image
                    ).mean()
                    for seed in range(6)
                ]
            )
        )

    assert change(1) < change(3) < change(5)


def test_every_registered_distortion_has_a_defect_name() -> None:
    names = {name for family in degradations.REGISTRY.values() for name in family}
    assert names <= set(degradations.DEFECT_NAMES)


# ----------------------------------------------------------------------------- the broad defect space

ORIGINAL = {
    "gaussian_blur",
    "motion_blur",
    "noise",
    "jpeg",
    "exposure",
    "elastic_warp",
    "duplicated_patch",
    "smear",
    "implausible_colour",
    "grid",
}
NEW_LOCAL = [name for name in degradations.AUTHENTICITY if name not in ORIGINAL]
QUALITY_GROUPS = {"blur", "colour", "compression", "noise", "brightness", "spatial", "sharpness"}
AUTHENTICITY_GROUPS = {"geometry", "repetition", "smear", "seam", "transplant", "colour_region", "pattern"}


def _params(family: str, name: str, level: int) -> dict[str, float]:
    return {key: values[level - 1] for key, values in getattr(PARAMS, family)[name].items()}


@pytest.fixture(scope="module")
def odd_image() -> np.ndarray:
    """A non-square image with odd sides, smaller than any training crop."""
    from skimage import data

    return np.ascontiguousarray(data.coffee()[150:247, 200:361].astype(np.float32) / 255.0)


@pytest.mark.parametrize("family, name", CASES)
def test_raw_output_on_an_odd_sized_image(odd_image: np.ndarray, family: str, name: str) -> None:
    """The function itself (before `apply` clips) returns a new finite float32 image of the input's shape,
    the same one for the same seed, at the mildest and the most severe level."""
    fn = degradations.REGISTRY[family][name]
    before = odd_image.copy()
    for level in (1, 5):
        out = fn(odd_image, np.random.default_rng(7), **_params(family, name, level))
        again = fn(odd_image, np.random.default_rng(7), **_params(family, name, level))
        assert out.shape == odd_image.shape and out.dtype == np.float32
        assert np.isfinite(out).all()
        assert np.array_equal(out, again)
        assert out is not odd_image
    assert np.array_equal(odd_image, before)  # the input is left alone


@pytest.mark.parametrize("family, name", CASES)
def test_level_one_is_visible_and_damage_grows(image: np.ndarray, family: str, name: str) -> None:
    """Level 1 changes the image; the measured damage (mean over 3 seeds) is larger at level 5."""
    ladders, local = getattr(PARAMS, family), family == "authenticity"

    def hurt(level: int) -> float:
        outs = [
            degradations.apply(image, family, name, level, ladders, np.random.default_rng(s))
            for s in range(3)
        ]
        assert all(not np.array_equal(o, image) for o in outs)
        return float(np.mean([damage(image, o, local) for o in outs]))

    mild, severe = hurt(1), hurt(5)
    assert mild > 0.0
    assert severe > mild, f"{name}: damage {mild:.3f} at level 1, {severe:.3f} at level 5"


@pytest.mark.parametrize("name", NEW_LOCAL)
def test_new_local_defects_leave_most_of_the_image_alone(name: str) -> None:
    """At level 1 a local defect is confined to one region: at least half of the pixels keep damage < 0.02."""
    from skimage import data

    img = data.astronaut()[::2, ::2].astype(np.float32) / 255.0  # 256 x 256
    for seed in range(3):
        out = degradations.apply(
            img, "authenticity", name, 1, PARAMS.authenticity, np.random.default_rng(seed)
        )
        untouched = float((damage_map(img, out) < 0.02).mean())
        assert untouched >= 0.5, f"{name} (seed {seed}): only {untouched:.0%} of the pixels untouched"


def test_counts_and_groups() -> None:
    quality, authenticity = degradations.QUALITY, degradations.AUTHENTICITY
    assert len(quality) >= 26 - ("jpeg2000" not in quality) and len(authenticity) >= 11
    assert set(quality) | set(authenticity) >= ORIGINAL
    assert set(degradations.GROUPS) == set(quality) | set(authenticity)
    assert {degradations.GROUPS[k] for k in quality} == QUALITY_GROUPS
    assert {degradations.GROUPS[k] for k in authenticity} <= AUTHENTICITY_GROUPS
    assert len({degradations.GROUPS[k] for k in authenticity}) >= 3
    for group in QUALITY_GROUPS:
        assert sum(degradations.GROUPS[k] == group for k in quality) >= 2, group


def test_defect_names_are_distinct_readable_phrases() -> None:
    kinds = set(degradations.QUALITY) | set(degradations.AUTHENTICITY)
    phrases = [degradations.DEFECT_NAMES[k] for k in kinds]
    assert len(set(phrases)) == len(phrases)
    assert all(p == p.lower() and 0 < len(p) <= 32 for p in phrases)


def test_every_kind_has_a_five_level_ladder_and_a_damage_scale() -> None:
    for family in degradations.REGISTRY:
        ladders = getattr(PARAMS, family)
        registered = set(degradations.REGISTRY[family])
        assert registered <= set(ladders), sorted(registered - set(ladders))
        assert set(ladders) - registered <= {"jpeg2000"}  # only when Pillow has no OpenJPEG
        for name in registered:
            assert name in PARAMS.labels.damage_scale and PARAMS.labels.damage_scale[name] > 0, name
            assert all(len(v) == 5 for v in ladders[name].values()), name
