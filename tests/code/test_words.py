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


def test_evidence_is_the_best_supported_word_and_nan_without_one(lexicon: Lexicon) -> None:
    import torch

    from mint_iqa.models.words import evidence, word_masks

    probs = torch.full((2, 1000), 0.2 / 999)
    probs[:, TABBY] = 0.8
    masks = word_masks(["a cat next to a motorcycle", "a dreamy composition"], lexicon=lexicon)
    assert masks.shape == (2, 8, 1000) and masks[0, 0, TABBY] and not masks[1].any()
    ev = evidence(probs, masks)
    cat = float(probs[0, lexicon.words["cat"]].sum())
    assert ev[0].item() == pytest.approx(np.log(cat + 1e-6), rel=1e-5) and torch.isnan(ev[1])


def test_fusion_fit_keeps_the_path_that_ranks_and_drops_the_one_that_does_not() -> None:
    import torch

    from mint_iqa.models.words import fit_fusion, fuse

    rng = np.random.default_rng(0)
    labels = rng.uniform(0.1, 0.9, 400)
    ev = np.log(labels) * 3 + rng.normal(0, 0.3, 400)
    ev[::10] = np.nan  # prompts without a nameable word
    inverted = -labels + rng.normal(0, 0.1, 400)  # a learned path that ranks the wrong way
    a, b, c, fill = fit_fusion(inverted, ev, labels)
    assert a == 0 and b > 0 and fill == pytest.approx(np.nanmedian(ev))
    fused = fuse(inverted, ev, [a, b, c, fill])
    assert np.corrcoef(fused[~np.isnan(ev)], labels[~np.isnan(ev)])[0, 1] > 0.9
    tensor = fuse(torch.tensor(inverted), torch.tensor(ev), [a, b, c, fill]).numpy()
    assert np.allclose(tensor, fused)  # one formula for arrays and tensors
