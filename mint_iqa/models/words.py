"""Which words of a prompt the image supports, read by an ImageNet classifier through WordNet.

A prompt's content and scene words that name ImageNet classes (`mint_iqa.data.lexicon`: "tabby cat",
"motorcycle", "pizza", "dog" -> 118 breeds) get a support in [0, 1]: the classifier's probability that the
image shows one of the classes the word names. Words no class can show (colours, "mood", "flag") get no
support at all, rather than a guess. This works for words no training caption contained: the semantics come
from ImageNet and WordNet, not from our captions.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mint_iqa.models.text import _ATMOS_RE, rule_segments

LEXICON = Path(__file__).resolve().parent / "imagenet_lexicon.json"
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")
UNSUPPORTED = 0.1  # a word whose classes get less ImageNet probability than this is not shown by the image


@dataclass(frozen=True)
class Lexicon:
    classes: list[str]  # ImageNet synset ids, by class index
    words: dict[str, list[int]]  # lemma -> class indices it can name
    plurals: dict[str, str]  # irregular plural -> lemma

    @classmethod
    @functools.cache
    def load(cls, path: Path = LEXICON) -> Lexicon:
        data = json.loads(path.read_text())
        return cls(data["classes"], data["words"], data["plurals"])

    def lemma(self, word: str) -> str | None:
        """The lexicon's lemma of `word` (plurals and irregular plurals reduced), or None."""
        if word in self.words:
            return word
        if word in self.plurals:
            return self.plurals[word]
        for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
            if word.endswith(suffix) and word[: -len(suffix)] + repl in self.words:
                return word[: -len(suffix)] + repl
        return None

    def classes_of(self, lemma: str) -> list[int]:
        """The classes a lemma names; a two-word name also those of its head ("tabby cat": every cat, so
        that a classifier's confusion between close classes is no mismatch)."""
        head = self.lemma(lemma.split()[-1]) if " " in lemma else None
        return sorted(set(self.words[lemma]) | set(self.words.get(head, []) if head else []))

    def nameable(self, text: str) -> list[tuple[str, str]]:
        """(word as written, lemma) for each nameable word or two-word name of `text`, in order; a two-word
        name ("tabby cat", "space shuttle") is taken before its words."""
        tokens, out, i = _WORD.findall(text.lower()), [], 0
        while i < len(tokens):
            pair = " ".join(tokens[i : i + 2])
            lemma = self.lemma(pair) if i + 1 < len(tokens) else None
            if lemma:
                out.append((pair, lemma))
                i += 2
                continue
            lemma = self.lemma(tokens[i])
            if lemma:
                out.append((tokens[i], lemma))
            i += 1
        return out


def prompt_words(prompt: str, lexicon: Lexicon | None = None) -> list[tuple[str, str]]:
    """The nameable words of a prompt's content and scene (style and atmosphere clauses left out)."""
    lexicon = lexicon or Lexicon.load()
    seg = rule_segments(prompt)
    clauses = [c for part in (seg.content, seg.scene) for c in part.split(", ") if not _ATMOS_RE.search(c)]
    return [pair for clause in clauses for pair in lexicon.nameable(clause)]


def support(probs: np.ndarray, prompt: str, lexicon: Lexicon | None = None) -> list[tuple[str, float]]:
    """(word, support) for each nameable word of `prompt`: the summed ImageNet probability (`probs`, 1,000
    softmax values for one image) of the classes the word names."""
    lexicon = lexicon or Lexicon.load()
    return [
        (word, float(probs[lexicon.classes_of(lemma)].sum())) for word, lemma in prompt_words(prompt, lexicon)
    ]


def subject(prompt: str, lexicon: Lexicon | None = None) -> str | None:
    """The prompt's subject as the classifier can judge it: its first nameable content word (None: none)."""
    lexicon = lexicon or Lexicon.load()
    for clause in rule_segments(prompt).content.split(", "):
        found = lexicon.nameable(clause) if not _ATMOS_RE.search(clause) else []
        if found:
            return found[0][0]
    return None


def unsupported(pairs: list[tuple[str, float]], prompt: str, below: float = UNSUPPORTED) -> list[str]:
    """The prompt words the classifier does not recognise in the image: its subject (`subject`), when
    the subject's support (`support`'s pairs) is under `below`. A single-label ImageNet classifier puts its
    probability on an image's main subject, so a low support for a secondary object or a scene word says
    little (flagging every low word marks a word in 85 % of true captions, `bench/words.py`)."""
    main = subject(prompt)
    return [word for word, value in pairs if word == main and value < below][:1]


def unsupported_sentence(words: list[str]) -> str:
    """The sentence an explanation adds for prompt words not recognised in the image ('' for none)."""
    if not words:
        return ""
    named = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"The prompt names {named}, which was not recognised in the image."


def word_masks(prompts: list[str], max_words: int = 8, lexicon: Lexicon | None = None) -> torch.Tensor:
    """(B, max_words, 1000) bool: row w of prompt b marks the classes its w-th nameable word names."""
    lexicon = lexicon or Lexicon.load()
    masks = torch.zeros(len(prompts), max_words, len(lexicon.classes), dtype=torch.bool)
    for b, prompt in enumerate(prompts):
        for w, (_, lemma) in enumerate(prompt_words(prompt, lexicon)[:max_words]):
            masks[b, w, lexicon.classes_of(lemma)] = True
    return masks


def evidence(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B,) log support of each prompt's best-supported nameable word; NaN for a prompt with none."""
    supports = torch.einsum("bwc,bc->bw", masks.to(probs.dtype), probs)
    logs = torch.log(supports + 1e-6).masked_fill(~masks.any(dim=-1), float("-inf"))
    best = logs.max(dim=-1).values
    return best.masked_fill(torch.isinf(best), float("nan"))


def fit_fusion(learned: np.ndarray, ev: np.ndarray, labels: np.ndarray) -> list[float]:
    """[a, b, c, fill] of `correspondence = a * learned + b * evidence + c`, least squares on validation with
    a, b >= 0 (a path that ranks the wrong way on unseen photographs is dropped, not inverted); `fill`, the
    evidence of prompts with no nameable word, is the median evidence."""
    from scipy.optimize import nnls

    known = ~np.isnan(ev)
    fill = float(np.median(ev[known])) if known.any() else 0.0
    x = np.stack([learned, np.where(known, ev, fill)], axis=1).astype(np.float64)
    centre, target = x.mean(axis=0), labels.astype(np.float64)
    (a, b), _ = nnls(x - centre, target - target.mean())
    return [float(a), float(b), float(target.mean() - a * centre[0] - b * centre[1]), fill]


def fuse(learned: Any, ev: Any, fusion: list[float]) -> Any:
    """The fused correspondence score (numpy arrays or tensors alike)."""
    a, b, c, fill = fusion
    filled = ev.nan_to_num(fill) if isinstance(ev, torch.Tensor) else np.nan_to_num(ev, nan=fill)
    return a * learned + b * filled + c
