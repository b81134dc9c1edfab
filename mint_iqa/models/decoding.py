"""Levels and constrained decoding: how a stage-1 score becomes one of five level words, and the logits
processors that make the explainer's words say what stage 1 found.

- `score_grades`: a score (B, 3) -> a grade 1 ... 5 per dimension, at the label cuts or fitted ones.
- `LevelConstraint`: a level word may only be the stage-1 level of the dimension being talked about.
- `CompleteAnswer`: every dimension asked about is stated, once, before the answer may end.
- `ReasonConstraint`: the reason after a level is the one that fits it and names the defect stage 1 found.

Each builds its banned tokens on the host once per step and fills them in one masked write (`_banned`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import LogitsProcessor

from mint_iqa.config import DIMENSIONS

GRADES = 5


def score_grades(scores: torch.Tensor, cuts: dict[str, list[float]] | None = None) -> torch.Tensor:
    """Five-grade levels (1 ... 5) of stage-1 scores (B, 3). A dimension in `cuts` is cut at its four
    thresholds (a score at or above the k-th reaches grade k + 1); any other at 0.2 / 0.4 / 0.6 / 0.8, as
    `data.answers.grade` cuts labels."""
    cuts = cuts or {}
    edges = torch.tensor([cuts.get(d, [k / GRADES for k in range(1, GRADES)]) for d in DIMENSIONS])
    return 1 + (scores.float()[..., None] >= edges.to(scores.device)).sum(-1)


def _ids(tokens: list[int]) -> torch.Tensor:
    """Token ids as an index tensor: the constraints build each banned set once and index with it at every
    step (indexing with a Python list converts it again each time)."""
    return torch.tensor(tokens, dtype=torch.long)


def _silent(token_text: list[str], eos_id: int | None) -> set[int]:
    """Tokens that decode to nothing and are not the end (other special tokens, a byte of a longer
    character): they spell nothing, so constrained text leaves them out."""
    return set() if eos_id is None else {t for t, text in enumerate(token_text) if not text and t != eos_id}


def _banned(scores: torch.Tensor, ban: torch.Tensor) -> torch.Tensor:
    """`scores` with the entries of `ban` (a host-side (rows, vocabulary) mask the constraint filled row by
    row) set to -inf: one transfer and one fill per step whatever the batch, instead of one per row, which on
    a GPU is a round trip each."""
    return scores.masked_fill(ban.to(scores.device), float("-inf")) if ban.any() else scores


class LevelConstraint(LogitsProcessor):
    """Level-constrained decoding: wherever the answer states a level word ("excellent" ... "bad"), only the
    stage-1 level of the dimension the answer is talking about (the one it named last) is allowed, so the
    words agree with the numbers by construction. With `intros` (per dimension, the phrase that introduces
    its level, e.g. "the image quality is"), the level word must also follow that phrase at once. The rest
    of the sentence is free; it follows the level."""

    def __init__(
        self,
        grades: torch.Tensor,
        level_ids: dict[int, list[int]],
        decode: Callable[[list[int]], str],
        num_beams: int = 1,
        intros: list[str] | None = None,
    ):
        self.grades = grades.tolist()  # (B, 3) stage-1 levels, 1 ... 5, read on the host once
        self.level_ids, self.decode, self.num_beams = level_ids, decode, num_beams
        all_ids = sorted({i for ids in level_ids.values() for i in ids})
        self.others = {g: _ids([i for i in all_ids if i not in keep]) for g, keep in level_ids.items()}
        self.none = _ids(all_ids)  # a grade without level words of its own bans every level word
        self.intros = [i.lower() for i in intros] if intros else None

    @staticmethod
    def dimension(text: str) -> int | None:
        """The dimension `text` named last (its index in DIMENSIONS), if any."""
        found = {text.rfind(dim): i for i, dim in enumerate(DIMENSIONS) if dim in text}
        return found[max(found)] if found else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ban = torch.zeros(scores.shape, dtype=torch.bool)
        for row, ids in enumerate(input_ids.tolist()):
            text = self.decode(ids).lower()
            dim = self.dimension(text)
            if dim is None:
                continue
            grade = int(self.grades[row // self.num_beams][dim])
            keep = self.level_ids.get(grade, [])
            if self.intros and keep and text.rstrip().endswith(self.intros[dim]):  # "quality is" -> the level
                ban[row] = True
                ban[row, keep] = False
            else:
                ban[row, self.others.get(grade, self.none)] = True
        return _banned(scores, ban)


class CompleteAnswer(LogitsProcessor):
    """The answer states each dimension it was asked about, once. `required[b]` lists the phrases (e.g. "the
    image quality is") image b's answer must contain before `eos_id` is allowed. With `token_text` (token t's
    text), a sentence may not start spelling a phrase the answer already contains (unless it may still become
    one it does not): an out-of-vocabulary prompt otherwise lets a small LM state "the image quality is ..."
    twice. Phrases are matched with whitespace removed, as in `ReasonConstraint`; `cache` as there.

    `in_order` (answers written from templates: one sentence per dimension) is stricter: every sentence
    states the next phrase owed, in the order asked, and the answer ends after the last one's sentence. Beam
    search needs it: it keeps the likeliest sequences, and for a small LM those skip the long reason of
    quality and repeat a phrase until the token limit, where greedy decoding follows the training answers."""

    def __init__(
        self,
        required: list[list[str]],
        eos_id: int,
        decode: Callable[[list[int]], str],
        num_beams: int = 1,
        token_text: list[str] | None = None,
        cache: dict[tuple, torch.Tensor] | None = None,
        in_order: bool = False,
    ):
        squeeze = ReasonConstraint.squeeze
        self.required = [
            [(p.lower(), squeeze(p)) for p in phrases] for phrases in required
        ]  # as read, squeezed
        self.eos_id, self.decode, self.num_beams, self.in_order = eos_id, decode, num_beams, in_order
        # per token: whether it ends a sentence (a full stop, or <eos>), and its text after its last full stop
        self.pieces = [("." in t or not t, squeeze(t.rsplit(".", 1)[-1])) for t in token_text or []]
        self.silent = _silent(token_text or [], eos_id)
        self._banned = {} if cache is None else cache

    def repeats(self, fragment: str, stated: tuple[str, ...], open_: tuple[str, ...]) -> torch.Tensor:
        """Tokens after which the sentence so far (`fragment`) could only become an already stated phrase."""
        key = (fragment, stated, open_)
        if key not in self._banned:
            out = []
            for t, (ends, piece) in enumerate(self.pieces):
                word = piece if ends else fragment + piece
                if (
                    word
                    and any(p.startswith(word) for p in stated)
                    and not any(p.startswith(word) for p in open_)
                ):
                    out.append(t)
            self._banned[key] = _ids(out)
        return self._banned[key]

    def out_of_turn(self, fragment: str, reason: bool, owed: str) -> torch.Tensor:
        """`in_order`: tokens after which the sentence so far (`fragment`; `reason`: it states a dimension
        already) would not be the next phrase `owed` (none: only the end may follow), or would end too soon.
        Tokens that decode to nothing but are not the end (other special tokens, a byte of a longer character)
        are never allowed: they add nothing, and an untrained model repeats them to the token limit."""
        key = ("in order", None if reason else fragment, owed)
        if key not in self._banned:
            out = []
            for t, (ends, piece) in enumerate(self.pieces):
                if t == self.eos_id or t in self.silent:
                    ok = t == self.eos_id and not owed
                elif ends:  # ends this sentence; `piece` begins the next
                    ok = reason and owed.startswith(piece)
                else:
                    word = fragment + piece
                    ok = reason or bool(owed) and (owed.startswith(word) or word.startswith(owed))
                if not ok:
                    out.append(t)
            self._banned[key] = _ids(out)
        return self._banned[key]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ban = torch.zeros(scores.shape, dtype=torch.bool)
        for row, ids in enumerate(input_ids.tolist()):
            need = self.required[row // self.num_beams]
            if not need:
                continue
            text = self.decode(ids).lower()
            stated = tuple(squeezed for phrase, squeezed in need if phrase in text)
            if len(stated) < len(need):
                ban[row, self.eos_id] = True
            fragment = ReasonConstraint.sentence(text)
            if self.in_order and self.pieces:
                flat = ReasonConstraint.squeeze(text)
                owed = next((squeezed for _, squeezed in need if squeezed not in flat), "")
                reason = any(fragment.startswith(squeezed) for _, squeezed in need)
                ban[row, self.out_of_turn(fragment, reason, owed)] = True
            elif stated and self.pieces:
                open_ = tuple(squeezed for phrase, squeezed in need if phrase not in text)
                ban[row, self.repeats(fragment, stated, open_)] = True
        return _banned(scores, ban)


class ReasonConstraint(LogitsProcessor):
    """Reason-constrained decoding, for answers written from templates: a sentence that names a dimension
    must be one of the sentences that fit stage 1 (`allowed[b][dim]`, e.g. "the image quality is fair: motion
    blur is noticeable and some details are lost", the template of the stage-1 level naming the defect stage
    1 found) and may end only once it is complete.
    Sentences are matched with whitespace removed, so any tokenisation works; a token that decodes to nothing
    (end of sequence) counts as ending the sentence. Whole sentences, not just the reason after the colon,
    because beam search otherwise ends a sentence at its level word ("the image quality is good.") or runs on
    into the next ("... is good the image authenticity is ...").

    `token_text[t]` is token t's text. With `encode` (text -> token ids), a constrained sentence is spelt with
    the tokens of the allowed sentences' own tokenisation only: matching without whitespace and case would
    otherwise let a small LM spell a sentence it has not learnt as "it does notFu l lYshoww h at ...".
    `cache` (banned tokens per spelling state) may be shared by every constraint over the same vocabulary,
    so each state is worked out once, not once per batch.
    """

    def __init__(
        self,
        allowed: list[dict[int, list[str]]],
        token_text: list[str],
        decode: Callable[[list[int]], str],
        num_beams: int = 1,
        cache: dict[tuple, torch.Tensor] | None = None,
        eos_id: int | None = None,
        encode: Callable[[str], list[int]] | None = None,
    ):
        squeeze = self.squeeze
        self.allowed = [
            {dim: tuple(sorted({squeeze(r) for r in rs})) for dim, rs in row.items()} for row in allowed
        ]
        # with `encode`: the tokens each set of allowed sentences is spelt with
        self.spelling: dict[tuple[str, ...], frozenset[int]] = {}
        for row, squeezed in zip(allowed, self.allowed):
            for dim, rs in row.items():
                if encode is not None and squeezed[dim] not in self.spelling:
                    self.spelling[squeezed[dim]] = frozenset(t for r in rs for t in encode(r + "."))
        # per token: its text before a full stop, and whether it ends the sentence (a full stop, or <eos>:
        # without `eos_id`, any token without text)
        self.silent = _silent(token_text, eos_id)
        self.pieces = [
            (squeeze(t.split(".")[0]), "." in t or (not t and i not in self.silent))
            for i, t in enumerate(token_text)
        ]
        self.decode, self.num_beams = decode, num_beams
        self._banned = {} if cache is None else cache

    @staticmethod
    def squeeze(text: str) -> str:
        return "".join(text.lower().split())

    @classmethod
    def sentence(cls, text: str) -> str:
        """The last sentence of `text` so far (after its last full stop), squeezed."""
        return cls.squeeze(text[text.rfind(".") + 1 :])

    def banned(self, spelt: str, allowed: tuple[str, ...]) -> torch.Tensor:
        """Tokens that, after `spelt`, would leave every allowed sentence or end it before one is complete
        (or spell it with tokens its own tokenisation does not use, unless that would leave no token)."""
        spelling = self.spelling.get(allowed)
        key = (spelt, allowed, spelling is None)
        if key not in self._banned:
            leaving, foreign = [], []
            for t, (piece, ends) in enumerate(self.pieces):
                word = spelt + piece
                fits = word in allowed if ends else any(a.startswith(word) for a in allowed)
                if t in self.silent or not fits:
                    leaving.append(t)
                elif spelling is not None and piece and t not in spelling:
                    foreign.append(t)
            both = leaving + foreign
            self._banned[key] = _ids(both if len(both) < len(self.pieces) else leaving)
        return self._banned[key]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ban = torch.zeros(scores.shape, dtype=torch.bool)
        for row, ids in enumerate(input_ids.tolist()):
            spelt = self.sentence(self.decode(ids))
            named = {spelt.find(dim): i for i, dim in enumerate(DIMENSIONS) if dim in spelt}
            if not named:
                continue
            allowed = self.allowed[row // self.num_beams].get(
                named[min(named)]
            )  # the dimension it opens with
            if allowed:
                ban[row, self.banned(spelt, allowed)] = True
        return _banned(scores, ban)
