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


def test_named_defects_count_a_phrase_inside_a_longer_one_once() -> None:
    from mint_iqa.data.kinds import named_defects

    assert named_defects("The image quality is poor: motion blur is strong.") == {"motion_blur"}
    assert named_defects("quality is fair: blur is noticeable") == {"gaussian_blur"}
    assert named_defects("speckle noise and a smeared region") == {"speckle_noise", "smear"}
    assert named_defects("it looks natural and free of distortion") == set()


def test_defect_mention_is_scored_by_group_and_kind() -> None:
    """An explanation naming another kind of the true defect's group (defocus blur for gaussian blur)
    names the defect; naming the exact kind counts apart; a flawless sentence names nothing."""
    import numpy as np
    import pandas as pd

    from mint_iqa.evaluate import explanation_metrics

    frame = pd.DataFrame(
        {
            "family": ["quality"] * 3,
            "distortion": ["gaussian_blur"] * 3,
            "quality": [0.3] * 3,
            "authenticity": [0.9] * 3,
            "correspondence": [0.9] * 3,
            "answer_all": ["The image quality is poor: blur is strong and most details are lost."] * 3,
        }
    )
    said = [
        "The image quality is poor: blur is strong and most details are lost.",
        "The image quality is poor: defocus blur is strong and most details are lost.",
        "The image quality is excellent: the outline and content are clearly distinguishable.",
    ]
    m = explanation_metrics(frame, said, np.full((3, 3), 0.3, np.float32))
    assert m["defect_mention_accuracy"] == round(2 / 3, 4)
    assert m["defect_kind_accuracy"] == round(1 / 3, 4)
