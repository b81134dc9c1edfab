"""Presets by name, building scorers from them, and saving / loading trained scorers.

Presets are small JSON files in `presets/` (`lite0.json`, `tiny.json`, `clip.json`, `paper.json`).
`clip-<model>` uses `clip.json` with `vision.model = <model>` (any open_clip architecture name). A trained
scorer is a folder: `config.json` (a `ScorerConfig`, complete: rebuilding never touches a hub) and
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
    data.pop("explainer", None)  # stage 2's section: see explainer_config
    for key, value in (overrides or {}).items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return ScorerConfig.from_dict({"preset": name, **data})


def build_tokenizer(
    text: dict[str, Any], source: str | Path | None = None, corpus: list[str] | None = None
) -> BPETokenizer | OpenClipTokenizer | HFTokenizer:
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
            for key in fh.keys():  # noqa: SIM118 - safetensors' safe_open is not a dict (not iterable)
                if key.startswith(prefixes):
                    tensors[key] = fh.get_tensor(key)
    return tensors


def _build_paper(config: ScorerConfig, load_weights: bool) -> MintScorer:
    from transformers import (
        InstructBlipConfig,
        InstructBlipQFormerConfig,
        InstructBlipQFormerModel,
        InstructBlipVisionConfig,
    )

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
        tower.model.load_state_dict(
            {k.removeprefix("vision_model."): v for k, v in tensors.items() if k.startswith("vision_model.")}
        )
        qformer.load_state_dict(
            {k.removeprefix("qformer."): v for k, v in tensors.items() if k.startswith("qformer.")}
        )
        model.query_tokens.data.copy_(tensors["query_tokens"])
    return model


def _config_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    drop = {"transformers_version", "model_type", "architectures", "_name_or_path", "base_config_key"}
    return {k: v for k, v in data.items() if k not in drop}


# ------------------------------------------------------------------ build / save / load


def build_scorer(
    config: ScorerConfig, load_weights: bool = True, tokenizer: Any = None
) -> tuple[MintScorer, Any]:
    """A scorer for `config` and its tokenizer (built from `config.text` unless given).
    `load_weights=False` builds the architecture only (a trained checkpoint is loaded right after)."""
    from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

    from mint_iqa.models.vision import EfficientNetTower, OpenClipTower, TinyTower

    kind = config.vision.get("type")
    if kind == "instructblip":
        model = _build_paper(config, load_weights)
        source = config.text.get("path") or config.vision["pretrained"]
        return model, build_tokenizer(config.text, source)
    tokenizer = tokenizer or build_tokenizer(config.text)
    if kind == "tiny":
        tower = TinyTower(**config.vision)
    elif kind == "efficientnet":
        tower = EfficientNetTower(
            **{**config.vision, "pretrained": config.vision.get("pretrained") if load_weights else None}
        )
    elif kind == "open_clip":
        kwargs = dict(config.vision)
        if not load_weights:
            kwargs["pretrained"] = None
        tower = OpenClipTower(**kwargs)
    else:
        raise ValueError(f"unknown vision tower type {kind!r}")
    qcfg = InstructBlipQFormerConfig(
        vocab_size=tokenizer.vocab_size,
        encoder_hidden_size=tower.dim,
        pad_token_id=tokenizer.pad_id,
        **config.qformer,
    )
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


# ------------------------------------------------------------------ stage 2: explainer

EXPLAINER_DIR, SCORER_DIR = "explainer", "scorer"


def explainer_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The `explainer` section of a preset file, with `overrides` merged one level deep."""
    from mint_iqa.models.explainer import ExplainerConfig

    file = (
        PRESETS
        / f"{'clip' if name.startswith('clip-') and not (PRESETS / f'{name}.json').exists() else name}.json"
    )
    if not file.exists():
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    data = dict(json.loads(file.read_text()).get("explainer", {}))
    for key, value in (overrides or {}).items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return ExplainerConfig.from_dict({"preset": name, **data})


