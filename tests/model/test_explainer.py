"""Stage 2: the explainer's contract, the zero-initialised feedback, generation, the assessor folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mint_iqa.models.explaining import Texts, explain_batch
from mint_iqa.models.factory import build_explainer, explainer_config, load_assessor, save_assessor
from mint_iqa.models.text import segmenter

SMALL = {
    "qformer": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "lm": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
    },
    "num_query_tokens": 8,
    "max_answer_tokens": 12,
}
ANSWERS = ["The image quality is good: blur is slightly visible.", "The image authenticity is excellent."]


@pytest.fixture
def explainer(tiny_scorer):
    scorer, tok = tiny_scorer
    model, lm_tok = build_explainer(scorer, tok, explainer_config("tiny", SMALL))
    return model, Texts(tok, lm_tok, segmenter("rules"), model.config)


def _batch(texts: Texts, answers: list[str] | None = ANSWERS):
    enc = texts.encode(
        ["a photo of a cat", "a rocket at dawn"], ["What is the quality of the image?"] * 2, answers
    )
    return torch.rand(2, 3, 64, 64), enc


def test_loss_on_answer_tokens_only_and_stage1_frozen(explainer) -> None:
    model, texts = explainer
    images, enc = _batch(texts)
    out = model(images, **enc)
    assert torch.isfinite(out.loss) and out.scores.shape == (2, 3)
    out.loss.backward()
    assert all(p.grad is None for p in model.scorer.parameters())  # stage 1 stays frozen
    assert (
        model.query_tokens.grad is not None
        and model.language_model.get_input_embeddings().weight.grad is not None
    )
    # changing the instruction padding positions' labels cannot matter: only answer tokens are scored
    n_answer = int(enc["answer_mask"].sum())
    batch, length = enc["answer_ids"].shape  # logits only where answer tokens after <bos> are predicted
    assert out.logits.shape[:2] == (batch, length - 1)
    assert n_answer > 0
    assert model.levels.weight.grad is not None  # the evidence tokens are trained


def test_answer_logits_do_not_depend_on_the_instruction_padding_of_the_batch(explainer) -> None:
    """Training numbers positions as generation does (real tokens only): an item padded to a longer
    instruction in its batch gets the same answer logits as alone, where nothing is padded."""
    model, texts = explainer
    model.eval()
    images = torch.rand(2, 3, 64, 64)
    questions = [
        "What is the quality of the image?",
        "What are the quality, authenticity and correspondence?",
    ]
    prompts = ["a cat", "a rocket at dawn over a quiet sea, painted in oil, warm light"]
    batch = texts.encode(prompts, questions, ANSWERS)
    alone = texts.encode(prompts[:1], questions[:1], ANSWERS[:1])
    assert int(batch["instruction_mask"][0].sum()) < batch["instruction_ids"].shape[1]  # item 0 is padded
    with torch.no_grad():
        padded = model(images, **batch).logits[0]
        single = model(images[:1], **alone).logits[0]
    n = single.shape[0]
    assert torch.allclose(padded[:n], single, atol=1e-5)


def test_evidence_tokens_state_the_stage1_grade(explainer) -> None:
    """The level token of each dimension is the grade the reference answers use for that score."""
    from mint_iqa.data.answers import grade
    from mint_iqa.models.scorer import ScorerOutput

    model, _ = explainer
    scores = torch.tensor([[0.05, 0.5, 1.0], [0.79, 0.8, -0.3], [0.2, 0.41, 1.7]])
    tokens = model.evidence(ScorerOutput(scores=scores))
    for b, row in enumerate(scores.tolist()):
        for i, s in enumerate(row):
            expected = model.levels.weight[5 * i + grade(min(1.0, max(0.0, s))) - 1]
            assert torch.equal(tokens[b, i], expected), (b, i, s)
    assert not torch.equal(tokens[0, 0], tokens[1, 0])  # different grades, different tokens


def test_feedback_changes_nothing_at_initialisation(explainer) -> None:
    model, texts = explainer
    model.eval()
    images, enc = _batch(texts)
    with torch.no_grad():
        with_feedback = model(images, **enc).logits
        model.config.feedback = False
        without = model(images, **enc).logits
        model.config.feedback = True
        torch.nn.init.normal_(model.feedback.weight)  # once trained, the feedback path does matter
        changed = model(images, **enc).logits
    assert torch.equal(with_feedback, without)
    assert not torch.allclose(with_feedback, changed)


def test_generate_and_assessor_roundtrip(explainer, tiny_scorer, tmp_path: Path) -> None:
    from mint_iqa.inference.assess import EXPLANATION_COLUMNS, Assessor

    model, texts = explainer
    model.eval()
    images = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(2)]
    answers, stage1 = explain_batch(
        model, texts, images, ["a cat", "a rocket"], ["What is the quality of the image?"] * 2
    )
    assert len(answers) == 2 and stage1.scores.shape == (2, 3) and all(isinstance(a, str) for a in answers)
    beams, _ = explain_batch(
        model, texts, images, ["a cat", "a rocket"], ["What is the quality of the image?"] * 2, num_beams=3
    )
    assert len(beams) == 2

    folder = save_assessor(model, tiny_scorer[1], tmp_path / "assessor")
    again, _ = load_assessor(folder)
    assert (
        explain_batch(again, texts, images, ["a cat", "a rocket"], ["What is the quality of the image?"] * 2)[
            0
        ]
        == answers
    )
    files = []
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_text("nope")
    assessor = Assessor.load(folder)
    assessor.scorer.input_size = 64
    table = assessor.assess([*files, tmp_path / "bad.png"], "a photo of a cat")
    assert list(table.columns) == [
        "quality",
        "authenticity",
        "correspondence",
        "status",
        *EXPLANATION_COLUMNS,
    ]
    assert list(table["status"])[:2] == ["ok", "ok"] and "not a recognised image format" in table["status"][2]
    assert isinstance(assessor.explain(files[0], "a photo of a cat"), str)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_constrained_answers_give_each_stage1_sentence_in_turn(explainer, num_beams: int) -> None:
    """Greedy or beam search, an untrained language model under the constraints answers "all three" with
    the sentence of each dimension's stage-1 level, quality first, once each (beam search used to skip
    quality's reason and repeat a phrase to the token limit)."""
    from mint_iqa.data.answers import DIMENSIONS, INTRO, QUESTIONS, reasons, sentence
    from mint_iqa.data.degradations import AUTHENTICITY, DEFECT_NAMES, QUALITY
    from mint_iqa.models.decoding import ReasonConstraint, score_grades

    model, texts = explainer
    model.config.max_answer_tokens = 400  # the test tokenizer spells most words letter by letter
    model.config.constrain_levels = model.config.constrain_reasons = True
    model.eval()
    images = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(2)]
    answers, stage1 = explain_batch(
        model, texts, images, ["a cat", "a rocket"], [QUESTIONS["all"]] * 2, num_beams=num_beams
    )
    squeeze = ReasonConstraint.squeeze
    defects = {
        "quality": [DEFECT_NAMES[d] for d in QUALITY],
        "authenticity": [DEFECT_NAMES[d] for d in AUTHENTICITY],
    }
    for answer, grades in zip(answers, score_grades(stage1.scores).tolist()):
        said = squeeze(answer)
        starts = [said.find(squeeze(sentence(dim, g))) for dim, g in zip(DIMENSIONS, grades)]
        assert starts[0] == 0 and -1 not in starts and starts == sorted(starts), answer
        stated = said[: starts[2] + len(squeeze(sentence(DIMENSIONS[2], grades[2])))]
        assert all(stated.count(squeeze(INTRO[dim])) == 1 for dim in DIMENSIONS), answer
        for i, (dim, g) in enumerate(zip(DIMENSIONS, grades)):
            given = said[starts[i] : said.index(".", starts[i])]
            assert given in {squeeze(sentence(dim, g, r)) for r in reasons(dim, g, defects.get(dim, []))}, (
                answer
            )


def test_assessor_saved_before_evidence_tokens_still_loads(tiny_scorer, tmp_path: Path) -> None:
    import json

    model, _ = build_explainer(*tiny_scorer, explainer_config("tiny", {**SMALL, "evidence": False}))
    folder = save_assessor(model, tiny_scorer[1], tmp_path / "old")
    config_file = folder / "explainer" / "config.json"
    old = json.loads(config_file.read_text())
    for key in ("evidence", "constrain_levels", "constrain_reasons"):  # keys older folders do not have
        old.pop(key)
    old["constrain_defects"] = False  # the name the reason constraint had in folders of one release
    config_file.write_text(json.dumps(old))
    again, _ = load_assessor(folder)
    assert again.levels is None and not again.config.evidence and not again.config.constrain_reasons
    assert torch.equal(again.feedback.weight, model.feedback.weight)
