"""Tiny configurations of the real model classes, small enough to build and step in a second."""

from __future__ import annotations

import pytest

TINY = {
    "vision": {"type": "tiny", "stem": [8, 16], "width": 32, "layers": 1, "heads": 2, "mlp_ratio": 2.0,
               "mscn": True, "grid": 0},
    "qformer": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                "cross_attention_frequency": 1, "max_position_embeddings": 64},
    "num_query_tokens": 4,
    "head_hidden": 16,
}
CORPUS = ["content: a tabby cat | style: a photo | scene: on a sofa, soft light",
          "content: a red rocket | style: a photo | scene: lifting off, clear sky"] * 5


@pytest.fixture
def tiny_scorer():
    from mint_iqa.models.registry import build_scorer, build_tokenizer, preset_config

    config = preset_config("tiny", TINY)
    tokenizer = build_tokenizer(config.text, corpus=CORPUS)
    return build_scorer(config, tokenizer=tokenizer)
