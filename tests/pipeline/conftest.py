"""Fixtures for registry and serving tests: assessors of known quality order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mint_iqa.config import Params


@pytest.fixture(scope="session")
def assessors(raw_dir: Path, prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three assessors of known order on the held-out images (the paper test split), each in its own
    `<explain.out_dir>/paper/best` folder: C (trained briefly, each head's sign oriented so that its SRCC on
    the held-out images is >= 0), A (constant scores: SRCC 0) and B (C's heads negated: SRCC -C)."""
    from mint_iqa.models.registry import build_explainer, explainer_config, load_scorer, save_assessor
    from mint_iqa.train.scorer import train_scorer
    from tests.conftest import _project_prepare
    from tests.model.conftest import TINY
    from tests.model.test_explainer import SMALL

    root = tmp_path_factory.mktemp("assessors")
    params = Params.model_validate({
        "data": {"raw_dir": str(raw_dir)}, "prepare": {**_project_prepare(), "out_dir": str(prepared)},
        "model": {"overrides": TINY},
        "train": {"out_dir": str(root / "scorer"), "checkpoint_dir": str(root / "ckpt"), "epochs": 2,
                  "steps_per_epoch": 25, "batch_size": 16, "warmup_steps": 5, "workers": 0, "crop": 128}})
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'train.db'}"
    try:
        best = train_scorer(params, "paper")
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    orientation = _orientation(best, prepared)
    folders = {}
    for name in ("C", "A", "B"):
        scorer, tok = load_scorer(best)
        with torch.no_grad():
            for dim, head in scorer.heads.items():
                if orientation[dim] < 0:
                    head[-1].weight.neg_()
                    head[-1].bias.neg_()
                if name == "A":
                    head[-1].weight.zero_()
                elif name == "B":
                    head[-1].weight.neg_()
                    head[-1].bias.neg_()
        explainer, _ = build_explainer(scorer, tok, explainer_config("tiny", SMALL))
        folders[name] = root / name
        save_assessor(explainer, tok, folders[name] / "paper" / "best")
    return folders




def _orientation(model: Path, prepared: Path) -> dict[str, float]:
    """Per dimension, the sign of the trained scorer's SRCC on the paper test split."""
    from mint_iqa.data import manifest
    from mint_iqa.inference import Scorer
    from mint_iqa.metrics import srcc

    df, meta = manifest.read(prepared)
    root = manifest.image_root(prepared, meta)
    df = df[df["split_paper"] == "test"]
    scores = Scorer.load(model).score([str(root / p) for p in df["image"]], list(df["prompt"]), scale="raw")
    return {d: 1.0 if srcc(scores[d].to_numpy(), df[d].to_numpy()) >= 0 else -1.0 for d in scores.columns
            if d in ("quality", "authenticity", "correspondence")}
