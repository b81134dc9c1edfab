"""MINT-IQA stage 1: vision tower -> Q-Former (learned queries + segmented prompt) -> three heads.

The Q-Former (HF `InstructBlipQFormerModel`) lets learned query tokens attend jointly with the
prompt tokens and cross-attend to the image's patch features; each query then feeds small heads
(quality, authenticity, correspondence) and a dimension's score is the mean over queries, as in the
released MINT-IQA code. The Q-Former runs twice over the same image features: without the prompt for
quality and authenticity, with it for correspondence (see `forward`). The query outputs of both
passes are also returned: stage 2 (the explainer) takes them as feedback. An optional auxiliary head
classifies the distortion type, which gives the queries a reason to look for specific defects; an
optional matching space (`Matcher`) puts the image and its prompt side by side, so that correspondence
does not rest on the prompt's wording alone. With `match_apart` the space reads the scorer's features
but trains none of them: its term in the correspondence score learns on top of the scorer's own, held
fixed, and its gradients are clipped on their own (see `train/scorer.py`), so the scorer trains as it
would without it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from mint_iqa.config import DIMENSIONS
from mint_iqa.models.vision import conv_stem, resize_for, token_grid
from mint_iqa.models.words import evidence, fuse


@dataclass
class ScorerConfig:
    """Everything needed to rebuild a scorer; saved as JSON next to its safetensors weights."""

    preset: str = "tiny"
    vision: dict[str, Any] = field(default_factory=dict)  # tower type + its kwargs
    qformer: dict[str, Any] = field(default_factory=dict)  # InstructBlipQFormerConfig kwargs
    num_query_tokens: int = 8
    text: dict[str, Any] = field(default_factory=dict)  # tokenizer + segmenter
    head_hidden: int = 64
    aux_classes: list[str] = field(default_factory=list)  # distortion classes of the auxiliary head
    locate: bool = False  # per-patch damage head (quality, authenticity)
    match: bool = False  # image-prompt matching space (correspondence)
    match_stem: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # its encoder; []: the tower
    match_apart: bool = False  # it trains none of the scorer's own weights
    train_size: int | None = None  # crop size used in training (tiny tower)
    input_size: int = 256  # px: images are read at this size (the prepared images'; `prepare.image_size`)
    calibration: dict[str, list[float]] = field(default_factory=dict)  # raw -> label map per dimension
    # correspondence = a * learned + b * word evidence + c, fitted on validation (`words.fit_fusion`)
    word_fusion: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScorerConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown scorer config keys {sorted(unknown)}")
        return cls(**data)


@dataclass
class ScorerOutput(ModelOutput):
    scores: torch.Tensor | None = None  # (B, 3): quality, authenticity, correspondence
    query_embeds: torch.Tensor | None = None  # (B, 2Q, H): prompt-free and prompt-reading query outputs
    aux_logits: torch.Tensor | None = None  # (B, C) distortion classes, if the aux head exists
    where_logits: torch.Tensor | None = None  # (B, N, 2) per patch: quality / authenticity damage, if located
    image_embeds: torch.Tensor | None = None  # (B, E) unit vectors of the matching space, if it exists
    text_embeds: torch.Tensor | None = None  # (B, E) the prompts' unit vectors there
    match_term: torch.Tensor | None = None  # (B,) the space's share of the correspondence score
    word_evidence: torch.Tensor | None = None  # (B,) log support of the best-supported prompt word
    class_probs: torch.Tensor | None = (
        None  # (B, 1000) the tower's ImageNet probabilities, if it has the head
    )


def damage_grid(where_logits: torch.Tensor) -> torch.Tensor:
    """The locate head's logits (B, N, 2) as maps (B, g, g, 2) of visible damage in [0, 1]: per cell of the
    image's patch grid, row-major from the top left; channel 0 quality, 1 authenticity."""
    g = token_grid(where_logits.shape[1])
    return where_logits.float().sigmoid().reshape(-1, g, g, 2)


def patch_tokens(feats: torch.Tensor) -> torch.Tensor:
    """The square grid of patch features (B, g*g, D): a leading class token (InstructBLIP's tower) is
    dropped."""
    return feats[:, feats.shape[1] - token_grid(feats.shape[1]) ** 2 :]


