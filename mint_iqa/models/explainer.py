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
stage-1 level and give the reason that fits it (`models.decoding`). The loss covers answer tokens only.
The same class runs the `tiny` preset (a LLaMA-style LM trained from scratch) and the `paper` preset
(InstructBLIP's Q-Former, projection and Vicuna, loaded by `models.factory`).
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
from mint_iqa.models.decoding import GRADES, score_grades
from mint_iqa.models.scorer import MintScorer, ScorerOutput


@dataclass
class ExplainerConfig:
    preset: str = "tiny"
    qformer: dict[str, Any] = field(default_factory=dict)  # InstructBlipQFormerConfig kwargs
    lm: dict[str, Any] = field(default_factory=dict)  # LlamaConfig kwargs (tiny) / loaded (paper)
    num_query_tokens: int = 16
    feedback: bool = True
    evidence: bool = False  # stage-1 level and defect-class tokens at the start of the LM prefix (presets
    # turn it on; False reads folders saved before it existed)
    constrain_levels: bool = True  # decoding may state only the stage-1 level of each dimension
    constrain_reasons: bool = True  # decoding may give only the reason that fits the stage-1 level and defect
    level_cuts: dict[str, list[float]] = field(
        default_factory=dict
    )  # stage-1 score -> level (`score_grades`)
    max_instruction_tokens: int = 64
    max_answer_tokens: int = 96
    freeze_lm: bool = (
        False  # keep the language model as loaded (paper: Vicuna-7B; tiny's is trained from scratch)
    )

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
    logits: torch.Tensor | None = None  # predicting answer tokens 1, 2, ... (B, answer length - 1, vocab)
    scores: torch.Tensor | None = None  # the frozen stage-1 scores of the same images (B, 3)


class MintExplainer(nn.Module):
    def __init__(
        self,
        config: ExplainerConfig,
        scorer: MintScorer,
        qformer: nn.Module,
        query_tokens: torch.Tensor,
        language_projection: nn.Module,
        language_model: nn.Module,
    ):
        super().__init__()
        self.config = config
        self.scorer = scorer.eval().requires_grad_(False)  # stage 1 stays frozen
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

    def prefix(
        self,
        images: torch.Tensor,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        qformer_ids: torch.Tensor,
        qformer_mask: torch.Tensor,
        prompt_words: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ScorerOutput]:
        """LM prefix embeddings (B, [evidence +] Q, D) and the stage-1 outputs (scores, defect logits). The
        Q-Former reads the instruction in its own tokenisation (`qformer_ids`: BERT for InstructBLIP, the
        shared BPE for `tiny`)."""
        with torch.no_grad():
            feats, probs = self.scorer.encode(images)
            stage1 = self.scorer(
                images, prompt_ids, prompt_mask, feats=feats, probs=probs, words=prompt_words
            )
        queries = self.query_tokens.expand(images.shape[0], -1, -1)
        if self.config.feedback:
            fb = stage1.query_embeds
            if fb.shape[1] != queries.shape[1]:  # match token counts by interpolation along the query axis
                fb = nn.functional.interpolate(fb.transpose(1, 2), size=queries.shape[1]).transpose(1, 2)
            queries = queries + self.feedback(fb)
        ones = torch.ones(queries.shape[:2], dtype=torch.long, device=images.device)
        out = self.qformer(
            input_ids=qformer_ids,
            attention_mask=torch.cat([ones, qformer_mask], dim=1),
            query_embeds=queries,
            encoder_hidden_states=feats,
            encoder_attention_mask=torch.ones(feats.shape[:2], dtype=torch.long, device=feats.device),
        )
        prefix = self.language_projection(out.last_hidden_state[:, : queries.shape[1]])
        if self.config.evidence:
            prefix = torch.cat([self.evidence(stage1).to(prefix.dtype), prefix], dim=1)
        return prefix, stage1

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.get_input_embeddings()(ids)

    def forward(
        self,
        images: torch.Tensor,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        qformer_ids: torch.Tensor,
        qformer_mask: torch.Tensor,
        instruction_ids: torch.Tensor,
        instruction_mask: torch.Tensor,
        answer_ids: torch.Tensor,
        answer_mask: torch.Tensor,
        answer_weights: torch.Tensor | None = None,
        prompt_words: torch.Tensor | None = None,
    ) -> ExplainerOutput:
        """Next-token loss over the answer tokens, each weighted by `answer_weights` (default 1): the
        level words carry the verdict but are one token in sixty, so training weights them up."""
        prefix, stage1 = self.prefix(images, prompt_ids, prompt_mask, qformer_ids, qformer_mask, prompt_words)
        embeds = torch.cat([prefix, self._embed(instruction_ids), self._embed(answer_ids)], dim=1)
        mask = torch.cat(
            [
                torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device),
                instruction_mask,
                answer_mask,
            ],
            dim=1,
        )
        # Positions count real tokens only, as `generate` numbers them: the instruction's padding sits
        # mid-sequence, and counting it would move the answer by a different amount in every batch.
        positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
        # The logit at position t predicts token t + 1. Answers start with <bos>, which generation is given,
        # so answer token j >= 1 is predicted from answer token j - 1: only the answer's positions go through
        # the (vocabulary-wide) LM head.
        logits = self.language_model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            logits_to_keep=answer_ids.shape[1],
        ).logits[:, :-1]
        weights = answer_mask.to(logits.dtype) if answer_weights is None else answer_weights * answer_mask
        weights, targets = weights[:, 1:], answer_ids[:, 1:]
        ce = nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
        loss = (ce * weights).sum() / weights.sum().clamp_min(1e-6)
        return ExplainerOutput(loss=loss, logits=logits, scores=stage1.scores)

    @torch.no_grad()
    def generate(
        self,
        images: torch.Tensor,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        qformer_ids: torch.Tensor,
        qformer_mask: torch.Tensor,
        instruction_ids: torch.Tensor,
        instruction_mask: torch.Tensor,
        bos_id: int,
        eos_id: int,
        pad_id: int,
        num_beams: int = 1,
        max_new_tokens: int | None = None,
        constraint: Callable[[ScorerOutput], list[LogitsProcessor]] | None = None,
        prompt_words: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ScorerOutput]:
        """Answer token ids (B, T) — greedy or beam search — and the stage-1 outputs. `constraint`
        builds logits processors from the stage-1 outputs (see `LevelConstraint`, `ReasonConstraint`)."""
        prefix, stage1 = self.prefix(images, prompt_ids, prompt_mask, qformer_ids, qformer_mask, prompt_words)
        bos = torch.full((images.shape[0], 1), bos_id, dtype=torch.long, device=images.device)
        embeds = torch.cat([prefix, self._embed(instruction_ids), self._embed(bos)], dim=1)
        mask = torch.cat(
            [
                torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device),
                instruction_mask,
                torch.ones_like(bos),
            ],
            dim=1,
        )
        ids = self.language_model.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens or self.config.max_answer_tokens,
            num_beams=num_beams,
            do_sample=False,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            bos_token_id=bos_id,
            logits_processor=LogitsProcessorList(constraint(stage1)) if constraint else None,
        )
        return ids, stage1
