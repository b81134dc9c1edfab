"""Step `train-scorer`: stage 1 of MINT-IQA for one protocol, through the shared DeepSpeed engine.

Training samples are synthesised on the fly from the protocol's *training* references only (fresh
crop, distortion, level and prompt every time: the model never sees one sample twice), mixed with
the prepared images of the protocol's train split. The prepared validation split picks the best
epoch; the test split is never read here. Output: `<train.out_dir>/<protocol>/` with the best
weights (safetensors + config.json), `history.json` and DeepSpeed checkpoints for `--resume`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mint_iqa.calibration import fit_calibration
from mint_iqa.config import DIMENSIONS, LossConfig, Params
from mint_iqa.data import manifest
from mint_iqa.inference.scoring import evidence_arrays, score_arrays
from mint_iqa.io import write_text
from mint_iqa.metrics import srcc
from mint_iqa.models.factory import build_scorer, build_tokenizer, preset_config, save_scorer
from mint_iqa.models.scorer import ScorerOutput
from mint_iqa.models.text import segmenter
from mint_iqa.models.words import fit_fusion, fuse
from mint_iqa.train.data import (
    AUX_CLASSES,
    AUX_KINDS,
    Split,
    TrainStream,
    held_out,
    loader,
    training_synthesiser,
)
from mint_iqa.train.engine import fit, seed_everything, tracked_run


def plcc_loss(pred: torch.Tensor, target: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
    """1 - Pearson correlation, per column with some label spread in the batch, averaged."""
    losses = []
    for d in range(pred.shape[1]):
        rows = known[:, d] if known is not None else slice(None)
        p, t = pred[rows, d], target[rows, d]
        if p.numel() < 3:
            continue
        if t.std() < 1e-6:
            continue
        p, t = p - p.mean(), t - t.mean()
        losses.append(1 - (p * t).sum() / (p.norm() * t.norm() + 1e-8))
    return torch.stack(losses).mean() if losses else pred.sum() * 0


def rank_loss(
    pred: torch.Tensor, target: torch.Tensor, known: torch.Tensor | None = None, margin: float = 0.05
) -> torch.Tensor:
    """Pairwise hinge: for label pairs that differ, the prediction order must agree by a margin."""
    dp = pred[:, None, :] - pred[None, :, :]
    dt = target[:, None, :] - target[None, :, :]
    sign = torch.sign(dt)
    mask = dt.abs() > 1e-6
    if known is not None:
        mask = mask & known[:, None, :] & known[None, :, :]
    return (F.relu(margin - sign * dp) * mask).sum() / mask.sum().clamp_min(1)


def label_losses(
    pred: torch.Tensor, target: torch.Tensor, known: torch.Tensor, count: torch.Tensor, rank: bool = False
) -> dict[str, torch.Tensor]:
    """L1 (summed over the `known` entries, over `count`), 1 - PLCC and, with `rank`, the pairwise ranking
    term (B^2 pairs: computed only when it is weighted)."""
    l1 = ((pred - target).abs() * known).sum() / count.clamp_min(1)
    parts = {"l1": l1, "plcc": plcc_loss(pred, target, known)}
    return parts | ({"rank": rank_loss(pred, target, known)} if rank else {})


def aux_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the defect head (B, C) per family, each over that family's kinds only: targets (B, 2)
    hold the worst quality and the worst authenticity kind (-100: none)."""
    parts, start = [], 0
    for i, kinds in enumerate(AUX_KINDS.values()):  # each family's kinds are one block of the classes
        end = start + len(kinds)
        target = targets[:, i].to(logits.device)
        local = torch.where(target >= 0, target - start, target)
        if (local >= 0).any():
            parts.append(F.cross_entropy(logits[:, start:end], local, ignore_index=-100))
        start = end
    return torch.stack(parts).mean() if parts else logits.sum() * 0.0


