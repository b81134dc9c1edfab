"""Tiny configurations of the real model classes, small enough to build and step in a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = {
    "vision": {
        "type": "tiny",
        "stem": [8, 16],
        "width": 32,
        "layers": 1,
        "heads": 2,
        "mlp_ratio": 2.0,
        "mscn": True,
        "grid": 0,
    },
    "qformer": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "cross_attention_frequency": 1,
        "max_position_embeddings": 64,
    },
    "num_query_tokens": 4,
    "head_hidden": 16,
}
CORPUS = [
    "content: a tabby cat | style: a photo | scene: on a sofa, soft light",
    "content: a red rocket | style: a photo | scene: lifting off, clear sky",
] * 5


@pytest.fixture
def tiny_scorer():
    """A randomly initialised tiny scorer, the same whichever tests ran before (seeded)."""
    import torch

    from mint_iqa.models.factory import build_scorer, build_tokenizer, preset_config

    torch.manual_seed(0)
    config = preset_config("tiny", TINY)
    tokenizer = build_tokenizer(config.text, corpus=CORPUS)
    return build_scorer(config, tokenizer=tokenizer)


@pytest.fixture
def scorer_dir(tiny_scorer, tmp_path: Path) -> Path:
    from mint_iqa.models.factory import save_scorer

    model, tok = tiny_scorer
    return save_scorer(model, tok, tmp_path / "model")


@pytest.fixture
def assessor_dir(tiny_scorer, tmp_path: Path) -> Path:
    """A tiny assessor (scorer/ + explainer/) with a made-up 1-5 calibration and a damage-map head."""
    import torch

    from mint_iqa.models.factory import build_explainer, explainer_config, save_assessor
    from mint_iqa.models.scorer import Locator
    from tests.model.test_explainer import SMALL

    scorer, tok = tiny_scorer
    scorer.config.calibration = {"quality": [1.0, 0.0, 0.0, 0.5], "correspondence": [2.0, -0.5]}
    scorer.config.locate = True  # an untrained damage-map head, as trained models have one
    with torch.random.fork_rng():  # the explainer below starts from the same random weights as without it
        scorer.locate = Locator(scorer.vision.dim)
    explainer, _ = build_explainer(scorer, tok, explainer_config("tiny", SMALL))
    return save_assessor(explainer, tok, tmp_path / "assessor")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Five random PNGs of different sizes and one truncated PNG."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (64 + 8 * i, 80, 3), dtype=np.uint8)).save(images / f"ok{i}.png")
    (images / "corrupt.png").write_bytes((images / "ok0.png").read_bytes()[:200])
    return images
