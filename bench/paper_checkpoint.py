"""The `paper` preset's stand-in checkpoint for `bench/paper_scale.py`: InstructBLIP-Vicuna-7B's
architecture (or a small one for `--tiny`) with random weights, written as a downloaded InstructBLIP
folder would be, so that `build_scorer` reads it the way it reads the real one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

PROMPTS = [
    "a tabby cat asleep on a velvet sofa, oil painting, warm evening light",
    "a red rocket lifting off over the desert, photograph, clear sky",
    "an old lighthouse on a cliff, watercolour, stormy sea at dusk",
    "a bowl of ramen with a soft egg, studio photo, steam rising",
]
ANSWER = (
    "The image quality is fair: blur is noticeable and some fine details are lost. "
    "The authenticity is good: it looks natural apart from a few smeared textures. "
    "The correspondence is excellent: the image shows everything the prompt asks for."
)


def sizes(tiny: bool) -> dict[str, Any]:
    """Architecture of InstructBLIP-Vicuna-7B (the HF defaults for vision and Q-Former) or a small
    stand-in."""
    from transformers import InstructBlipQFormerConfig, InstructBlipVisionConfig, LlamaConfig

    if tiny:
        return {
            "vision": InstructBlipVisionConfig(
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=4,
                num_attention_heads=2,
                image_size=56,
                patch_size=14,
            ),
            "qformer": InstructBlipQFormerConfig(
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=128,
                encoder_hidden_size=64,
            ),
            "lm": LlamaConfig(
                vocab_size=32001,
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
            ),
            "queries": 4,
            "batches": [4],
            "steps": 4,
            "score_batches": [8],
            "explain_batch": 2,
        }
    return {
        "vision": InstructBlipVisionConfig(),  # EVA ViT-g/14: 1408 wide, 39 blocks, 224 px
        "qformer": InstructBlipQFormerConfig(),  # 768 wide, 12 layers, cross-attention every 2nd
        "lm": LlamaConfig(
            vocab_size=32001,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=2048,
        ),
        "queries": 32,
        "batches": [16, 64],
        "steps": 12,
        "score_batches": [1, 32, 128],
        "explain_batch": 16,
    }


# long: one checkpoint folder (config, stage-1 tensors, both tokenizers) in the order a hub folder holds them
def write_checkpoint(folder: Path, arch: dict[str, Any], device: str) -> Path:
    """An InstructBLIP folder: config.json, stage-1 tensors in model.safetensors, both tokenizers."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        BertTokenizerFast,
        InstructBlipConfig,
        InstructBlipQFormerModel,
        InstructBlipVisionModel,
        PreTrainedTokenizerFast,
    )

    from mint_iqa.data.answers import GRADE_WORDS

    folder.mkdir(parents=True, exist_ok=True)
    InstructBlipConfig(
        vision_config=arch["vision"].to_dict(),
        qformer_config=arch["qformer"].to_dict(),
        text_config=arch["lm"].to_dict(),
        num_query_tokens=arch["queries"],
    ).save_pretrained(folder)
    with torch.device(device):
        vision = InstructBlipVisionModel(arch["vision"]).to(torch.bfloat16)
        qformer = InstructBlipQFormerModel(arch["qformer"]).to(torch.bfloat16)
    tensors = {f"vision_model.{k}": v for k, v in vision.state_dict().items()}
    tensors |= {f"qformer.{k}": v for k, v in qformer.state_dict().items()}
    tensors["query_tokens"] = torch.randn(1, arch["queries"], arch["qformer"].hidden_size) * 0.02
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    words = sorted(
        {
            w
            for text in PROMPTS + [ANSWER, "content style scene : | - , ?"]
            for w in text.replace(",", " , ").replace(":", " : ").replace(".", " . ").split()
        }
    )
    (folder / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n"
    )
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder / "qformer_tokenizer")
    (folder / "vocab.txt").unlink()
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    # Vicuna's vocabulary is 32,000 pieces, and decoding constraints scan the vocabulary: random letter
    # strings fill the BPE vocabulary to the same size (the real words, far more frequent, become whole
    # pieces first).
    letters = np.random.default_rng(0).integers(97, 123, (60000, 9)).astype(np.uint8)
    noise = [bytes(row[: 3 + i % 7]).decode() for i, row in enumerate(letters)]
    corpus = [
        ANSWER,
        *PROMPTS,
        " ".join(GRADE_WORDS.values()),
        "What is the quality of the image? answer:",
    ] * 500
    corpus += [" ".join(noise[i : i + 50]) for i in range(0, len(noise), 50)]
    tok.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=arch["lm"].vocab_size, special_tokens=["<unk>", "<s>", "</s>"])
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    ).save_pretrained(folder)
    return folder