def build_explainer(
    scorer: MintScorer, tokenizer: Any, config: Any, load_weights: bool = True
) -> tuple[Any, Any]:
    """The stage-2 model over a trained (frozen) scorer, and the tokenizer its language model uses."""
    from torch import nn
    from transformers import (
        AutoModelForCausalLM,
        InstructBlipQFormerConfig,
        InstructBlipQFormerModel,
        LlamaConfig,
    )

    from mint_iqa.models.explainer import MintExplainer

    if scorer.config.vision.get("type") == "instructblip":
        return _build_paper_explainer(scorer, config, load_weights)
    qcfg = InstructBlipQFormerConfig(
        vocab_size=tokenizer.vocab_size,
        encoder_hidden_size=scorer.vision.dim,
        pad_token_id=tokenizer.pad_id,
        **config.qformer,
    )
    lm_config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
        **config.lm,
    )
    lm = AutoModelForCausalLM.from_config(lm_config)
    query_tokens = torch.randn(1, config.num_query_tokens, qcfg.hidden_size) * qcfg.initializer_range
    model = MintExplainer(
        config,
        scorer,
        InstructBlipQFormerModel(qcfg),
        query_tokens,
        nn.Linear(qcfg.hidden_size, lm_config.hidden_size),
        lm,
    )
    return model, tokenizer


def _build_paper_explainer(scorer: MintScorer, config: Any, load_weights: bool) -> tuple[Any, Any]:
    """InstructBLIP's own Q-Former, query tokens, projection and language model (its vision model is
    dropped: stage 2 reads the frozen stage-1 tower's features)."""
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

    from mint_iqa.models.explainer import MintExplainer

    source = scorer.config.vision["pretrained"]
    if load_weights:
        full = InstructBlipForConditionalGeneration.from_pretrained(source)
    else:
        full = InstructBlipForConditionalGeneration(InstructBlipConfig.from_pretrained(source))
    config.num_query_tokens = full.config.num_query_tokens
    model = MintExplainer(
        config,
        scorer,
        full.qformer,
        full.query_tokens.data.clone(),
        full.language_projection,
        full.language_model,
    )
    del full.vision_model
    return model, HFTokenizer(source, max_length=config.max_instruction_tokens)


def save_assessor(explainer: Any, scorer_tokenizer: Any, folder: str | Path) -> Path:
    """Both stages in one folder: `scorer/` (a scorer folder) and `explainer/` (config + stage-2 weights)."""
    folder = Path(folder)
    save_scorer(explainer.scorer, scorer_tokenizer, folder / SCORER_DIR)
    state, seen = {}, set()
    for key, value in explainer.state_dict().items():  # tied tensors (LM head = embeddings) are saved once
        if key.startswith("scorer.") or value.data_ptr() in seen:
            continue
        seen.add(value.data_ptr())
        state[key] = value.detach().contiguous().cpu()
    (folder / EXPLAINER_DIR).mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / EXPLAINER_DIR / WEIGHTS))
    write_text(folder / EXPLAINER_DIR / CONFIG, json.dumps(explainer.config.to_dict(), indent=2) + "\n")
    return folder


def _tied_to(model: Any, loaded: dict[str, Any]) -> set[str]:
    """Names whose tensor shares storage with a loaded one (so loading that one filled them too)."""
    state = model.state_dict()
    loaded_ptrs = {state[k].data_ptr() for k in loaded if k in state}
    return {k for k, v in state.items() if k not in loaded and v.data_ptr() in loaded_ptrs}


def load_assessor(folder: str | Path) -> tuple[Any, Any]:
    """(explainer with its frozen scorer, tokenizer) from a folder written by `save_assessor`."""
    from mint_iqa.models.explainer import ExplainerConfig

    folder = Path(folder)
    if not (folder / EXPLAINER_DIR / WEIGHTS).exists():
        raise FileNotFoundError(f"{folder}: not an assessor folder (needs {EXPLAINER_DIR}/{WEIGHTS})")
    scorer, tokenizer = load_scorer(folder / SCORER_DIR)
    config = ExplainerConfig.from_dict(json.loads((folder / EXPLAINER_DIR / CONFIG).read_text()))
    model, lm_tokenizer = build_explainer(scorer, tokenizer, config, load_weights=False)
    state = load_file(str(folder / EXPLAINER_DIR / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = _tied_to(model, state)
    if unexpected or any(not k.startswith("scorer.") and k not in tied for k in missing):
        raise ValueError(f"{folder}: explainer weights do not match its config")
    return model.eval(), lm_tokenizer
