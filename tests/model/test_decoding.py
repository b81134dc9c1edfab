"""Constrained decoding of explanations: which words a stage-1 result allows, and when an answer may end."""

from __future__ import annotations

import numpy as np
import torch


def test_level_constraint_allows_only_the_stage1_level_of_the_dimension_named_last() -> None:
    from mint_iqa.models.decoding import LevelConstraint, score_grades

    vocab = [
        "the",
        "image",
        "quality",
        "authenticity",
        "is",
        "excellent",
        "good",
        "fair",
        "poor",
        "bad",
        "blur",
    ]
    level_ids = {5: [5], 4: [6], 3: [7], 2: [8], 1: [9]}
    decode = lambda ids: " ".join(vocab[i] for i in ids)  # noqa: E731
    # stage 1: image 0 has quality 0.5 (fair) and authenticity 0.95 (excellent); image 1 quality 0.1 (bad)
    grades = score_grades(torch.tensor([[0.5, 0.95, 0.9], [0.1, 0.9, 0.9]]))
    constraint = LevelConstraint(grades, level_ids, decode, num_beams=2)
    said = {"quality": [0, 1, 2, 4], "authenticity": [0, 1, 3, 4], "nothing yet": [0, 1, 1, 0]}
    for rows, expected in (
        (["quality", "quality", "quality", "nothing yet"], [7, 7, 9, None]),
        (["authenticity", "quality", "authenticity", "quality"], [5, 7, 5, 9]),
    ):
        ids = torch.tensor([said[r] for r in rows])
        logits = constraint(ids, torch.zeros(4, len(vocab)))
        for row, allowed in enumerate(expected):
            levels = logits[row, 5:10]
            if allowed is None:
                assert torch.isfinite(levels).all()  # no dimension named yet: nothing constrained
            else:
                assert torch.isfinite(logits[row, allowed]) and torch.isinf(levels).sum() == 4
            assert torch.isfinite(logits[row, :5]).all() and torch.isfinite(
                logits[row, 10]
            )  # other words stay free
    # with intros, the level word must follow "the image <dimension> is" at once; elsewhere prose stays free
    intros = ["the image quality is", "the image authenticity is", "the correspondence is"]
    forced = LevelConstraint(grades, level_ids, decode, num_beams=2, intros=intros)
    logits = forced(
        torch.tensor([said["quality"], said["authenticity"], said["quality"], [0, 2, 10, 4]]),
        torch.zeros(4, len(vocab)),
    )
    assert [torch.isfinite(row).nonzero().flatten().tolist() for row in logits[:3]] == [[7], [5], [9]]
    assert torch.isfinite(logits[3, :5]).all() and torch.isinf(logits[3, [5, 6, 7, 8]]).all()  # "... blur is"


def test_score_grades_label_cuts_and_fitted_cuts() -> None:
    from mint_iqa.models.decoding import score_grades

    scores = torch.tensor([[0.0, 0.19, 0.2], [0.79, 0.8, 1.0]])
    assert score_grades(scores).tolist() == [[1, 1, 2], [4, 5, 5]]  # as data.answers.grade cuts labels
    cuts = {"quality": [0.1, 0.3, 0.5, 0.7]}  # fitted for quality only: the others keep the label cuts
    assert score_grades(scores, cuts).tolist() == [[1, 1, 2], [5, 5, 5]]


