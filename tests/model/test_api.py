"""The Python API (`mint_iqa.load`) and the calibrated 1-5 score scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mint_iqa
from mint_iqa.calibration import fit_calibration, to_scale
from mint_iqa.config import DIMENSIONS

COLS = list(DIMENSIONS)


def test_calibration_maps_monotonically_onto_one_to_five() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(400, 3))
    labels = 1 / (1 + np.exp(-2 * raw)) + rng.normal(scale=0.02, size=raw.shape)  # labels in ~[0, 1]
    labels[:, 2] = np.nan  # a dimension without labels keeps the identity map
    calibration = fit_calibration(raw, np.clip(labels, 0, 1))
    assert set(calibration) == {"quality", "authenticity"}
    mos = to_scale(raw, calibration)
    assert mos.min() >= 1.0 and mos.max() <= 5.0 and mos[:, 0].max() - mos[:, 0].min() > 3.0
    order = np.argsort(raw[:, 0])
    assert np.all(np.diff(mos[order, 0]) >= -1e-9)  # monotonic: ranking is unchanged
    inside = (raw[:, 2] >= 0.05) & (raw[:, 2] <= 0.95)  # uncalibrated: the identity, softened at the ends
    np.testing.assert_allclose(mos[inside, 2], 1 + 4 * raw[inside, 2])
    assert mos[:, 2].min() > 1 and mos[:, 2].max() < 5
    np.testing.assert_array_equal(to_scale(raw, calibration, "raw"), raw)
    with pytest.raises(ValueError, match="scale must be one of"):
        to_scale(raw, calibration, "percent")


def test_calibration_is_dropped_where_it_would_reverse_or_collapse_a_ranking() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(300, 3))
    labels = np.stack(
        [
            1 - 1 / (1 + np.exp(-2 * raw[:, 0])),  # anti-correlated: would reverse
            (raw[:, 1] > 0).astype(float),  # a step: would collapse to 2 values
            1 / (1 + np.exp(-raw[:, 2])),
        ],
        axis=1,
    )  # a proper monotonic relation
    calibration = fit_calibration(raw, labels)
    assert set(calibration) == {"correspondence"}
    mos = to_scale(raw, calibration)
    assert len(np.unique(mos[:, 2].round(6))) > 250  # ranking information kept


def test_the_scale_never_ties_what_the_raw_outputs_tell_apart() -> None:
    """Labels that saturate (most images flawless, as on the proxy) once gave a steep logistic and a hard
    clip: calibrated quality took three values and correspondence sat at 5.00. The scale is strictly
    increasing over every raw output, inside the observed range and beyond it, and keeps full precision."""
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(500, 3))
    labels = np.clip(1.2 / (1 + np.exp(-8 * raw)), 0, 1)  # saturates at 1 for most of the range
    calibration = fit_calibration(raw, labels)
    assert set(calibration) == set(DIMENSIONS)
    grid = np.linspace(raw.min() - 3, raw.max() + 3, 20001)
    mos = to_scale(np.repeat(grid[:, None], 3, axis=1), calibration)
    assert np.all(np.diff(mos, axis=0) > 0) and mos.min() > 1 and mos.max() < 5
    pairs = to_scale(np.array([[0.9, 0.9, 0.9], [0.9 + 1e-9, 0.9 + 1e-9, 0.9 + 1e-9]]), calibration)
    assert np.all(pairs[1] > pairs[0])
    out = to_scale(raw, calibration)
    assert all(len(np.unique(out[:, i])) == len(np.unique(raw[:, i])) for i in range(3))


def test_load_a_scorer_folder_and_score_any_image_form(scorer_dir: Path, folder: Path) -> None:
    m = mint_iqa.load(scorer_dir)
    path = folder / "ok1.png"
    pil = Image.open(path).convert("RGB")
    arr = np.asarray(pil)
    forms = [path, str(path), path.read_bytes(), pil, arr, arr.astype(np.float32) / 255.0]
    table = m.score(forms, "a photo of a cat")
    assert list(table["status"]) == ["ok"] * len(forms)
    np.testing.assert_allclose(
        table[COLS].to_numpy(), np.repeat(table[COLS].to_numpy()[:1], len(forms), 0), atol=1e-4
    )
    single = m.score(path, "a photo of a cat")  # one image, not a list
    assert len(single) == 1 and single[COLS].to_numpy().min() >= 1.0 and single[COLS].to_numpy().max() <= 5.0
    raw = m.score(path, "a photo of a cat", scale="raw")
    assert not np.allclose(raw[COLS].to_numpy(), single[COLS].to_numpy())
    with pytest.raises(ValueError, match="scorer only"):
        m.explain(path, "a photo of a cat")


def test_rank_puts_best_first_and_failures_last(scorer_dir: Path, folder: Path) -> None:
    m = mint_iqa.load(scorer_dir)
    images = [folder / "corrupt.png", *sorted(folder.glob("ok*.png"))]
    ranked = m.rank(images, "a photo of a cat")
    assert list(ranked["rank"][:5]) == [1, 2, 3, 4, 5] and np.isnan(ranked["rank"].iloc[-1])
    assert ranked["index"].iloc[-1] == 0 and "corrupt" in ranked["status"].iloc[-1]
    overall = ranked["overall"].to_numpy()[:5]
    assert np.all(np.diff(overall) <= 0)
    by_quality = m.rank(images, "a photo of a cat", by="quality")
    assert np.all(np.diff(by_quality["quality"].to_numpy()[:5]) <= 0)
    with pytest.raises(ValueError, match="by must be one of"):
        m.rank(images, "a photo of a cat", by="beauty")


def test_load_an_assessor_explains_and_assesses(assessor_dir: Path, folder: Path) -> None:
    m = mint_iqa.load(assessor_dir)
    assert "scorer + explainer" in repr(m)
    text = m.explain(folder / "ok0.png", "a photo of a cat", question="What is the quality of the image?")
    assert isinstance(text, str)
    table = m.assess([folder / "ok0.png", folder / "corrupt.png"], ["a cat", "a cat"])
    assert list(table["status"])[0] == "ok" and "corrupt" in table["status"][1]
    assert {f"explanation_{d}" for d in DIMENSIONS} <= set(table.columns)
    # the assessor's scores are the scorer's, on the same calibrated scale
    alone = m.score([folder / "ok0.png"], "a cat")
    np.testing.assert_allclose(table.loc[[0], COLS].to_numpy(float), alone[COLS].to_numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="prompt is empty"):
        m.explain(folder / "ok0.png", "  ")


def test_device_and_dtype(scorer_dir: Path, folder: Path) -> None:
    images = sorted(folder.glob("ok*.png"))
    full = mint_iqa.load(scorer_dir, device="cpu").score(images, "a cat", scale="raw")
    auto = mint_iqa.load(scorer_dir, device="auto")  # the GPU when there is one
    assert auto.scorer.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = mint_iqa.load(scorer_dir, dtype="bfloat16")
    assert next(bf16.scorer.model.parameters()).dtype == torch.bfloat16
    half = bf16.score(images, "a cat", scale="raw")
    np.testing.assert_allclose(half[COLS].to_numpy(), full[COLS].to_numpy(), atol=0.1)
    with pytest.raises(ValueError, match="floating torch dtype"):
        mint_iqa.load(scorer_dir, dtype="int8")
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        mint_iqa.load(folder / "nowhere")
