"""Prompt segmentation and tokenisation.

MINT-IQA reads the prompt split into parts — *content* (what should be there), *style* (how it is
rendered) and *scene / atmosphere* (where, lighting, mood) — so the Q-Former can match each part
against the image separately. The released code has no splitter, so `RuleSegmenter` is a
deterministic, offline one:

1. a leading "<style> of ..." head ("a photo of", "an oil painting of") is style;
2. the rest is cut into clauses at commas, semicolons and full stops;
3. a clause with style words (photo, painting, render, 4k, "in the style of", "by <artist>") is
   style; one with lighting / mood / weather / time words is scene-atmosphere;
4. in the remaining content clauses, a scene phrase starting at a place preposition ("in a", "on
   the", "in front of", "under", ...) moves to scene-atmosphere; "with ..." details stay content.

Segmenters are looked up by name (`SEGMENTERS`), so another splitter (an LLM, say) can be plugged in.
The segmented prompt is rendered as text, "content: ... | style: ... | scene: ...", which any
Q-Former with a text input reads, including the pretrained InstructBLIP one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

STYLE_WORDS = (
    "photo",
    "photograph",
    "photography",
    "picture",
    "image",
    "painting",
    "drawing",
    "illustration",
    "sketch",
    "render",
    "rendering",
    "3d",
    "cgi",
    "digital art",
    "artwork",
    "oil",
    "watercolor",
    "watercolour",
    "acrylic",
    "pencil",
    "charcoal",
    "anime",
    "manga",
    "cartoon",
    "comic",
    "pixel art",
    "vector",
    "poster",
    "portrait",
    "close-up",
    "closeup",
    "macro",
    "high-resolution",
    "high resolution",
    "4k",
    "8k",
    "hd",
    "hdr",
    "uhd",
    "cinematic",
    "artstation",
    "unreal engine",
    "octane",
    "trending",
    "black and white",
    "monochrome",
    "vintage",
    "retro",
    "sepia",
    "polaroid",
    "style",
    "scan",
    "capture",
    "telescope",
    "microscope image",
    "bokeh",
    "wide-angle",
    "fisheye",
    "studio ghibli",
    "surreal",
    "minimalist",
    "impressionist",
    "realistic",
    "photorealistic",
    "hyperrealistic",
    "detailed",
    "aerial view",
    "bird's-eye view",
    "shot",
)
ATMOSPHERE_WORDS = (
    "light",
    "lighting",
    "lit",
    "sunlight",
    "sunset",
    "sunrise",
    "dawn",
    "dusk",
    "night",
    "daylight",
    "midday",
    "morning",
    "evening",
    "afternoon",
    "golden hour",
    "shadow",
    "shadows",
    "glow",
    "glowing",
    "dark",
    "bright",
    "dim",
    "foggy",
    "fog",
    "misty",
    "mist",
    "haze",
    "hazy",
    "rain",
    "rainy",
    "snow",
    "snowy",
    "storm",
    "stormy",
    "cloudy",
    "overcast",
    "clear sky",
    "sky",
    "mood",
    "atmosphere",
    "ambience",
    "dramatic",
    "calm",
    "peaceful",
    "serene",
    "cosy",
    "cozy",
    "gloomy",
    "moody",
    "warm",
    "cold",
    "cosmic",
    "quiet",
    "silent",
    "dignified",
    "formal",
    "vast",
    "fresh",
    "dreamy",
    "eerie",
)
SCENE_PREPOSITIONS = (
    "in front of",
    "on top of",
    "next to",
    "in the middle of",
    "in",
    "on",
    "at",
    "under",
    "above",
    "below",
    "inside",
    "outside",
    "near",
    "beside",
    "behind",
    "among",
    "across",
    "over",
    "through",
    "before",
    "along",
    "against",
    "underneath",
    "within",
    "into",
    "from",
)
_STYLE_HEAD = re.compile(
    r"^\s*((?:an?|the)?\s*[\w\s,'-]*?\b(?:" + "|".join(re.escape(w) for w in STYLE_WORDS) + r")s?)\s+of\s+",
    re.I,
)
_STYLE_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(w) for w in STYLE_WORDS) + r")s?\b|\bin the style of\b"
    r"|\bby [A-Z]",
    re.I,
)
_ATMOS_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in ATMOSPHERE_WORDS) + r")s?\b", re.I)
_SCENE_RE = re.compile(
    r"\s(?:\w+ing\s+)?(?:" + "|".join(re.escape(p) for p in SCENE_PREPOSITIONS) + r")\s+(?:an?|the|\w+)\b",
    re.I,
)


@dataclass(frozen=True)
class Segments:
    content: str
    style: str
    scene: str

    def render(self) -> str:
        return f"content: {self.content or '-'} | style: {self.style or '-'} | scene: {self.scene or '-'}"


def _join(parts: list[str]) -> str:
    return ", ".join(p for p in (p.strip() for p in parts) if p)


def rule_segments(prompt: str) -> Segments:
    """Split `prompt` into content / style / scene-atmosphere with the rules in the module docstring."""
    text = " ".join(prompt.split())
    style, scene, content = [], [], []
    head = _STYLE_HEAD.match(text)
    if head and "," not in head.group(1):
        style.append(head.group(1))
        text = text[head.end() :]
    for clause in re.split(r"\s*[,;]\s*|\.\s+|\.$", text):
        if not clause.strip():
            continue
        if _STYLE_RE.search(clause) and not clause.lower().startswith("with "):
            style.append(clause)
        elif _ATMOS_RE.search(clause) and content:  # the first clause is the subject even if "a dark forest"
            scene.append(clause)
        else:
            match = _SCENE_RE.search(clause) if not clause.lower().startswith("with ") else None
            if match and match.start() > 0:
                content.append(clause[: match.start()])
                scene.append(clause[match.start() :])
            else:
                content.append(clause)
    if not content and scene:  # a prompt that is all scene ("a sunset over the sea") keeps its subject
        content, scene = scene[:1], scene[1:]
    return Segments(_join(content), _join(style), _join(scene))


SEGMENTERS: dict[str, Callable[[str], str]] = {
    "rules": lambda prompt: rule_segments(prompt).render(),
    "none": lambda prompt: " ".join(prompt.split()),
}


def segmenter(name: str) -> Callable[[str], str]:
    if name not in SEGMENTERS:
        raise ValueError(f"unknown prompt segmenter {name!r}; choose one of {sorted(SEGMENTERS)}")
    return SEGMENTERS[name]


class BPETokenizer:
    """A byte-level BPE tokenizer trained on the training corpus (prompts and answers).

    The default for from-scratch models: a vocabulary of ~1-2k tokens keeps the embedding tables and
    the explainer's output layer small, and byte-level pieces mean no prompt is ever out of vocabulary.
    """

    pad_id, bos_id, eos_id = 0, 1, 2
    SPECIALS = ["<pad>", "<bos>", "<eos>"]

    def __init__(self, tokenizer: Any, max_length: int = 64):
        self._tok = tokenizer
        self.max_length = max_length
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def train(cls, corpus: Iterable[str], vocab_size: int = 2048, max_length: int = 64) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=cls.SPECIALS,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        seed = [
            " ".join(STYLE_WORDS),
            " ".join(ATMOSPHERE_WORDS),
            " ".join(SCENE_PREPOSITIONS),
            "content: | style: | scene: -",
        ]
        tok.train_from_iterator([*seed, *corpus], trainer)
        return cls(tok, max_length)

    @classmethod
    def load(cls, path: str | Path, max_length: int = 64) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), max_length)

    def save(self, path: str | Path) -> None:
        from mint_iqa.io import write_text

        write_text(path, self._tok.to_str())

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode([i for i in ids if i > self.eos_id]).strip()

    def __call__(
        self, texts: list[str], max_length: int | None = None, bos: bool = True, eos: bool = True
    ) -> dict[str, torch.Tensor]:
        n = (max_length or self.max_length) - bos - eos
        return _pad(
            [[self.bos_id] * bos + self.encode(t)[:n] + [self.eos_id] * eos for t in texts], self.pad_id
        )


def _pad(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    ids = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return {"input_ids": ids, "attention_mask": (ids != pad_id).long()}


class OpenClipTokenizer:
    """open_clip's BPE tokenizer (its vocabulary ships inside the wheel: fully offline)."""

    pad_id = 0

    def __init__(self, max_length: int = 64):
        import open_clip

        self._tok = open_clip.tokenizer.SimpleTokenizer()
        self.max_length = max_length
        self.vocab_size = self._tok.vocab_size
        self.bos_id, self.eos_id = self._tok.sot_token_id, self._tok.eot_token_id

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text)

    def decode(self, ids: list[int]) -> str:
        ids = [i for i in ids if i not in (self.pad_id, self.bos_id, self.eos_id)]
        return self._tok.decode(ids).strip()

    def __call__(
        self, texts: list[str], max_length: int | None = None, bos: bool = True, eos: bool = True
    ) -> dict[str, torch.Tensor]:
        n = (max_length or self.max_length) - bos - eos
        return _pad(
            [[self.bos_id] * bos + self.encode(t)[:n] + [self.eos_id] * eos for t in texts], self.pad_id
        )


