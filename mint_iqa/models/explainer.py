"""MINT-IQA stage 2: an instruction-tuned language model that explains the scores in words.

    image ──frozen stage-1 scorer──▶ patch features, stage-1 query embeddings (feedback), scores, defect class
    query tokens + feedback(stage-1 queries) ──Q-Former (reads the instruction, cross-attends to the
    patch features)──▶ language projection ──┐
    stage-1 level per dimension + distortion-class probabilities ──▶ evidence tokens ──┤
                                              prefix of the causal LM, then instruction, then answer ◀┘

The feedback projection is zero-initialised, so at step 0 stage 2 is plain instruction tuning and the
stage-1 query evidence is blended in only as far as training finds it useful. The evidence tokens say
outright what stage 1 concluded: one token per dimension for the five-grade level of its score (the level
the words should state, so explanation and numbers agree) and one for the auxiliary head's
distortion-class probabilities (which defect to name). Without them a small LM trained for minutes learns
the language prior ("excellent") and ignores the visual prefix. Decoding can be constrained to state the
stage-1 level (`LevelConstraint`) and give the reason that fits it (`ReasonConstraint`). The loss covers
answer tokens only. The same class runs the `tiny` preset (a LLaMA-style LM trained from scratch) and the
`paper` preset (InstructBLIP's Q-Former, projection and Vicuna, loaded by `models.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.utils import ModelOutput

from mint_iqa.config import DIMENSIONS
from mint_iqa.models.scorer import MintScorer, ScorerOutput

GRADES = 5


def score_grades(scores: torch.Tensor, cuts: dict[str, list[float]] | None = None) -> torch.Tensor:
    """Five-grade levels (1 ... 5) of stage-1 scores (B, 3). A dimension in `cuts` is cut at its four
    thresholds (a score at or above the k-th reaches grade k + 1); any other at 0.2 / 0.4 / 0.6 / 0.8, as
    `data.answers.grade` cuts labels."""
    cuts = cuts or {}
    edges = torch.tensor([cuts.get(d, [k / GRADES for k in range(1, GRADES)]) for d in DIMENSIONS])
    return 1 + (scores.float()[..., None] >= edges.to(scores.device)).sum(-1)


@dataclass
class ExplainerConfig:
    preset: str = "tiny"
    qformer: dict[str, Any] = field(default_factory=dict)      # InstructBlipQFormerConfig kwargs
    lm: dict[str, Any] = field(default_factory=dict)           # LlamaConfig kwargs (tiny) / loaded (paper)
    num_query_tokens: int = 16
    feedback: bool = True
    evidence: bool = False        # stage-1 level and defect-class tokens at the start of the LM prefix (presets
                                  # turn it on; False reads folders saved before it existed)
    constrain_levels: bool = True  # decoding may state only the stage-1 level of each dimension
    constrain_reasons: bool = True  # decoding may give only the reason that fits the stage-1 level and defect
    level_cuts: dict[str, list[float]] = field(default_factory=dict)  # stage-1 score -> level (`score_grades`)
    max_instruction_tokens: int = 64
    max_answer_tokens: int = 96
    freeze_lm: bool = False       # keep the language model as loaded (paper: Vicuna-7B; tiny's is trained from scratch)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExplainerConfig:
        data = dict(data)
        if "constrain_defects" in data:  # folders saved before reasons were constrained as a whole
            data.setdefault("constrain_reasons", data.pop("constrain_defects"))
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown explainer config keys {sorted(unknown)}")
        return cls(**data)


@dataclass
class ExplainerOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None       # predicting answer tokens 1, 2, ... (B, answer length - 1, vocab)
    scores: torch.Tensor | None = None       # the frozen stage-1 scores of the same images (B, 3)


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

    def __init__(self, grades: torch.Tensor, level_ids: dict[int, list[int]], decode: Callable[[list[int]], str],
                 num_beams: int = 1, intros: list[str] | None = None):
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

    def __init__(self, required: list[list[str]], eos_id: int, decode: Callable[[list[int]], str],
                 num_beams: int = 1, token_text: list[str] | None = None,
                 cache: dict[tuple, torch.Tensor] | None = None, in_order: bool = False):
        squeeze = ReasonConstraint.squeeze
        self.required = [[(p.lower(), squeeze(p)) for p in phrases] for phrases in required]  # as read, squeezed
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
                if word and any(p.startswith(word) for p in stated) and not any(p.startswith(word) for p in open_):
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

    def __init__(self, allowed: list[dict[int, list[str]]], token_text: list[str],
                 decode: Callable[[list[int]], str], num_beams: int = 1,
                 cache: dict[tuple, torch.Tensor] | None = None, eos_id: int | None = None,
                 encode: Callable[[str], list[int]] | None = None):
        squeeze = self.squeeze
        self.allowed = [{dim: tuple(sorted({squeeze(r) for r in rs})) for dim, rs in row.items()}
                        for row in allowed]
        # with `encode`: the tokens each set of allowed sentences is spelt with
        self.spelling: dict[tuple[str, ...], frozenset[int]] = {}
        for row, squeezed in zip(allowed, self.allowed):
            for dim, rs in row.items():
                if encode is not None and squeezed[dim] not in self.spelling:
                    self.spelling[squeezed[dim]] = frozenset(t for r in rs for t in encode(r + "."))
        # per token: its text before a full stop, and whether it ends the sentence (a full stop, or <eos>:
        # without `eos_id`, any token without text)
        self.silent = _silent(token_text, eos_id)
        self.pieces = [(squeeze(t.split(".")[0]), "." in t or (not t and i not in self.silent))
                       for i, t in enumerate(token_text)]
        self.decode, self.num_beams = decode, num_beams
        self._banned = {} if cache is None else cache

    @staticmethod
    def squeeze(text: str) -> str:
        return "".join(text.lower().split())

    @classmethod
    def sentence(cls, text: str) -> str:
        """The last sentence of `text` so far (after its last full stop), squeezed."""
        return cls.squeeze(text[text.rfind(".") + 1:])

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
            allowed = self.allowed[row // self.num_beams].get(named[min(named)])  # the dimension it opens with
            if allowed:
                ban[row, self.banned(spelt, allowed)] = True
        return _banned(scores, ban)


class MintExplainer(nn.Module):
    def __init__(self, config: ExplainerConfig, scorer: MintScorer, qformer: nn.Module, query_tokens: torch.Tensor,
                 language_projection: nn.Module, language_model: nn.Module):
        super().__init__()
        self.config = config
        self.scorer = scorer.eval().requires_grad_(False)   # stage 1 stays frozen
        self.qformer = qformer
        self.query_tokens = nn.Parameter(query_tokens)
        self.language_projection = language_projection
        self.language_model = language_model.requires_grad_(not config.freeze_lm)
        stage1 = scorer.qformer.config.hidden_size
        self.feedback = nn.Linear(stage1, qformer.config.hidden_size)
        nn.init.zeros_(self.feedback.weight)
        nn.init.zeros_(self.feedback.bias)
        self.levels = self.defects = None
        if config.evidence:
            width = language_model.get_input_embeddings().embedding_dim
            self.levels = nn.Embedding(len(DIMENSIONS) * GRADES, width)
            nn.init.normal_(self.levels.weight, std=0.02)
            classes = len(scorer.config.aux_classes)
            self.defects = nn.Linear(classes, width) if classes else None

    def train(self, mode: bool = True) -> MintExplainer:
        super().train(mode)
        self.scorer.eval()
        return self

    def evidence(self, stage1: ScorerOutput) -> torch.Tensor:
        """Evidence tokens (B, 3 or 4, D): per dimension, the embedding of its stage-1 level (`score_grades`);
        then the distortion-class probabilities, projected."""
        grades = score_grades(stage1.scores, self.config.level_cuts) - 1
        tokens = [self.levels(grades + GRADES * torch.arange(len(DIMENSIONS), device=grades.device))]
        if self.defects is not None:
            probs = stage1.aux_logits.float().softmax(-1).to(self.defects.weight.dtype)
            tokens.append(self.defects(probs).unsqueeze(1))
        return torch.cat(tokens, dim=1)

    def prefix(self, images: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
               qformer_ids: torch.Tensor, qformer_mask: torch.Tensor) -> tuple[torch.Tensor, ScorerOutput]:
        """LM prefix embeddings (B, [evidence +] Q, D) and the stage-1 outputs (scores, defect logits). The
        Q-Former reads the instruction in its own tokenisation (`qformer_ids`: BERT for InstructBLIP, the shared
        BPE for `tiny`)."""
        with torch.no_grad():
            feats = self.scorer.features(images)
            stage1 = self.scorer(images, prompt_ids, prompt_mask, feats=feats)
        queries = self.query_tokens.expand(images.shape[0], -1, -1)
        if self.config.feedback:
            fb = stage1.query_embeds
            if fb.shape[1] != queries.shape[1]:  # match token counts by interpolation along the query axis
                fb = nn.functional.interpolate(fb.transpose(1, 2), size=queries.shape[1]).transpose(1, 2)
            queries = queries + self.feedback(fb)
        ones = torch.ones(queries.shape[:2], dtype=torch.long, device=images.device)
        out = self.qformer(input_ids=qformer_ids, attention_mask=torch.cat([ones, qformer_mask], dim=1),
                           query_embeds=queries, encoder_hidden_states=feats,
                           encoder_attention_mask=torch.ones(feats.shape[:2], dtype=torch.long, device=feats.device))
        prefix = self.language_projection(out.last_hidden_state[:, : queries.shape[1]])
        if self.config.evidence:
            prefix = torch.cat([self.evidence(stage1).to(prefix.dtype), prefix], dim=1)
        return prefix, stage1

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.get_input_embeddings()(ids)

    def forward(self, images: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                qformer_ids: torch.Tensor, qformer_mask: torch.Tensor, instruction_ids: torch.Tensor,
                instruction_mask: torch.Tensor, answer_ids: torch.Tensor, answer_mask: torch.Tensor,
                answer_weights: torch.Tensor | None = None) -> ExplainerOutput:
        """Next-token loss over the answer tokens, each weighted by `answer_weights` (default 1): the
        level words carry the verdict but are one token in sixty, so training weights them up."""
        prefix, stage1 = self.prefix(images, prompt_ids, prompt_mask, qformer_ids, qformer_mask)
        embeds = torch.cat([prefix, self._embed(instruction_ids), self._embed(answer_ids)], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device),
                          instruction_mask, answer_mask], dim=1)
        # Positions count real tokens only, as `generate` numbers them: the instruction's padding sits
        # mid-sequence, and counting it would move the answer by a different amount in every batch.
        positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
        # The logit at position t predicts token t + 1. Answers start with <bos>, which generation is given, so
        # answer token j >= 1 is predicted from answer token j - 1: only the answer's positions go through
        # the (vocabulary-wide) LM head.
        logits = self.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                     logits_to_keep=answer_ids.shape[1]).logits[:, :-1]
        weights = answer_mask.to(logits.dtype) if answer_weights is None else answer_weights * answer_mask
        weights, targets = weights[:, 1:], answer_ids[:, 1:]
        ce = nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
        loss = (ce * weights).sum() / weights.sum().clamp_min(1e-6)
        return ExplainerOutput(loss=loss, logits=logits, scores=stage1.scores)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                 qformer_ids: torch.Tensor, qformer_mask: torch.Tensor, instruction_ids: torch.Tensor,
                 instruction_mask: torch.Tensor, bos_id: int, eos_id: int, pad_id: int, num_beams: int = 1,
                 max_new_tokens: int | None = None,
                 constraint: Callable[[ScorerOutput], list[LogitsProcessor]] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Answer token ids (B, T) — greedy or beam search — and the stage-1 scores (B, 3). `constraint` builds
        logits processors from the stage-1 outputs (see `LevelConstraint`, `ReasonConstraint`)."""
        prefix, stage1 = self.prefix(images, prompt_ids, prompt_mask, qformer_ids, qformer_mask)
        bos = torch.full((images.shape[0], 1), bos_id, dtype=torch.long, device=images.device)
        embeds = torch.cat([prefix, self._embed(instruction_ids), self._embed(bos)], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device), instruction_mask,
                          torch.ones_like(bos)], dim=1)
        ids = self.language_model.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens or self.config.max_answer_tokens,
            num_beams=num_beams, do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=bos_id,
            logits_processor=LogitsProcessorList(constraint(stage1)) if constraint else None)
        return ids, stage1.scores
