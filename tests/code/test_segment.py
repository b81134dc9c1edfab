"""Prompt segmentation: deterministic content / style / scene-atmosphere split, pluggable by name."""

from __future__ import annotations

import pytest

from mint_iqa.models.text import SEGMENTERS, Segments, rule_segments, segmenter


@pytest.mark.parametrize(
    "prompt, content, style, scene",
    [
        # a participle right before the place ("sitting on ...") travels with the scene
        (
            "a photo of a cat sitting on a red sofa, golden hour",
            "a cat",
            "a photo",
            "sitting on a red sofa, golden hour",
        ),
        (
            "an oil painting of a lighthouse, dramatic stormy sky, trending on artstation",
            "a lighthouse",
            "an oil painting, trending on artstation",
            "dramatic stormy sky",
        ),
        ("a corgi", "a corgi", "", ""),
        (
            "a smiling astronaut in front of an american flag, with a model space shuttle, studio lighting",
            "a smiling astronaut, with a model space shuttle",
            "",
            "in front of an american flag, studio lighting",
        ),
        ("cyberpunk city at night, neon lights, 8k", "cyberpunk city", "8k", "at night, neon lights"),
        ("A dark forest, fog", "A dark forest", "", "fog"),
        ("a sunset over the sea", "a sunset", "", "over the sea"),
    ],
)
def test_rule_segments(prompt: str, content: str, style: str, scene: str) -> None:
    assert rule_segments(prompt) == Segments(content, style, scene)


def test_render_and_determinism() -> None:
    text = "a black and white photo of ancient greek coins laid out in rows on a dark cloth, museum lighting"
    first = segmenter("rules")(text)
    assert first == segmenter("rules")(text)
    assert first == (
        "content: ancient greek coins laid out | style: a black and white photo | "
        "scene: in rows on a dark cloth, museum lighting"
    )
    assert Segments("", "", "").render() == "content: - | style: - | scene: -"


def test_raw_segmenter_and_registry() -> None:
    assert segmenter("none")("  a   cat ") == "a cat"
    assert set(SEGMENTERS) >= {"rules", "none"}
    with pytest.raises(ValueError, match="unknown prompt segmenter 'llm'"):
        segmenter("llm")