class HFTokenizer:
    """A Hugging Face tokenizer from a local folder (paper preset: the InstructBLIP Q-Former's BERT one)."""

    def __init__(self, path: str, subfolder: str | None = None, max_length: int = 64):
        from transformers import AutoTokenizer

        kwargs = {"subfolder": subfolder} if subfolder else {}
        self._tok = AutoTokenizer.from_pretrained(path, **kwargs)
        self.max_length = max_length
        self.vocab_size = len(self._tok)
        self.pad_id = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
        self.bos_id, self.eos_id = self._tok.bos_token_id, self._tok.eos_token_id

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True).strip()

    def __call__(
        self,
        texts: list[str],
        max_length: int | None = None,
        bos: bool | None = None,
        eos: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """The tokenizer's own special tokens by default (BERT: [CLS] ... [SEP]); with `bos` / `eos`
        given, exactly those (a causal LM's instruction and answer pieces)."""
        n = max_length or self.max_length
        if bos is None and eos is None:
            enc = self._tok(texts, padding=True, truncation=True, max_length=n, return_tensors="pt")
            return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        body = self._tok(
            texts, add_special_tokens=False, truncation=True, max_length=n - bool(bos) - bool(eos)
        )
        return _pad(
            [[self.bos_id] * bool(bos) + ids + [self.eos_id] * bool(eos) for ids in body["input_ids"]],
            self.pad_id,
        )
