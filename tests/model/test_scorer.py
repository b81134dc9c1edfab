"""Scorer model: presets, forward contract, safetensors round trip, clip towers, freezing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mint_iqa.models.factory import list_presets, load_scorer, preset_config, save_scorer
from tests.model.conftest import CORPUS


def _batch(tokenizer, n: int = 3, size: int = 64):
    enc = tokenizer(CORPUS[:n])
    return torch.rand(n, 3, size, size), enc["input_ids"], enc["attention_mask"]


def test_presets_listed_and_unknown_is_clear() -> None:
    assert {"tiny", "paper", "clip"} <= set(list_presets())
    assert preset_config("clip-ViT-B-16").vision["model"] == "ViT-B-16"
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset_config("huge")


def test_forward_contract(tiny_scorer) -> None:
    model, tok = tiny_scorer
    out = model(*_batch(tok))
    assert out.scores.shape == (3, 3)
    assert out.query_embeds.shape == (3, 8, 32)  # prompt-free and prompt-reading queries
    assert out.aux_logits is None
    # any image size: the tiny tower reads 64 px and 96 px alike
    assert model(torch.rand(2, 3, 96, 96), *_batch(tok, 2)[1:]).scores.shape == (2, 3)


def test_only_correspondence_reads_the_prompt(tiny_scorer) -> None:
    model, tok = tiny_scorer
    images, ids, mask = _batch(tok, 2)
    a = model(images[:1].repeat(2, 1, 1, 1), ids, mask).scores  # same image, two different prompts
    assert torch.allclose(a[0, :2], a[1, :2])  # quality and authenticity do not depend on the prompt
    assert not torch.allclose(a[0, 2], a[1, 2])  # correspondence does


def test_save_load_roundtrip_is_exact(tiny_scorer, tmp_path: Path) -> None:
    model, tok = tiny_scorer
    model.eval()
    batch = _batch(tok)
    before = model(*batch).scores
    folder = save_scorer(model, tok, tmp_path / "scorer")
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    again, tok2 = load_scorer(folder)
    assert torch.equal(again(*batch).scores, before)
    assert tok2(["a cat"])["input_ids"].tolist() == tok(["a cat"])["input_ids"].tolist()
    assert json.loads((folder / "config.json").read_text())["preset"] == "tiny"


def test_load_rejects_non_scorer_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a scorer folder"):
        load_scorer(tmp_path)


def test_freeze_fraction_of_blocks(tiny_scorer) -> None:
    model, _ = tiny_scorer
    model.vision.freeze(1.0)
    assert not any(p.requires_grad for p in model.vision.transformer.parameters())
    assert not any(p.requires_grad for p in model.vision.stem.parameters())
    assert all(p.requires_grad for p in model.qformer.parameters())


@pytest.mark.slow
def test_clip_preset_with_local_safetensors(tmp_path: Path) -> None:
    """A `clip-<model>` tower from an open_clip architecture and a local .safetensors file (no hub)."""
    import open_clip
    from safetensors.torch import save_file

    from mint_iqa.models.factory import build_scorer, build_tokenizer

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "test-vit-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "test-vit-tiny.json")
    clip = open_clip.create_model("test-vit-tiny")
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))

    config = preset_config(
        "clip-test-vit-tiny",
        {
            "vision": {"pretrained": str(weights)},
            "qformer": {
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            },
            "text": {"tokenizer": "bpe"},
        },
    )
    model, tok = build_scorer(config, tokenizer=build_tokenizer(config.text, corpus=CORPUS))
    assert torch.equal(model.vision.visual.conv1.weight, clip.visual.conv1.weight)
    out = model(*_batch(tok, 2, size=80))  # resized to the tower's 64 px
    assert out.scores.shape == (2, 3)
    model.vision.freeze(0.5)
    blocks = list(model.vision.visual.transformer.resblocks)
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert all(p.requires_grad for p in blocks[1].parameters())
    with pytest.raises(ValueError, match="safetensors"):
        build_scorer(
            preset_config(
                "clip-test-vit-tiny",
                {"vision": {"pretrained": str(tmp_path / "w.pt")}, "text": {"tokenizer": "bpe"}},
            ),
            tokenizer=build_tokenizer({"tokenizer": "bpe"}, corpus=CORPUS),
        )


def test_word_fusion_moves_only_correspondence_and_survives_saving(tmp_path: Path) -> None:
    """With its ImageNet head (`vision.classes`) and a fitted `word_fusion`, the lite0 scorer adds the
    prompt's word evidence to correspondence, in the model and through `Scorer`, and keeps it on disk."""
    import numpy as np

    from mint_iqa.inference.scoring import Scorer
    from mint_iqa.models.factory import build_scorer, build_tokenizer
    from mint_iqa.models.words import evidence, word_masks

    config = preset_config("lite0")
    assert config.vision["classes"]
    model, tok = build_scorer(
        config, load_weights=False, tokenizer=build_tokenizer(config.text, corpus=CORPUS)
    )
    model.eval()
    images, ids, mask = _batch(tok, 2, size=96)
    prompts = ["a photo of a cat on a table", "a photo of a dog"]
    feats, probs = model.encode(images)
    assert probs.shape == (2, 1000) and torch.allclose(probs.sum(-1), torch.ones(2))
    words = word_masks(prompts)
    plain = model(images, ids, mask, feats=feats, probs=probs, words=words).scores  # no fusion fitted yet
    model.config.word_fusion = [0.5, 0.25, 0.1, -4.0]
    fused = model(images, ids, mask, feats=feats, probs=probs, words=words).scores
    assert torch.equal(fused[:, :2], plain[:, :2])
    ev = evidence(probs, words)
    assert torch.allclose(fused[:, 2], 0.5 * plain[:, 2] + 0.25 * ev + 0.1, atol=1e-5)

    save_scorer(model, tok, tmp_path / "scorer")
    again = Scorer.load(tmp_path / "scorer")
    assert again.model.config.word_fusion == [0.5, 0.25, 0.1, -4.0]
    pixels = [(img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for img in images]
    scores = again.forward_batch(pixels, prompts)
    reference = Scorer(model, tok, torch.device("cpu")).forward_batch(pixels, prompts)
    assert np.allclose(scores, reference, atol=1e-5)
    model.config.word_fusion = None
    unfused = Scorer(model, tok, torch.device("cpu")).forward_batch(pixels, prompts)
    assert np.allclose(unfused[:, :2], scores[:, :2], atol=1e-5) and not np.allclose(
        unfused[:, 2], scores[:, 2]
    )
