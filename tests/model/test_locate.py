"""The optional damage-map target (`train.loss.locate`): where a synthesised sample is damaged, per patch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mint_iqa.config import load_params
from mint_iqa.data.references import load_references
from mint_iqa.data.synth import WHERE_GRID, Recipe, Synthesiser
from mint_iqa.models.factory import build_scorer, build_tokenizer, preset_config
from mint_iqa.models.scorer import patch_tokens
from mint_iqa.train.data import NO_MAP, _view, collate
from mint_iqa.train.scorer import where_loss
from tests.conftest import ROOT
from tests.model.conftest import CORPUS, TINY


@pytest.fixture(scope="module")
def synth(raw_dir: Path) -> Synthesiser:
    return Synthesiser(load_references(raw_dir)[:2], load_params(ROOT / "params.yaml").prepare)


def test_damage_map_marks_the_damaged_family_and_where(synth: Synthesiser) -> None:
    rng = np.random.default_rng(0)
    pristine = synth.make(0, Recipe(), rng)
    mismatch = synth.make(0, Recipe(mismatch=5), rng)
    noisy = synth.make(0, Recipe((("quality", "noise", 5),)), rng)
    colour = synth.make(0, Recipe((("authenticity", "implausible_colour", 5),)), rng)
    for sample in (pristine, mismatch, noisy, colour):
        assert sample.where.shape == (WHERE_GRID, WHERE_GRID, 2)
        assert sample.where.min() >= 0.0 and sample.where.max() <= 1.0
    assert not pristine.where.any() and not mismatch.where.any()
    # noise: the quality channel, all over the image; nothing in the authenticity channel
    assert not noisy.where[..., 1].any() and np.percentile(noisy.where[..., 0], 10) > 0.2
    # a local defect: the authenticity channel, concentrated in one region
    region = colour.where[..., 1]
    assert not colour.where[..., 0].any() and region.max() > 0.5
    assert np.mean(region > 0.5 * region.max()) < 0.6


def test_a_view_turns_the_map_with_the_image() -> None:
    image = np.arange(4 * 4 * 3).reshape(4, 4, 3)
    where = image[..., :2].astype(np.float32)
    for view in range(8):
        assert np.array_equal(_view(image, view)[..., :2], _view(where, view))
    assert len({_view(image, v).tobytes() for v in range(8)}) == 8  # eight different views


def test_where_loss_masks_images_without_a_map_and_rewards_the_right_map() -> None:
    target = torch.zeros(2, WHERE_GRID, WHERE_GRID, 2)
    target[0, :8, :8, 1] = 1.0  # top-left quarter damaged
    grid = torch.zeros(2, 2, 2, 2)
    grid[0, 0, 0, 1] = 1.0
    right = (grid * 20 - 10).flatten(1, 2)  # (B, 4 patches, 2) logits agreeing with the map
    wrong = -right
    assert where_loss(right, target) < 0.01 < where_loss(wrong, target)
    # the second image has no map (a prepared image): its logits cost nothing
    batch = collate(
        [
            {
                "image": torch.zeros(3, 8, 8),
                "prompt": "",
                "labels": torch.zeros(3),
                "aux": [0, -100],
                "answers": {},
                "pick": 0,
                "where": w,
                "group": "",
                "matching": True,
            }
            for w in (target[0], NO_MAP)
        ]
    )
    assert batch["where"].shape == (2, WHERE_GRID, WHERE_GRID, 2)
    noise = right.clone()
    noise[1] = torch.randn(4, 2) * 10
    assert torch.allclose(where_loss(noise, batch["where"]), where_loss(right[:1], target[:1]))


def test_locating_scorer_maps_every_patch_and_drops_a_class_token() -> None:
    torch.manual_seed(0)
    config = preset_config("tiny", TINY)
    config.locate = True
    model, tok = build_scorer(config, tokenizer=build_tokenizer(config.text, corpus=CORPUS))
    enc = tok(CORPUS[:2])
    out = model(torch.rand(2, 3, 64, 64), enc["input_ids"], enc["attention_mask"])
    assert out.where_logits.shape == (2, model.features(torch.rand(1, 3, 64, 64)).shape[1], 2)
    feats = torch.randn(2, 1 + 16, 8)  # a class token, then a 4 x 4 grid
    assert torch.equal(patch_tokens(feats), feats[:, 1:]) and torch.equal(
        patch_tokens(feats[:, 1:]), feats[:, 1:]
    )