def test_fitted_level_cuts_state_more_validation_levels_right() -> None:
    """A head that scores flawless images 0.85 +- 0.04 is often called "good" under the label cuts;
    cuts fit on validation outputs fix that and carry over to fresh images from the same head."""
    import numpy as np

    from mint_iqa.data.answers import grade
    from mint_iqa.models.decoding import score_grades
    from mint_iqa.train.explainer import fit_level_cuts

    def head(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        labels = np.where(rng.random(n) < 0.7, 0.9, rng.uniform(0.1, 0.8, n))
        pred = np.where(labels == 0.9, rng.normal(0.85, 0.04, n), labels * 0.9 + rng.normal(0, 0.05, n))
        return np.stack([pred] * 3, 1).astype(np.float32), np.stack([labels] * 3, 1)

    cuts = fit_level_cuts(*head(300, 0))
    assert list(cuts) == ["quality", "authenticity", "correspondence"] and all(np.diff(cuts["quality"]) >= 0)
    pred, labels = head(1000, 1)
    truth = np.array([grade(v) for v in labels[:, 0]])
    accuracy = [(score_grades(torch.from_numpy(pred), c)[:, 0].numpy() == truth).mean() for c in (None, cuts)]
    assert accuracy[1] > accuracy[0] + 0.05  # 0.92 vs 0.86 here
    assert fit_level_cuts(*head(20, 0)) == {}  # too few validation labels: the label cuts stay
    _, labels = head(300, 2)
    assert (
        fit_level_cuts(labels.astype(np.float32), labels) == {}
    )  # a head on the label scale: nothing to win


def test_complete_answer_ends_only_once_every_asked_dimension_is_stated() -> None:
    from mint_iqa.models.decoding import CompleteAnswer

    vocab = ["<eos>", "the", "image", "quality", "authenticity", "is", "fair", "."]
    decode = lambda ids: " ".join(vocab[i] for i in ids)  # noqa: E731
    asked = [["the image quality is", "the image authenticity is"], ["the image quality is"], []]
    done = CompleteAnswer(asked, eos_id=0, decode=decode)
    said = torch.tensor([[1, 2, 3, 5, 6, 7], [1, 2, 3, 5, 6, 7], [1, 2, 3, 5, 6, 7]])
    logits = done(said, torch.zeros(3, len(vocab)))
    assert torch.isinf(logits[0, 0]) and torch.isfinite(logits[1:, 0]).all()  # row 0 still owes authenticity
    assert torch.isfinite(logits[:, 1:]).all()


def test_complete_answer_states_each_dimension_once() -> None:
    from mint_iqa.models.decoding import CompleteAnswer

    vocab = ["", "the", "image", "quality", "authenticity", "is", "fair", ".", "it", "looks", ". the"]
    v = {w: i for i, w in enumerate(vocab)}
    decode = lambda ids: " ".join(vocab[i] for i in ids)  # noqa: E731
    asked = [["the image quality is", "the image authenticity is"]]
    once = CompleteAnswer(asked, eos_id=0, decode=decode, token_text=vocab)

    def banned(text: str) -> set[str]:
        logits = once(torch.tensor([[v[w] for w in text.split(" ")]]), torch.zeros(1, len(vocab)))
        return {vocab[i] for i in torch.isinf(logits[0]).nonzero().flatten().tolist()}

    said = "the image quality is fair ."
    assert banned(said) == {""}  # no end yet: authenticity is owed
    assert banned(said + " the image") == {"", "quality"}  # "the image" may still become authenticity
    assert banned(said + " it looks") == {""}  # other prose is free
    assert banned("the image quality") == {""}  # the sentence that states quality is not a repeat
    both = said + " the image authenticity is fair ."
    assert banned(both) == {"the", ". the"}  # both stated: no third statement; the end is free
    assert banned(both + " it") == {". the"}  # free prose, but no statement after it either


def test_complete_answer_in_order_states_the_asked_dimensions_in_turn_then_ends() -> None:
    from mint_iqa.models.decoding import CompleteAnswer

    vocab = ["", "the", "image", "quality", "authenticity", "is", "fair", ".", "it", "looks", ". the"]
    v = {w: i for i, w in enumerate(vocab)}
    decode = lambda ids: " ".join(vocab[i] for i in ids)  # noqa: E731
    in_turn = CompleteAnswer(
        [["the image quality is", "the image authenticity is"]],
        eos_id=0,
        decode=decode,
        token_text=vocab,
        in_order=True,
    )

    def allowed(text: str) -> set[str]:
        ids = torch.tensor([[v[w] for w in text.split(" ") if w]], dtype=torch.long).reshape(1, -1)
        logits = in_turn(ids, torch.zeros(1, len(vocab)))
        return {vocab[i] for i in torch.isfinite(logits[0]).nonzero().flatten().tolist()}

    assert allowed("") == {"the"}  # the answer opens with quality ...
    assert allowed("the image") == {"quality"}  # ... not authenticity, which comes second
    quality = "the image quality is fair"
    assert allowed(quality) == set(vocab) - {""}  # its sentence is free; no end yet
    assert allowed(quality + " . the image") == {"authenticity"}
    both = quality + " . the image authenticity is fair"
    assert allowed(both) == set(vocab) - {". the"}  # the last sentence may end, or the answer
    assert allowed(both + " .") == {""}  # nothing after it but the end


def test_constraint_caches_shared_across_batches_give_each_batch_its_own_answer() -> None:
    """Banned sets are kept per spelling state and shared by every batch (`Texts`): a batch asking other
    questions must not inherit the previous batch's bans."""
    from mint_iqa.models.decoding import CompleteAnswer

    vocab = ["", "the", "image", "quality", "authenticity", "is", "fair", "."]
    v = {w: i for i, w in enumerate(vocab)}
    decode = lambda ids: " ".join(vocab[i] for i in ids)  # noqa: E731
    ids = torch.tensor([[v[w] for w in ["the", "image", "quality", "is", "fair", ".", "the", "image"]]])
    asks = [
        [["the image quality is", "the image authenticity is"]],
        [["the image quality is"]],
        [["the image authenticity is"]],
    ]

    def bans(asked: list[list[str]], cache: dict | None) -> list[int]:
        constraint = CompleteAnswer(asked, eos_id=0, decode=decode, token_text=vocab, cache=cache)
        return torch.isinf(constraint(ids, torch.zeros(1, len(vocab)))[0]).nonzero().flatten().tolist()

    shared: dict = {}
    assert [bans(a, shared) for a in asks] == [bans(a, None) for a in asks]
    assert len(shared) == 2  # same text, other phrases owed: two states (the third batch has stated nothing)


# long: the vocabulary and every sentence the constraint must allow or refuse
def test_reason_constraint_lets_the_answer_give_only_the_sentence_that_fits_stage1() -> None:
    from mint_iqa.models.decoding import ReasonConstraint
    from mint_iqa.models.explaining import allowed_sentences
    from mint_iqa.train.data import AUX_CLASSES

    vocab = [
        "the",
        "image",
        "quality",
        "authenticity",
        "correspondence",
        "is",
        "fair",
        "excellent",
        ":",
        "motion",
        "blur",
        "noise",
        "noticeable",
        "and",
        "some",
        "details",
        "are",
        "lost",
        ".",
        "outline",
        "prompt",
        "a",
        "duplicated",
        "patch",
        "smeared",
        "makes",
        "it",
        "look",
        "partly",
        "synthetic",
        "cat",
        "between",
        "its",
        "good",
        "",
    ]
    v = {w: i for i, w in enumerate(vocab)}
    decode = lambda ids: " ".join(vocab[i] for i in ids)  # noqa: E731
    logits = torch.zeros(2, len(AUX_CLASSES))
    logits[0, AUX_CLASSES.index("motion_blur")] = logits[0, AUX_CLASSES.index("duplicated_patch")] = 3.0
    logits[1, AUX_CLASSES.index("noise")] = logits[1, AUX_CLASSES.index("smear")] = 3.0
    allowed = allowed_sentences(torch.tensor([[3, 3, 3], [5, 3, 5]]), logits, AUX_CLASSES)

    def words(allowed: torch.Tensor) -> set[str]:
        return {vocab[i] for i in allowed.nonzero().flatten().tolist()}

    def ok(text: str, row: int) -> torch.Tensor:
        constraint = ReasonConstraint(allowed, vocab, decode, num_beams=2)  # rows 2b, 2b+1: image b
        ids = torch.tensor([[v[w] for w in text.split()]] * 4)
        return torch.isfinite(constraint(ids, torch.zeros(4, len(vocab)))[row])

    assert ok("the image", 0).all()  # no dimension named yet: free
    assert words(ok("the image quality", 0)) == {"is"}  # from its name on, the sentence of stage 1 ...
    assert words(ok("the image quality is", 0)) == {"fair"}  # ... at its level (not "good", no full stop)
    assert words(ok("the image quality is fair", 0)) == {":"}  # beam search would end the sentence here
    head = "the image quality is fair :"
    # image 0: only the motion-blur template; not another defect, the flawless or generic reason, prose,
    # a colon, a full stop or an end ("": <eos>)
    assert words(ok(head, 0)) == {"motion"}
    reason = head + " motion blur is noticeable and some details are"
    assert ok(reason, 1)[v["lost"]] and not ok(reason, 1)[v["."]]
    assert ok(reason + " lost", 1)[[v["."], v[""]]].all()  # complete: the sentence (or answer, "") may end
    assert ok(reason + " lost .", 1).all()  # finished: the next sentence is free
    auth = "the image authenticity is fair : a"
    assert ok(auth, 0)[v["duplicated"]] and not ok(auth, 0)[v["smeared"]]
    assert ok(auth, 3)[v["smeared"]] and not ok(auth, 3)[v["duplicated"]]
    mismatch = "the correspondence between the image and its prompt is fair"
    assert words(ok(mismatch, 0)) == {":"}  # a mismatch: its level, then ...
    assert words(ok(mismatch + " :", 0)) == {"it"}  # ... the generic reason, not free words
    corr = ok("the correspondence between the image and its prompt is excellent :", 2)  # image 1: level 5
    assert words(corr) == {"the"}  # "the image shows what the prompt asks for"
    flawless = ok("the image quality is excellent :", 2)  # image 1: level 5 (its noise is ignored)
    assert flawless[v["the"]] and not flawless[[v["noise"], v["motion"], v["some"]]].any()


def test_defect_targets_take_the_top_class_of_each_family() -> None:
    from mint_iqa.models.explaining import defect_targets
    from mint_iqa.train.data import AUX_CLASSES

    logits = torch.zeros(2, len(AUX_CLASSES))
    logits[0, AUX_CLASSES.index("grid")] = 9.0  # an authenticity kind ranks first; quality still has its top
    logits[0, AUX_CLASSES.index("motion_blur")] = 4.0
    logits[0, AUX_CLASSES.index("smear")] = 4.0
    logits[1, AUX_CLASSES.index("jpeg")] = 4.0
    logits[1, AUX_CLASSES.index("grid")] = 4.0
    assert defect_targets(logits, AUX_CLASSES) == [
        {0: "motion blur", 1: "a grid pattern"},
        {0: "compression artefacts", 1: "a grid pattern"},
    ]
    assert defect_targets(torch.zeros(2, 1), ["none"]) == [{}, {}]


def test_reason_constraint_spells_a_sentence_with_its_own_tokens() -> None:
    """Matched without whitespace and case, "not fully" could be spelt "notFu l lY" by a model that never
    learnt the sentence; given the tokenizer (`encode`), only the tokens of the sentence's own spelling are
    allowed."""
    from mint_iqa.models.decoding import ReasonConstraint

    vocab = [
        "the",
        "correspondence",
        "is",
        "fair",
        ":",
        "it",
        "does",
        "not",
        "fully",
        "show",
        ".",
        "Fu",
        "l",
        "lY",
        "ful",
        "ly",
        "",
    ]
    v = {w: i for i, w in enumerate(vocab)}
    decode = lambda ids: " ".join(vocab[i] for i in ids)  # noqa: E731
    encode = lambda text: [v[w] for w in text.replace(":", " :").replace(".", " .").split()]  # noqa: E731
    allowed = [{2: ["the correspondence is fair: it does not fully show"]}]
    ids = torch.tensor([[v[w] for w in ["the", "correspondence", "is", "fair", ":", "it", "does", "not"]]])

    def words(**kwargs) -> set[str]:
        constraint = ReasonConstraint(allowed, vocab, decode, eos_id=v[""], **kwargs)
        return {
            vocab[i]
            for i in torch.isfinite(constraint(ids, torch.zeros(1, len(vocab)))[0]).nonzero().flatten()
        }

    assert words() == {"fully", "Fu", "ful"}  # whitespace and case ignored: any spelling
    assert words(encode=encode) == {"fully"}  # its own tokens only
