"""MINT-IQA stage 2: an instruction-tuned language model that explains the scores in words.

    image ──frozen stage-1 scorer──▶ patch features, stage-1 query embeddings (feedback)
    query tokens + feedback(stage-1 queries) ──Q-Former (reads the instruction, cross-attends to the
    patch features)──▶ language projection ──▶ prefix of the causal LM, then instruction, then answer

The feedback projection is zero-initialised, so at step 0 stage 2 is plain instruction tuning and the
stage-1 evidence is blended in only as far as training finds it useful. The loss covers answer tokens
only. The same class runs the `tiny` preset (a LLaMA-style LM trained from scratch) and the `paper`
preset (InstructBLIP's Q-Former, projection and Vicuna, loaded by `models.registry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from mint_iqa.models.scorer import MintScorer

IGNORE = -100


@dataclass
class ExplainerConfig:
    preset: str = "tiny"
    qformer: dict[str, Any] = field(default_factory=dict)      # InstructBlipQFormerConfig kwargs
    lm: dict[str, Any] = field(default_factory=dict)           # LlamaConfig kwargs (tiny) / loaded (paper)
    num_query_tokens: int = 16
    feedback: bool = True
    max_instruction_tokens: int = 64
    max_answer_tokens: int = 96

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExplainerConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown explainer config keys {sorted(unknown)}")
        return cls(**data)


@dataclass
class ExplainerOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    scores: torch.Tensor | None = None       # the frozen stage-1 scores of the same images (B, 3)


class MintExplainer(nn.Module):
    def __init__(self, config: ExplainerConfig, scorer: MintScorer, qformer: nn.Module, query_tokens: torch.Tensor,
                 language_projection: nn.Module, language_model: nn.Module):
        super().__init__()
        self.config = config
        self.scorer = scorer.eval().requires_grad_(False)   # stage 1 stays frozen
        self.qformer = qformer
        self.query_tokens = nn.Parameter(query_tokens)
        self.language_projection = language_projection
        self.language_model = language_model
        stage1 = scorer.qformer.config.hidden_size
        self.feedback = nn.Linear(stage1, qformer.config.hidden_size)
        nn.init.zeros_(self.feedback.weight)
        nn.init.zeros_(self.feedback.bias)

    def train(self, mode: bool = True) -> MintExplainer:
        super().train(mode)
        self.scorer.eval()
        return self

    def prefix(self, images: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
               qformer_ids: torch.Tensor, qformer_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LM prefix embeddings (B, Q, D) and the stage-1 scores (B, 3). The Q-Former reads the instruction
        in its own tokenisation (`qformer_ids`: BERT for InstructBLIP, the shared BPE for `tiny`)."""
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
        return self.language_projection(out.last_hidden_state[:, : queries.shape[1]]), stage1.scores

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.get_input_embeddings()(ids)

    def forward(self, images: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                qformer_ids: torch.Tensor, qformer_mask: torch.Tensor, instruction_ids: torch.Tensor,
                instruction_mask: torch.Tensor, answer_ids: torch.Tensor, answer_mask: torch.Tensor) -> ExplainerOutput:
        prefix, scores = self.prefix(images, prompt_ids, prompt_mask, qformer_ids, qformer_mask)
        embeds = torch.cat([prefix, self._embed(instruction_ids), self._embed(answer_ids)], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device),
                          instruction_mask, answer_mask], dim=1)
        ignore = torch.full(prefix.shape[:2], IGNORE, dtype=torch.long, device=prefix.device)
        labels = torch.cat([ignore, torch.full_like(instruction_ids, IGNORE),
                            answer_ids.masked_fill(answer_mask == 0, IGNORE)], dim=1)
        out = self.language_model(inputs_embeds=embeds, attention_mask=mask, labels=labels)
        return ExplainerOutput(loss=out.loss, logits=out.logits, scores=scores)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                 qformer_ids: torch.Tensor, qformer_mask: torch.Tensor, instruction_ids: torch.Tensor,
                 instruction_mask: torch.Tensor, bos_id: int, eos_id: int, pad_id: int, num_beams: int = 1,
                 max_new_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Answer token ids (B, T) — greedy or beam search — and the stage-1 scores (B, 3)."""
        prefix, scores = self.prefix(images, prompt_ids, prompt_mask, qformer_ids, qformer_mask)
        bos = torch.full((images.shape[0], 1), bos_id, dtype=torch.long, device=images.device)
        embeds = torch.cat([prefix, self._embed(instruction_ids), self._embed(bos)], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device), instruction_mask,
                          torch.ones_like(bos)], dim=1)
        ids = self.language_model.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens or self.config.max_answer_tokens,
            num_beams=num_beams, do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=bos_id)
        return ids, scores
