"""The defect head (`train.loss.aux`): one kind per damaged dimension, the one that hurt it most."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mint_iqa.config import load_params
from mint_iqa.data.references import load_references
from mint_iqa.data.synth import Recipe, Synthesiser
from mint_iqa.train.data import AUX_CLASSES, aux_targets, row_worst
from mint_iqa.train.scorer import aux_loss
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def synth(raw_dir: Path) -> Synthesiser:
    return Synthesiser(load_references(raw_dir)[:2], load_params(ROOT / "params.yaml").prepare)


def test_each_dimension_is_taught_its_own_worst_kind(synth: Synthesiser) -> None:
    recipe = Recipe(
        (("quality", "gaussian_blur", 1.0), ("quality", "noise", 5.0), ("authenticity", "smear", 3.0))
    )
    sample = synth.make(0, recipe, np.random.default_rng(0))
    assert sample.worst == {"quality": "noise", "authenticity": "smear"}
    assert aux_targets(sample.worst) == [AUX_CLASSES.index("noise"), AUX_CLASSES.index("smear")]
    clean = synth.make(0, Recipe(mismatch=3), np.random.default_rng(0))
    assert aux_targets(clean.worst) == [-100, -100]  # nothing to name: no target


def test_a_prepared_row_names_its_recorded_worst_and_the_other_dimensions_strongest() -> None:
    row = pd.Series(
        {"family": "quality", "distortion": "jpeg", "defects": "jpeg@2.10;noise@4.00;swirl@1.5;ghost@3"}
    )
    assert row_worst(row) == {"quality": "jpeg", "authenticity": "ghost"}
    assert row_worst(pd.Series({"family": "quality", "distortion": "none", "defects": float("nan")})) == {
        "quality": "none"
    }


def test_aux_loss_scores_each_family_over_its_own_kinds_and_skips_missing_ones() -> None:
    q, a = AUX_CLASSES.index("noise"), AUX_CLASSES.index("smear")
    targets = torch.tensor([[q, a], [q, -100]])
    right = torch.zeros(2, len(AUX_CLASSES))
    right[:, q] = right[:, a] = 8.0
    wrong = torch.zeros(2, len(AUX_CLASSES))
    wrong[:, AUX_CLASSES.index("jpeg")] = wrong[:, AUX_CLASSES.index("ghost")] = 8.0
    # one softmax over all kinds would put both targets at log 2: each family is scored apart
    assert aux_loss(right, targets) < 0.01 < 5.0 < aux_loss(wrong, targets)
    nothing = torch.zeros(1, len(AUX_CLASSES), requires_grad=True)
    loss = aux_loss(nothing, torch.tensor([[-100, -100]]))
    loss.backward()
    assert loss.item() == 0.0 and nothing.grad is not None
