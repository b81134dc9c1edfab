"""Presets by name, building scorers from them, and saving / loading trained scorers.

Presets are small JSON files in `presets/` (`tiny.json`, `clip.json`, `paper.json`). `clip-<model>`
uses `clip.json` with `vision.model = <model>` (any open_clip architecture name). A trained scorer
is a folder: `config.json` (a `ScorerConfig`, complete: rebuilding never touches a hub) and
`model.safetensors`, plus the tokenizer files for HF tokenizers.

The `paper` preset reads InstructBLIP from a hub id or a local folder through `transformers`' file
resolution and loads *only* the tensors stage 1 needs (vision model, Q-Former, query tokens) out of
the safetensors shards, never the 7B language model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mint_iqa.io import write_text
from mint_iqa.models.scorer import MintScorer, ScorerConfig
from mint_iqa.models.text import BPETokenizer, HFTokenizer, OpenClipTokenizer

PRESETS = Path(__file__).parent / "presets"
CONFIG, WEIGHTS, TOKENIZER_DIR, BPE_FILE = "config.json", "model.safetensors", "tokenizer", "tokenizer.json"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.json")) + ["clip-<open_clip model name>"]


def preset_config(name: str, overrides: dict[str, Any] | None = None) -> ScorerConfig:
    """The preset's config, with `overrides` merged one level deep (`{"vision": {"layers": 2}}`)."""
    file = PRESETS / f"{name}.json"
    if name.startswith("clip-") and not file.exists():
        data = json.loads((PRESETS / "clip.json").read_text())
        data["vision"]["model"] = name.removeprefix("clip-")
    elif file.exists():
        data = json.loads(file.read_text())
    else:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    for key, value in (overrides or {}).items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return ScorerConfig.from_dict({"preset": name, **data})


def build_tokenizer(text: dict[str, Any], source: str | Path | None = None,
                    corpus: list[str] | None = None) -> BPETokenizer | OpenClipTokenizer | HFTokenizer:
    """`bpe`: load `<source>/tokenizer.json`, else train one on `corpus`; `open_clip`: its shipped BPE;
    `hf`: a Hugging Face tokenizer from `source` (a folder or hub id)."""
    kind, max_length = text.get("tokenizer", "bpe"), text.get("max_length", 64)
    if kind == "bpe":
        if source is not None and (Path(source) / BPE_FILE).exists():
            return BPETokenizer.load(Path(source) / BPE_FILE, max_length)
        if corpus is None:
            raise ValueError("a bpe tokenizer needs a training corpus (or a folder with tokenizer.json)")
        return BPETokenizer.train(corpus, text.get("vocab_size", 2048), max_length)
    if kind == "open_clip":
        return OpenClipTokenizer(max_length)
    return HFTokenizer(str(source or text["path"]), text.get("subfolder"), max_length)


# ------------------------------------------------------------------ InstructBLIP parts (paper preset)

