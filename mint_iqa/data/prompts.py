"""Prompts for the proxy set: a caption from a reference's slots, and the correspondence ladder.

A caption reads like a text-to-image prompt, "<style> of <a> <attribute> <subject> <scene>, with
<detail>, <atmosphere>". The ladder makes the prompt disagree with the image more and more:

  level 1  an absent object is named      (detail of another reference)
  level 2  wrong attribute                (attribute of another reference)
  level 3  wrong scene                    (scene of another reference)
  level 4  wrong subject                  (subject of another reference)
  level 5  another image's caption        (everything from another reference)

Wrong values are always taken from other references, so every word also appears in correct prompts
and only looking at the image tells a match from a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mint_iqa.data.references import Reference

MISMATCHES = ("absent_object", "wrong_attribute", "wrong_scene", "wrong_subject", "other_caption")


@dataclass(frozen=True)
class Prompt:
    text: str
    mismatch: str  # "" when the prompt matches the image
    explanation: str  # what disagrees, phrased for an answer ("" when it matches)


def with_article(words: str, plural: bool) -> str:
    if plural:
        return words
    return ("an " if words[0] in "aeiou" else "a ") + words


def noun_phrase(attribute: str, subject: str, plural: bool) -> str:
    return with_article(f"{attribute} {subject}", plural)


def caption(
    ref: Reference,
    rng: np.random.Generator,
    *,
    attribute: str | None = None,
    subject: str | None = None,
    plural: bool | None = None,
    scene: str | None = None,
    detail: str | None = None,
    with_detail: bool | None = None,
) -> str:
    """Render a caption of `ref`, any slot replaceable; style/atmosphere/detail presence vary with `rng`."""
    style = str(rng.choice(ref.styles.split("|")))
    atmosphere = str(rng.choice(ref.atmospheres.split("|")))
    if with_detail is None:
        with_detail = bool(rng.random() < 0.5)
    np_ = noun_phrase(
        attribute or ref.attribute, subject or ref.subject, ref.plural if plural is None else plural
    )
    text = f"{style} of {np_} {scene or ref.scene}"
    if with_detail:
        text += f", with {detail or ref.detail}"
    return f"{text}, {atmosphere}"


def _other(ref: Reference, refs: list[Reference], rng: np.random.Generator, slot: str) -> Reference:
    choices = [r for r in refs if r.id != ref.id and getattr(r, slot) != getattr(ref, slot)]
    return choices[int(rng.integers(len(choices)))]


def make_prompt(ref: Reference, refs: list[Reference], level: int, rng: np.random.Generator) -> Prompt:
    """Prompt for `ref` at correspondence `level` (0 = matching caption, 1-5 = the ladder above)."""
    if level == 0:
        return Prompt(caption(ref, rng), "", "")
    kind = MISMATCHES[level - 1]
    if kind == "absent_object":
        other = _other(ref, refs, rng, "detail")
        return Prompt(
            caption(ref, rng, detail=other.detail, with_detail=True),
            kind,
            f"the prompt mentions {other.detail}, which the image does not show",
        )
    if kind == "wrong_attribute":
        other = _other(ref, refs, rng, "attribute")
        return Prompt(
            caption(ref, rng, attribute=other.attribute),
            kind,
            f"the prompt asks for a {other.attribute} {ref.subject}, "
            f"but the {ref.subject} in the image is {ref.attribute}",
        )
    if kind == "wrong_scene":
        other = _other(ref, refs, rng, "scene")
        return Prompt(
            caption(ref, rng, scene=other.scene),
            kind,
            f"the prompt places the {ref.subject} {other.scene}, but the image shows it {ref.scene}",
        )
    if kind == "wrong_subject":
        other = _other(ref, refs, rng, "subject")
        return Prompt(
            caption(ref, rng, subject=other.subject, plural=other.plural),
            kind,
            f"the prompt asks for {with_article(other.subject, other.plural)}, "
            f"but the image shows {with_article(ref.subject, ref.plural)}",
        )
    other = _other(ref, refs, rng, "subject")
    return Prompt(
        caption(other, rng),
        kind,
        f"the prompt describes {other.subject} {other.scene}, but the image shows {ref.subject} {ref.scene}",
    )
