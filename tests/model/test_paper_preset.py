"""The `paper` preset (HF InstructBLIP) through the loading path real weights use, with a tiny random
checkpoint of the same classes saved to disk and read back offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


# long: a tiny InstructBLIP folder laid out as a hub download is
@pytest.fixture(scope="module")
def instructblip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import (
        BertTokenizerFast,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipQFormerConfig,
        InstructBlipVisionConfig,
        LlamaConfig,
    )

    folder = tmp_path_factory.mktemp("instructblip-tiny")
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "content",
        "style",
        "scene",
        "a",
        "photo",
        "of",
        "cat",
        "rocket",
        ":",
        "|",
        "-",
        ",",
        "on",
        "sofa",
        "soft",
        "light",
    ]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder / "qformer_tokenizer")
    (folder / "vocab.txt").unlink()
    config = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
        ).to_dict(),
        qformer_config=InstructBlipQFormerConfig(
            vocab_size=len(words),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        ).to_dict(),
        text_config=LlamaConfig(
            vocab_size=160,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
        ).to_dict(),
        num_query_tokens=4,
        image_token_index=159,
    )
    torch.manual_seed(0)
    InstructBlipForConditionalGeneration(config).save_pretrained(folder)
    return folder


def test_paper_preset_loads_stage1_parts_offline(
    instructblip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import safe_open

    from mint_iqa.inference.scoring import Scorer
    from mint_iqa.models.factory import build_scorer, preset_config, save_scorer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = preset_config("paper", {"vision": {"pretrained": str(instructblip_dir)}})
    model, tokenizer = build_scorer(config)
    with safe_open(str(instructblip_dir / "model.safetensors"), "pt") as fh:
        saved_patch = fh.get_tensor("vision_model.embeddings.patch_embedding.weight")
        saved_queries = fh.get_tensor("query_tokens")
        n_language = sum(k.startswith("language_model.") for k in fh.keys())  # noqa: SIM118 - not a dict
    assert n_language > 0  # the checkpoint has a language model ...
    assert not any("language" in name for name, _ in model.named_parameters())  # ... stage 1 does not load it
    assert torch.equal(model.vision.model.embeddings.patch_embedding.weight, saved_patch)
    assert torch.equal(model.query_tokens.data, saved_queries)
    assert config.num_query_tokens == 4 and config.vision["vision_config"]["hidden_size"] == 32

    # one training step moves the weights and lowers nothing to NaN
    model.train()
    model.vision.freeze(0.6)
    enc = tokenizer(
        ["content: a cat | style: a photo | scene: on a sofa", "content: a rocket | style: - | scene: -"]
    )
    images, target = torch.rand(2, 3, 70, 70), torch.tensor([[0.9, 0.8, 0.7], [0.2, 0.3, 0.1]])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = model.heads["quality"][0].weight.clone()
    loss = torch.nn.functional.l1_loss(model(images, enc["input_ids"], enc["attention_mask"]).scores, target)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, model.heads["quality"][0].weight)
    assert model.vision.model.embeddings.patch_embedding.weight.grad is None  # frozen part untouched

    # saved as a scorer folder (config + safetensors + tokenizer), reloaded, scoring real files
    folder = save_scorer(model, tokenizer, tmp_path / "paper-scorer")
    files = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        from PIL import Image

        Image.fromarray(np.random.default_rng(i).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
        files.append(path)
    os.environ["HF_HUB_OFFLINE"] = "1"
    result = Scorer.load(folder, input_size=56).score(files, "a photo of a cat")
    assert (
        list(result["status"]) == ["ok"] * 3
        and result[["quality", "authenticity", "correspondence"]].notna().all().all()
    )


@pytest.fixture(scope="module")
def instructblip_with_lm_tokenizer(instructblip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint plus a language-model tokenizer at its root, as a real InstructBLIP folder has."""
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("instructblip-lm") / "model"
    shutil.copytree(instructblip_dir, folder)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = [
        "the image quality is excellent good fair poor bad: blur is noticeable and some details are lost.",
        "what is the quality of the image? prompt: content: a cat | style: a photo | scene: - answer:",
    ] * 50
    tok.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=150, special_tokens=["<unk>", "<s>", "</s>"])
    )
    from tokenizers import decoders

    tok.decoder = decoders.Metaspace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    ).save_pretrained(folder)
    return folder


