"""Prompt ladder and templated answers."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mint_iqa.data.answers import GRADE_WORDS, answers, grade, parse_grades
from mint_iqa.data.prompts import MISMATCHES, caption, make_prompt
from mint_iqa.data.references import BY_ID, REFERENCES

REFS = list(REFERENCES)
CAT = BY_ID["chelsea"]


def test_matching_caption_uses_own_slots() -> None:
    prompt = make_prompt(CAT, REFS, 0, np.random.default_rng(0))
    assert prompt.mismatch == "" and prompt.explanation == ""
    assert f"{CAT.attribute} {CAT.subject} {CAT.scene}" in prompt.text


@pytest.mark.parametrize("level", range(1, 6))
def test_ladder_levels(level: int) -> None:
    for seed in range(20):
        prompt = make_prompt(CAT, REFS, level, np.random.default_rng(seed))
        assert prompt.mismatch == MISMATCHES[level - 1]
        assert prompt.explanation
        own = caption(CAT, np.random.default_rng(seed))
        assert prompt.text != own
        if level in (2, 3, 4):  # the ladder swaps one slot and keeps the rest
            kept = {2: CAT.scene, 3: CAT.subject, 4: CAT.scene}[level]
            assert kept in prompt.text
        if level == 5:  # a whole other caption
            assert not re.search(rf"\b{CAT.subject}\b", prompt.text)


def test_wrong_values_come_from_other_references() -> None:
    """No word a mismatch introduces is unique to mismatches: every value is some reference's own."""
    attributes = {r.attribute for r in REFS}
    for seed in range(30):
        text = make_prompt(CAT, REFS, 2, np.random.default_rng(seed)).text
        assert any(f" {a} {CAT.subject}" in text for a in attributes - {CAT.attribute})


def test_grades_and_parse_roundtrip() -> None:
    assert [grade(x) for x in (0.0, 0.19, 0.2, 0.5, 0.79, 0.8, 1.0)] == [1, 1, 2, 3, 4, 5, 5]
    labels = {"quality": 0.1, "authenticity": 0.58, "correspondence": 0.9}
    text = answers(labels, {"quality": "motion blur", "authenticity": "a duplicated patch"})
    assert "motion blur" in text["quality"] and "a duplicated patch" in text["authenticity"]
    assert parse_grades(text["all"]) == {"quality": 1, "authenticity": 3, "correspondence": 5}
    assert parse_grades(text["quality"]) == {"quality": 1, "authenticity": None, "correspondence": None}
    assert set(GRADE_WORDS.values()) == {"excellent", "good", "fair", "poor", "bad"}


def test_missing_label_gives_no_answer() -> None:
    out = answers({"quality": 0.9, "authenticity": float("nan"), "correspondence": 0.3})
    assert out["authenticity"] == "" and "authenticity" not in out["all"]