class Matcher(nn.Module):
    """Image and prompt in one space, as in BLIP-2's image-text contrastive objective. The prompt is the mean
    of a text-only Q-Former pass; the image, the mean of a small convolutional encoder of its own reading
    the image at half size (`stem` channels), or with no `stem` the mean patch feature of the tower (for
    pretrained towers, which already encode what an image shows). Trained contrastively (other images'
    captions in the batch are the negatives), its cosine similarity enters the correspondence score
    through a weight that starts at zero. Its own encoder keeps a from-scratch tower free for the quality
    evidence: trained to match, the tiny tower lost quality (`paper`: -0.047 SRCC). With `apart` it reads
    the tower's and the Q-Former's outputs without gradients."""

    def __init__(self, tower_dim: int, text_dim: int, stem: list[int], dim: int = 128):
        super().__init__()
        self.encoder = nn.Sequential(nn.AvgPool2d(2), conv_stem(3, stem)) if stem else None
        self.image, self.text = nn.Linear(stem[-1] if stem else tower_dim, dim), nn.Linear(text_dim, dim)
        # 1-d parameters: DeepSpeed cannot broadcast 0-d ones
        self.logit_scale = nn.Parameter(torch.full((1,), math.log(1 / 0.07)))
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(
        self, images: torch.Tensor, patches: torch.Tensor, text: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit vectors (B, dim) of the images (in [0, 1]) and of the prompts' Q-Former outputs (B, L, H)."""
        if self.encoder is not None:
            pooled = self.encoder((images.to(patches.dtype) - 0.5) / 0.25).mean(dim=(2, 3))
        else:
            pooled = patches.mean(dim=1)
        m = mask.unsqueeze(-1).to(text.dtype)
        img = F.normalize(self.image(pooled), dim=-1)
        txt = F.normalize(self.text((text * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)), dim=-1)
        return img, txt


class Locator(nn.Module):
    """Per-patch damage logits (B, N, 2) from patch features (B, N, D): each patch read beside its difference
    from the image's mean patch, because a local defect is what sets a region apart from the rest of the
    image (a linear read-out of the patch alone: authenticity CC 0.33, docs/results.md)."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 2))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([patches, patches - patches.mean(dim=1, keepdim=True)], dim=-1))


class MintScorer(nn.Module):
    def __init__(
        self, config: ScorerConfig, vision: nn.Module, qformer: nn.Module, query_tokens: torch.Tensor
    ):
        super().__init__()
        self.config = config
        self.vision = vision
        self.qformer = qformer
        self.query_tokens = nn.Parameter(query_tokens)
        hidden = qformer.config.hidden_size
        self.heads = nn.ModuleDict(
            {
                dim: nn.Sequential(
                    nn.Linear(hidden, config.head_hidden), nn.GELU(), nn.Linear(config.head_hidden, 1)
                )
                for dim in DIMENSIONS
            }
        )
        # the defect head reads the queries, each feature's strongest patch (a local defect shows there) and
        # its mean patch (a defect over the whole image shows there)
        self.aux = nn.Linear(hidden + 2 * vision.dim, len(config.aux_classes)) if config.aux_classes else None
        self.locate = Locator(vision.dim) if config.locate else None
        self.matcher = Matcher(vision.dim, hidden, config.match_stem) if config.match else None

    def _queries(
        self, feats: torch.Tensor, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Q-Former query outputs (B, Q, H) over image features, with the prompt tokens or without."""
        queries = self.query_tokens.expand(feats.shape[0], -1, -1)
        ones = torch.ones(queries.shape[:2], dtype=torch.long, device=feats.device)
        mask = ones if input_ids is None else torch.cat([ones, attention_mask.to(ones.dtype)], dim=1)
        out = self.qformer(
            input_ids=input_ids,
            attention_mask=mask,
            query_embeds=queries,
            encoder_hidden_states=feats,
            encoder_attention_mask=torch.ones(feats.shape[:2], dtype=torch.long, device=feats.device),
        )
        return out.last_hidden_state[:, : queries.shape[1]]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Patch features (B, N, D) of images in [0, 1] (resized if the tower needs a fixed size), computed in
        the weights' dtype (a bf16 engine is fed float32 batches)."""
        return self.encode(images)[0]

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Patch features, and the tower's ImageNet probabilities (B, 1000) when it has its classifier."""
        x = resize_for(self.vision, images.to(self.query_tokens.dtype))
        return self.vision.encode(x) if hasattr(self.vision, "encode") else (self.vision(x), None)

    def forward(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        feats: torch.Tensor | None = None,
        probs: torch.Tensor | None = None,
        words: torch.Tensor | None = None,
    ) -> ScorerOutput:
        """Quality and authenticity read a prompt-free pass of the Q-Former (an image's quality must not
        change with its prompt, and a caption must not become a shortcut to a memorised reference);
        correspondence reads the pass where the queries attend to the segmented prompt, and, given the
        prompts' `words` (`words.word_masks`) and a fitted `word_fusion`, what the ImageNet classifier sees
        of the words they name."""
        if feats is None:
            feats, probs = self.encode(images)
        seen = self._queries(feats, None, None)
        read = self._queries(feats, input_ids, attention_mask)
        scores = torch.cat(
            [
                self.heads["quality"](seen).mean(dim=1),
                self.heads["authenticity"](seen).mean(dim=1),
                self.heads["correspondence"](read).mean(dim=1),
            ],
            dim=-1,
        )
        patches = patch_tokens(feats)
        aux = None
        if self.aux is not None:
            aux = self.aux(torch.cat([seen.mean(dim=1), patches.amax(dim=1), patches.mean(dim=1)], dim=-1))
        where = self.locate(patches) if self.locate is not None else None
        img = txt = term = None
        if self.matcher is not None:
            apart = self.config.match_apart
            with torch.set_grad_enabled(torch.is_grad_enabled() and not apart):
                text = self.qformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            img, txt = self.matcher(images, patches.detach() if apart else patches, text, attention_mask)
            term = self.matcher.weight * (img * txt).sum(dim=-1)
            scores = scores + F.pad(term[:, None], (2, 0))
        ev = evidence(probs, words.to(probs.device)) if probs is not None and words is not None else None
        if ev is not None and self.config.word_fusion:
            fused = fuse(scores[:, 2].float(), ev, self.config.word_fusion).to(scores.dtype)
            scores = torch.cat([scores[:, :2], fused[:, None]], dim=1)
        return ScorerOutput(
            scores=scores,
            query_embeds=torch.cat([seen, read], dim=1),
            aux_logits=aux,
            where_logits=where,
            image_embeds=img,
            text_embeds=txt,
            match_term=term,
            word_evidence=ev,
            class_probs=probs,
        )