def _instructblip_tensors(path: str, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Tensors whose names start with `prefixes`, read shard by shard (a local folder or a hub id)."""
    from transformers.utils import cached_file

    index = cached_file(path, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
    if index:
        weight_map: dict[str, str] = json.loads(Path(index).read_text())["weight_map"]
        shards = sorted({shard for key, shard in weight_map.items() if key.startswith(prefixes)})
    else:
        shards = ["model.safetensors"]
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        with safe_open(cached_file(path, shard), framework="pt") as fh:
            for key in fh.keys():
                if key.startswith(prefixes):
                    tensors[key] = fh.get_tensor(key)
    return tensors


def _build_paper(config: ScorerConfig, load_weights: bool) -> MintScorer:
    from transformers import InstructBlipConfig, InstructBlipQFormerConfig, InstructBlipQFormerModel, \
        InstructBlipVisionConfig

    from mint_iqa.models.vision import InstructBlipTower

    vision = config.vision
    if "vision_config" not in vision:  # first build: read the architecture from the checkpoint
        full = InstructBlipConfig.from_pretrained(vision["pretrained"])
        vision["vision_config"] = full.vision_config.to_dict()
        config.qformer = {**full.qformer_config.to_dict(), **config.qformer}
        config.num_query_tokens = full.num_query_tokens
    tower = InstructBlipTower(InstructBlipVisionConfig(**_config_kwargs(vision["vision_config"])))
    qformer = InstructBlipQFormerModel(InstructBlipQFormerConfig(**_config_kwargs(config.qformer)))
    query_tokens = torch.zeros(1, config.num_query_tokens, qformer.config.hidden_size)
    model = MintScorer(config, tower, qformer, query_tokens)
    if load_weights:
        tensors = _instructblip_tensors(vision["pretrained"], ("vision_model.", "qformer.", "query_tokens"))
        tower.model.load_state_dict({k.removeprefix("vision_model."): v for k, v in tensors.items()
                                     if k.startswith("vision_model.")})
        qformer.load_state_dict({k.removeprefix("qformer."): v for k, v in tensors.items()
                                 if k.startswith("qformer.")})
        model.query_tokens.data.copy_(tensors["query_tokens"])
    return model


def _config_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    drop = {"transformers_version", "model_type", "architectures", "_name_or_path", "base_config_key"}
    return {k: v for k, v in data.items() if k not in drop}


# ------------------------------------------------------------------ build / save / load

def build_scorer(config: ScorerConfig, load_weights: bool = True, tokenizer: Any = None) -> tuple[MintScorer, Any]:
    """A scorer for `config` and its tokenizer (built from `config.text` unless given).
    `load_weights=False` builds the architecture only (a trained checkpoint is loaded right after)."""
    from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

    from mint_iqa.models.vision import OpenClipTower, TinyTower

    kind = config.vision.get("type")
    if kind == "instructblip":
        model = _build_paper(config, load_weights)
        source = config.text.get("path") or config.vision["pretrained"]
        return model, build_tokenizer(config.text, source)
    tokenizer = tokenizer or build_tokenizer(config.text)
    if kind == "tiny":
        tower = TinyTower(**config.vision)
    elif kind == "open_clip":
        kwargs = dict(config.vision)
        if not load_weights:
            kwargs["pretrained"] = None
        tower = OpenClipTower(**kwargs)
    else:
        raise ValueError(f"unknown vision tower type {kind!r}")
    qcfg = InstructBlipQFormerConfig(vocab_size=tokenizer.vocab_size, encoder_hidden_size=tower.dim,
                                     pad_token_id=tokenizer.pad_id, **config.qformer)
    qformer = InstructBlipQFormerModel(qcfg)
    query_tokens = torch.randn(1, config.num_query_tokens, qcfg.hidden_size) * qcfg.initializer_range
    return MintScorer(config, tower, qformer, query_tokens), tokenizer


def save_scorer(model: MintScorer, tokenizer: Any, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    write_text(folder / CONFIG, json.dumps(model.config.to_dict(), indent=2) + "\n")
    if isinstance(tokenizer, HFTokenizer):
        tokenizer._tok.save_pretrained(folder / TOKENIZER_DIR)
    elif isinstance(tokenizer, BPETokenizer):
        tokenizer.save(folder / BPE_FILE)
    return folder


def load_scorer(folder: str | Path, map_location: str = "cpu") -> tuple[MintScorer, Any]:
    """A trained scorer from a folder written by `save_scorer` (safetensors only, no pickle)."""
    folder = Path(folder)
    if not (folder / CONFIG).exists() or not (folder / WEIGHTS).exists():
        raise FileNotFoundError(f"{folder}: not a scorer folder (needs {CONFIG} and {WEIGHTS})")
    config = ScorerConfig.from_dict(json.loads((folder / CONFIG).read_text()))
    if (folder / TOKENIZER_DIR).exists():
        config.text = {**config.text, "path": str(folder / TOKENIZER_DIR), "subfolder": None}
    tokenizer = build_tokenizer(config.text, folder) if config.text.get("tokenizer", "bpe") == "bpe" else None
    model, tokenizer = build_scorer(config, load_weights=False, tokenizer=tokenizer)
    model.load_state_dict(load_file(str(folder / WEIGHTS), device=map_location))
    return model.eval(), tokenizer
