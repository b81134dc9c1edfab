"""Word support: which prompt words name ImageNet classes (WordNet), and how much of the classifier's
probability the image gives them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mint_iqa.models.words import LEXICON, Lexicon, prompt_words, support

TABBY = 281  # n02123045, "tabby, tabby cat"


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.load()


def test_lexicon_covers_the_imagenet_classes(lexicon: Lexicon) -> None:
    assert len(lexicon.classes) == 1000 and lexicon.classes[TABBY] == "n02123045"
    assert TABBY in lexicon.words["cat"] and len(lexicon.words["cat"]) >= 5  # domestic and wild cats
    assert len(lexicon.words["dog"]) > 100  # every breed
    assert lexicon.words["palace"] == [lexicon.classes.index("n03877845")]  # a later sense that is a class
    for unnameable in ("photo", "mood", "blue", "flag"):
        assert unnameable not in lexicon.words


def test_plurals_and_two_word_names(lexicon: Lexicon) -> None:
    assert lexicon.nameable("Two tabby cats and three dogs") == [("tabby cats", "tabby cat"), ("dogs", "dog")]
    assert lexicon.lemma("boxes") == "box" and lexicon.lemma("butterflies") == "butterfly"
    assert lexicon.lemma("mice") == "mouse"  # irregular plural from WordNet's exception list
    assert lexicon.lemma("glorbs") is None
    assert set(lexicon.classes_of("tabby cat")) == set(lexicon.words["cat"]) | {TABBY}


def test_prompt_words_skip_style_and_atmosphere() -> None:
    words = prompt_words(
        "an oil painting of a tabby cat on a wooden table, with a motorcycle, warm and cosy mood"
    )
    assert [w for w, _ in words] == ["tabby cat", "motorcycle", "table"]  # content, then scene
    assert prompt_words("a dreamy abstract composition, soft light") == []


def test_support_is_the_probability_of_the_named_classes(lexicon: Lexicon) -> None:
    probs = np.full(1000, 0.2 / 999)
    probs[TABBY] = 0.8
    got = dict(support(probs, "a photo of a cat next to a motorcycle", lexicon))
    assert got["cat"] == pytest.approx(0.8 + 0.2 / 999 * (len(lexicon.words["cat"]) - 1))
    assert got["motorcycle"] == pytest.approx(0.2 / 999)


def test_committed_lexicon_is_compact_json() -> None:
    data = json.loads(LEXICON.read_text())
    assert data["source"] == "debian:wordnet-base=1:3.0-37"
    assert LEXICON.stat().st_size < 400_000