def where_loss(logits: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of per-patch damage logits (B, N, 2) against the damage maps (B, G, G, 2), pooled
    onto the patch grid; maps of -1 (prepared images, no map) cost nothing."""
    from mint_iqa.models.vision import token_grid

    grid = token_grid(logits.shape[1])
    target = F.adaptive_avg_pool2d(where.permute(0, 3, 1, 2), grid).flatten(2).transpose(1, 2)
    known = (target >= 0).float()
    loss = F.binary_cross_entropy_with_logits(logits, target.clamp_min(0), weight=known, reduction="sum")
    return loss / known.sum().clamp_min(1)


def match_loss(
    img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor, groups: list[str], matching: torch.Tensor
) -> torch.Tensor:
    """Contrastive image-prompt loss over a batch, both directions. Image i and prompt j belong together when
    j describes its own image (`matching`) and both show the same reference (`groups`); prompts that
    describe their image wrongly are negatives for images of that reference only (what they describe
    may well be another image in the batch). Rows without a group take no part."""
    ids = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    group = torch.tensor([ids[g] if g else -1 for g in groups], device=img.device)
    known, matching = group >= 0, matching.to(img.device)
    both = known[:, None] & known[None, :]
    same = both & (group[:, None] == group[None, :])
    pos = same & matching[None, :]
    cand = both & (matching[None, :] | same)
    logits = logit_scale.exp().clamp_max(100) * img.float() @ txt.float().T

    def nce(logits: torch.Tensor, pos: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        rows = pos.any(dim=1)
        if not rows.any():
            return logits.sum() * 0
        all_ = torch.logsumexp(logits.masked_fill(~cand, -1e4), dim=1)
        good = torch.logsumexp(logits.masked_fill(~pos, -1e4), dim=1)
        return (all_ - good)[rows].mean()

    return (nce(logits, pos, cand) + nce(logits.T, pos.T, cand.T)) / 2


def scorer_loss(
    out: ScorerOutput,
    batch: dict[str, Any],
    w: LossConfig,
    scale: torch.Tensor | None = None,
    apart: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum of the loss parts, and each part's value. With the matching space `apart`, the
    scorer's own score (the space's term taken out) learns the labels as it would without the space, and
    the term learns what is left on top of that score held fixed."""
    pred, target = out.scores.float(), batch["labels"]
    known = target >= 0  # a dataset without some label (AGIQA-3K: authenticity) marks it -1
    pred = torch.where(known, pred, target)  # unlabelled entries cost nothing
    term = F.pad(out.match_term.float()[:, None], (2, 0)) if out.match_term is not None and apart else None
    if term is not None:
        pred = pred - term
    parts = label_losses(pred, target, known, known.sum(), rank=w.rank > 0)
    if term is not None:
        corr = torch.arange(len(DIMENSIONS), device=known.device) == DIMENSIONS.index("correspondence")
        on_top = label_losses(pred.detach() + term, target, known & corr, known.sum(), rank=w.rank > 0)
        parts = {k: v + on_top[k] for k, v in parts.items()}
    if out.aux_logits is not None:
        parts["aux"] = aux_loss(out.aux_logits.float(), batch["aux"])
    if out.where_logits is not None:
        parts["locate"] = where_loss(out.where_logits.float(), batch["where"])
    if out.image_embeds is not None:
        parts["match"] = match_loss(
            out.image_embeds, out.text_embeds, scale, batch["groups"], batch["matching"]
        )
    total = sum(getattr(w, k) * v for k, v in parts.items() if getattr(w, k) > 0)
    return total, {"loss": total.item(), **{k: v.item() for k, v in parts.items()}}


class ScorerTask:
    def __init__(self, params: Params, protocol: str, segment: Any):
        self.params, self.protocol, self.cfg = params, protocol, params.train
        self.segment = segment
        self.tokenizer: Any = None
        self.val_evidence: np.ndarray | None = None  # word evidence of the validation images (None: no
        self.evidence_ready = False  # ImageNet classifier in the tower)
        self.fusion: list[float] | None = None  # its fit, with the last validation
        prepared = Path(params.prepare.out_dir)
        unseen = held_out(params) if protocol == "lko" else None  # never trained on, nor chosen by
        size = params.prepare.image_size
        self.fixed = Split.load(prepared, protocol, "train", size, without=unseen)
        self.val = Split.load(prepared, protocol, "val", size, without=unseen)
        self.synth = training_synthesiser(params, self.fixed, protocol)
        self.refs = self.synth.refs if self.synth else []
        self.ref_indices = list(range(len(self.refs)))

    def corpus(self) -> list[str]:
        """Text the tokenizer is trained on: training prompts, answers and reference captions."""
        from mint_iqa.data.prompts import caption

        rng = np.random.default_rng(self.params.seed)
        frame = self.fixed.frame
        texts = [self.segment(p) for p in frame["prompt"]]
        texts += [a for col in manifest.ANSWER_COLUMNS.values() for a in frame[col] if a]
        texts += [self.segment(caption(r, rng)) for r in self.refs for _ in range(4)]
        return texts

    def batches(self, epoch: int, start_step: int) -> Iterator[dict[str, Any]]:
        cfg = self.cfg
        stream = TrainStream(
            self.synth,
            self.ref_indices,
            self.fixed,
            self.params.seed,
            epoch,
            cfg.steps_per_epoch * cfg.batch_size,
            cfg.synthetic_fraction,
            cfg.crop,
            cfg.reuse,
        )
        yield from map(self.with_tokens, loader(stream, start_step, cfg))

    def with_tokens(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch with its segmented prompts tokenised (`input_ids`, `attention_mask`)."""
        return {**batch, **self.tokenizer([self.segment(p) for p in batch["prompts"]])}

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.autocast(batch["images"].device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast):
            out = model(batch["images"], batch["input_ids"], batch["attention_mask"])
        module = getattr(model, "module", model)  # the engine wraps the model
        scale = module.matcher.logit_scale if module.matcher is not None else None
        return scorer_loss(out, batch, self.cfg.loss, scale, module.config.match_apart)

    def clip_groups(self, model: Any) -> list[list[torch.nn.Parameter]]:
        """With the matching space apart, its gradients are clipped apart too: under one global norm a
        large gradient of the space would shrink the scorer's steps."""
        if model.matcher is None or not model.config.match_apart:
            return []
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        return [
            [p for n, p in trained if not n.startswith("matcher.")],
            [p for n, p in trained if n.startswith("matcher.")],
        ]

    def validate(self, model: Any) -> dict[str, float]:
        pred = score_arrays(
            model,
            self.tokenizer,
            self.val.images,
            list(self.val.frame["prompt"]),
            self.params.evaluate.batch_size,
        )
        labels = self.val.labels()
        self.fusion = None
        if not self.evidence_ready:  # the classifier is frozen: the validation evidence never changes
            self.val_evidence = evidence_arrays(
                model, self.val.images, list(self.val.frame["prompt"]), self.params.evaluate.batch_size
            )
            self.evidence_ready = True
        if self.val_evidence is not None:
            self.fusion = fit_fusion(pred[:, 2], self.val_evidence, labels[:, 2])
            pred[:, 2] = fuse(pred[:, 2], self.val_evidence, self.fusion)
        self.last_val = (pred, labels)
        out = {
            f"srcc_{d}": srcc(pred[:, i], labels[:, i])
            for i, d in enumerate(DIMENSIONS)
            if not np.isnan(labels[:, i]).any()
        }
        out["score"] = float(np.mean(list(out.values())))
        return out


def train_scorer(params: Params, protocol: str, resume: bool = False) -> Path:
    """Train the scorer for `protocol`; returns the folder holding the best weights."""
    out_dir = Path(params.train.out_dir) / protocol
    ckpt_dir = Path(params.train.checkpoint_dir) / "scorer" / protocol
    if not resume:
        for folder in (out_dir, ckpt_dir):
            shutil.rmtree(folder, ignore_errors=True)
    config = preset_config(params.model.preset, params.model.overrides)
    config.aux_classes = AUX_CLASSES if params.train.loss.aux > 0 else []
    config.locate = params.train.loss.locate > 0
    config.match = params.train.loss.match > 0
    config.match_apart = params.train.loss.match_apart
    config.train_size = params.train.crop
    config.input_size = params.prepare.image_size
    seed_everything(params.seed)  # same initial weights on every run and every rank
    task = ScorerTask(params, protocol, segmenter(config.text.get("segmenter", "rules")))
    tokenizer = build_tokenizer(config.text, corpus=task.corpus())
    model, tokenizer = build_scorer(config, tokenizer=tokenizer)
    task.tokenizer = tokenizer
    if params.train.fix_rate > 0:
        model.vision.freeze(params.train.fix_rate)
    best_dir = out_dir / "best"

    def on_best(module: Any, epoch: int) -> None:
        module.config.calibration = fit_calibration(*task.last_val)  # the 1-5 scale, fit on validation
        module.config.word_fusion = task.fusion  # saved with the weights; training reads the learned path
        save_scorer(module, tokenizer, best_dir)
        module.config.word_fusion = None
        write_text(best_dir / "epoch.json", json.dumps({"epoch": epoch}) + "\n")

    with tracked_run(
        params, f"scorer-{protocol}", out_dir, resume, {"protocol": protocol, "stage": "scorer"}
    ) as log:
        result = fit(
            model,
            task,
            params.train,
            out_dir,
            ckpt_dir,
            seed=params.seed,
            resume=resume,
            on_best=on_best,
            on_epoch_end=log,
        )
    write_text(
        out_dir / "result.json",
        json.dumps(
            {"protocol": protocol, "best_epoch": result.best_epoch, "best_val_score": result.best_score},
            indent=2,
        )
        + "\n",
    )
    return best_dir
