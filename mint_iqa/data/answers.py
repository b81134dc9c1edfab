"""Instruction questions and templated answers, in the style of the AIGCIQA2023+ instruction data.

An answer states a level word per dimension (the five-grade ACR scale) and, when something is
wrong, names the actual defect or mismatch: "The image authenticity is fair: a duplicated patch
makes it look partly synthetic." `parse_grades` reads the level words back, for explanation metrics.
"""

from __future__ import annotations

import math
import re

from mint_iqa.config import DIMENSIONS

QUESTIONS: dict[str, str] = {
    "quality": "What is the quality of the image?",
    "authenticity": "What is the authenticity of the image?",
    "correspondence": "What is the correspondence of the image?",
    "all": "Assess the image from three perspectives: quality, authenticity, and correspondence",
}
GRADE_WORDS = {5: "excellent", 4: "good", 3: "fair", 2: "poor", 1: "bad"}
_WORD_GRADE = {word: grade for grade, word in GRADE_WORDS.items()}

_QUALITY = {
    4: "{defect} is slightly visible, but the content is clearly distinguishable",
    3: "{defect} is noticeable and some details are lost",
    2: "{defect} is strong and most details are lost",
    1: "{defect} is severe and the content is hard to make out",
}
_AUTHENTICITY = {
    4: "{defect} slightly breaks its realism",
    3: "{defect} makes it look partly synthetic",
    2: "{defect} makes it look clearly synthetic",
    1: "{defect} makes it look entirely artificial",
}
_GENERIC = {
    "quality": "some details are degraded",
    "authenticity": "parts of it look distorted",
    "correspondence": "it does not fully show what the prompt asks for",
}
INTRO = {
    "quality": "The image quality is",
    "authenticity": "The image authenticity is",
    "correspondence": "The correspondence between the image and its prompt is",
}
_PERFECT = {
    "quality": "the outline and content are clearly distinguishable and the details are rich",
    "authenticity": "it looks natural and free of distortion",
    "correspondence": "the image shows what the prompt asks for",
}


def grade(label: float) -> int:
    """Five grades from a [0, 1] label: [0, .2) -> 1 (bad) ... [.8, 1] -> 5 (excellent)."""
    return int(min(5, max(1, 1 + math.floor(label * 5))))


def reasons(dimension: str, g: int, defects: list[str]) -> list[str]:
    """The templated reasons an answer gives for `dimension` at grade `g`, one per defect name in `defects`
    (the generic reason when there is none). Below grade 5 the proxy set's correspondence answers describe
    the mismatch (`prompts.make_prompt`); the only template there is the generic reason."""
    if g == 5:
        return [_PERFECT[dimension]]
    if dimension == "correspondence" or not defects:
        return [_GENERIC[dimension]]
    return [(_QUALITY if dimension == "quality" else _AUTHENTICITY)[g].format(defect=d) for d in defects]


def sentence(dimension: str, g: int, reason: str = "") -> str:
    """The sentence an answer gives `dimension` at grade `g`, without its full stop ("" reason: its opening,
    up to the colon)."""
    return f"{INTRO[dimension]} {GRADE_WORDS[g]}:" + (f" {reason}" if reason else "")


def answer(dimension: str, label: float, defect: str = "") -> str:
    """One sentence for `dimension`; `defect` names the defect (quality/authenticity) or the mismatch."""
    g = grade(label)
    if dimension == "correspondence" and g < 5 and defect:
        reason = defect
    else:
        reason = reasons(dimension, g, [defect] if defect else [])[0]
    return sentence(dimension, g, reason) + "."


def answers(labels: dict[str, float | None], defects: dict[str, str] | None = None) -> dict[str, str]:
    """Answers to the four questions, keyed by `QUESTIONS`' keys ("" for a dimension without a label)."""
    defects = defects or {}
    out = {
        dim: ""
        if labels.get(dim) is None or math.isnan(labels[dim])
        else answer(dim, labels[dim], defects.get(dim, ""))
        for dim in DIMENSIONS
    }
    out["all"] = " ".join(out[dim] for dim in DIMENSIONS if out[dim])
    return out


_GRADE_RE = {
    dim: re.compile(re.escape(INTRO[dim]) + r" (" + "|".join(_WORD_GRADE) + r")", re.I) for dim in DIMENSIONS
}


def parse_grades(text: str) -> dict[str, int | None]:
    """The grade each dimension is given in an answer (None where the answer does not state one)."""
    out: dict[str, int | None] = {}
    for dim, pattern in _GRADE_RE.items():
        match = pattern.search(text)
        out[dim] = _WORD_GRADE[match.group(1).lower()] if match else None
    return out


def split_answer(text: str) -> dict[str, str]:
    """The sentence about each dimension in an 'all three' answer ("" where there is none)."""
    out = {}
    for dim in DIMENSIONS:
        start = text.lower().find(INTRO[dim].lower())
        if start < 0:
            out[dim] = ""
            continue
        ends = [text.lower().find(INTRO[other].lower(), start + 1) for other in DIMENSIONS if other != dim]
        end = min([e for e in ends if e > start] or [len(text)])
        out[dim] = text[start:end].strip()
    return out