# long: one explainer's life (train, save, reload, generate) on the paper classes
def test_paper_explainer_trains_with_feedback_saves_reloads_and_generates(
    instructblip_with_lm_tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mint_iqa.models.explaining import Texts, explain_batch
    from mint_iqa.models.factory import (
        build_explainer,
        build_scorer,
        explainer_config,
        load_assessor,
        preset_config,
        save_assessor,
    )
    from mint_iqa.models.text import segmenter

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = str(instructblip_with_lm_tokenizer)
    scorer, tokenizer = build_scorer(preset_config("paper", {"vision": {"pretrained": source}}))
    config = explainer_config("paper", {"max_answer_tokens": 16})
    model, lm_tok = build_explainer(scorer, tokenizer, config)
    assert config.feedback and config.num_query_tokens == 4 and model.language_model.config.hidden_size == 32
    texts = Texts(tokenizer, lm_tok, segmenter("rules"), config, level_weight=5.0)
    assert all(
        len(ids) == 1 for ids in texts.level_ids.values()
    )  # each level word found in the LM vocabulary

    enc = texts.encode(
        ["a photo of a cat", "a rocket"],
        ["What is the quality of the image?"] * 2,
        ["The image quality is fair: blur is noticeable.", "The image quality is excellent."],
    )
    assert enc["answer_weights"].max() == 5.0  # the level words weigh more
    images = torch.rand(2, 3, 56, 56)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(images, **enc)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.feedback.weight.grad is not None  # the feedback path learns
    assert all(p.grad is None for p in model.scorer.parameters())
    assert not any(
        p.requires_grad for p in model.language_model.parameters()
    )  # the paper keeps Vicuna frozen
    assert (
        model.qformer.encoder.layer[0].attention.attention.query.weight.grad is not None
    )  # its Q-Former learns
    opt.step()
    assert model.feedback.weight.abs().sum() > 0  # zero-initialised, moved by one step

    folder = save_assessor(model, tokenizer, tmp_path / "assessor")
    again, again_tok = load_assessor(folder)
    assert torch.equal(again.feedback.weight, model.feedback.weight)
    model.eval()
    rgb = [np.random.default_rng(i).integers(0, 255, (56, 56, 3), dtype=np.uint8) for i in range(2)]
    answers, stage1 = explain_batch(
        again,
        Texts(tokenizer, again_tok, segmenter("rules"), again.config),
        rgb,
        ["a cat", "a rocket"],
        ["What is the quality of the image?"] * 2,
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers) and stage1.scores.shape == (2, 3)
    assert (
        answers
        == explain_batch(model, texts, rgb, ["a cat", "a rocket"], ["What is the quality of the image?"] * 2)[
            0
        ]
    )


def test_paper_scale_bench_runs_every_step_in_bf16_on_small_configs(tmp_path: Path) -> None:
    """`bench/paper_scale.py --tiny`: the GPU measurement's code path (stage-1 checkpoint written and read
    back, bf16 ZeRO-2 training with the scorer's loss, scoring, stage 2 over a frozen language model,
    constrained generation), on a CPU with small configs of the same classes."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env = {
        k: v
        for k, v in env.items()
        if k not in {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_SIZE"}
    }
    proc = subprocess.run(
        [sys.executable, str(root / "bench" / "paper_scale.py"), "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {
        r["step"].split(",")[0]: r
        for r in json.loads((tmp_path / "paper_scale_tiny.json").read_text())["rows"]
    }
    assert not [r for r in rows.values() if "error" in r], rows
    assert {"train scorer", "score (forward_batch", "train explainer", "explain (greedy"} <= set(rows)
    assert (
        rows["build stage 2 (build_explainer)"]["trainable_M"]
        < rows["build stage 2 (build_explainer)"]["params_M"] / 2
    )
    assert all(r["images_per_s"] > 0 for r in rows.values() if "images_per_s" in r)
