"""Step `train-explainer`: stage 2 of MINT-IQA for one protocol, through the same DeepSpeed engine.

Instruction data: every training sample (synthesised on the fly from the protocol's training references,
as in stage 1) comes with answers to the four questions; each item asks one of them. The stage-1 scorer
of the same protocol is loaded frozen and feeds its query embeddings back. Validation generates answers
for the validation split and scores the level words they state. Output: `<explain.out_dir>/<protocol>/
best/`, an assessor folder (`scorer/` + `explainer/`) that `mint_iqa.Assessor.load` reads.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mint_iqa.config import DIMENSIONS, FLAWLESS, Params
from mint_iqa.data.answers import QUESTIONS, grade
from mint_iqa.inference.scoring import score_arrays
from mint_iqa.io import write_text
from mint_iqa.models.explaining import Texts, explain_batch
from mint_iqa.models.factory import build_explainer, explainer_config, load_scorer, save_assessor
from mint_iqa.models.text import segmenter
from mint_iqa.train.data import Split, TrainStream, loader, training_synthesiser
from mint_iqa.train.engine import fit, local_device, seed_everything, tracked_run

KEYS = list(QUESTIONS)


def pick_question(pick: int, labels: list[float]) -> str:
    """Which question a training item asks. Most dimensions of most images are flawless, so uniform questions
    would teach the prior ("excellent") and little else: an image with a visible defect is asked about that
    dimension three times out of five, otherwise any of the four questions."""
    flawed = [d for d, label in zip(DIMENSIONS, labels) if 0 <= label < FLAWLESS]
    if flawed and pick % 5 < 3:
        return flawed[(pick // 5) % len(flawed)]
    return KEYS[(pick // 5) % len(KEYS)]


def _accuracy_cuts(x: np.ndarray, g: np.ndarray, grades: int = 5) -> list[float]:
    """The `grades - 1` increasing thresholds on `x` that grade the most items right (`g`: 1 ... grades),
    by dynamic programming over the sorted scores; each threshold lies halfway between two neighbours (one
    below or above all of them where a grade gets no item)."""
    order = np.argsort(x, kind="stable")
    xs, n = x[order], len(x)
    right = np.concatenate(
        [np.zeros((grades, 1)), np.cumsum([g[order] == k for k in range(1, grades + 1)], 1)], 1
    )
    best, split = right[0].copy(), np.zeros((grades, n + 1), dtype=int)
    for k in range(1, grades):  # best[i]: most right among the first i items with grades 1 ... k + 1
        gain = best - right[k]  # items before j graded <= k, items j ... i - 1 graded k + 1
        split[k] = [int(np.argmax(gain[: i + 1])) for i in range(n + 1)]
        best = gain[split[k]] + right[k]
    cuts, i = [], n
    for k in range(grades - 1, 0, -1):
        i = split[k][i]
        cuts.append(xs[0] - 1.0 if i == 0 else xs[-1] + 1.0 if i == n else (xs[i - 1] + xs[i]) / 2)
    return [float(c) for c in cuts[::-1]]


def fit_level_cuts(
    pred: np.ndarray, labels: np.ndarray, min_items: int = 50, seed: int = 0
) -> dict[str, list[float]]:
    """Per dimension, the four stage-1 score thresholds between the five levels that state the level of the
    most validation images right. The label cuts (0.2 ... 0.8) assume the head's outputs sit on the label
    scale; a head that scores flawless images 0.85 +- 0.04 would call many of them "good". Fitted cuts are
    kept only where they also win on held-out images (two-fold: fit on one half of the validation images,
    count on the other, and back); elsewhere, and below `min_items` labels, the label cuts stay."""
    out = {}
    for i, dim in enumerate(DIMENSIONS):
        known = ~np.isnan(labels[:, i]) & (labels[:, i] >= 0)
        if known.sum() < min_items:
            continue
        x, g = pred[known, i], np.array([grade(v) for v in labels[known, i]])
        half = np.random.default_rng(seed).permutation(len(x)) % 2 == 0
        held_out = sum(
            int(
                (
                    1 + np.searchsorted(_accuracy_cuts(x[~fold], g[~fold]), x[fold], side="right") == g[fold]
                ).sum()
            )
            for fold in (half, ~half)
        )
        if held_out > int((np.array([grade(v) for v in x]) == g).sum()):
            out[dim] = _accuracy_cuts(x, g)
    return out


class ExplainerTask:
    def __init__(self, params: Params, protocol: str, texts: Texts, val: Split):
        self.params, self.protocol, self.cfg, self.texts, self.val = (
            params,
            protocol,
            params.train,
            texts,
            val,
        )
        self.fixed = Split.load(Path(params.prepare.out_dir), protocol, "train", params.prepare.image_size)
        self.synth = training_synthesiser(params, self.fixed, protocol)

    def batches(self, epoch: int, start_step: int) -> Iterator[dict[str, Any]]:
        cfg, e = self.cfg, self.params.explain
        refs = list(range(len(self.synth.refs))) if self.synth else []
        stream = TrainStream(
            self.synth,
            refs,
            self.fixed,
            self.params.seed + 1,
            epoch,
            e.steps_per_epoch * cfg.batch_size,
            cfg.synthetic_fraction,
            cfg.crop,
            cfg.reuse,
        )
        for batch in loader(stream, start_step, cfg):
            keys = [
                pick_question(pick, labels) for pick, labels in zip(batch["picks"], batch["labels"].tolist())
            ]
            answers = [a[k] for a, k in zip(batch["answers"], keys)]
            yield {
                "images": batch["images"],
                **self.texts.encode(batch["prompts"], [QUESTIONS[k] for k in keys], answers),
            }

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(**batch)
        return out.loss, {"loss": out.loss.item()}

    def validate(self, model: Any) -> dict[str, float]:
        """Explanation metrics of the 'all three' answer on (up to `explain.val_images`) validation images.
        The score that picks the best epoch adds ROUGE-L to the level accuracies: with constrained decoding
        the level words follow stage 1 whatever the language model learnt, the rest of the answer does not."""
        from mint_iqa.evaluate import explanation_metrics

        n = min(len(self.val.images), self.params.explain.val_images)
        answers, scores = [], []
        for start in range(0, n, 32):
            end = min(n, start + 32)
            prompts = list(self.val.frame["prompt"].iloc[start:end])
            texts, stage1 = explain_batch(
                model, self.texts, self.val.images[start:end], prompts, [QUESTIONS["all"]] * (end - start)
            )
            answers += texts
            scores.append(stage1.scores.float().cpu().numpy())
        m = explanation_metrics(
            self.val.frame.iloc[:n], answers, np.concatenate(scores), model.config.level_cuts
        )
        out = {f"level_acc_{d}": v for d, v in m["level_accuracy"].items()}
        out.update(
            {k: m[k] for k in ("rouge_l", "defect_mention_accuracy", "consistency") if m[k] is not None}
        )
        out["score"] = float(np.mean([*m["level_accuracy"].values(), m["rouge_l"]]))
        return out


def train_explainer(params: Params, protocol: str, resume: bool = False) -> Path:
    """Train the explainer of `protocol` over that protocol's trained scorer; returns the assessor folder."""
    e = params.explain
    out_dir, ckpt_dir = Path(e.out_dir) / protocol, Path(params.train.checkpoint_dir) / "explainer" / protocol
    if not resume:
        for folder in (out_dir, ckpt_dir):
            shutil.rmtree(folder, ignore_errors=True)
    scorer, tokenizer = load_scorer(Path(params.train.out_dir) / protocol / "best")
    scorer = scorer.to(local_device())  # the level cuts below score the validation split with it
    config = explainer_config(scorer.config.preset, params.model.explainer)
    config.feedback, config.evidence = e.feedback, e.evidence
    config.constrain_levels, config.constrain_reasons = e.constrain_levels, e.constrain_reasons
    val = Split.load(Path(params.prepare.out_dir), protocol, "val", params.prepare.image_size)
    if e.fit_levels:  # where stage 1's scores turn into level words: cuts that fit its validation outputs
        pred = score_arrays(
            scorer, tokenizer, val.images, list(val.frame["prompt"]), params.evaluate.batch_size
        )
        config.level_cuts = fit_level_cuts(pred, val.labels())
    seed_everything(params.seed + 1)
    model, lm_tokenizer = build_explainer(scorer, tokenizer, config)
    texts = Texts(
        tokenizer,
        lm_tokenizer,
        segmenter(scorer.config.text.get("segmenter", "rules")),
        config,
        e.level_weight,
        words=bool(scorer.config.word_fusion),
    )
    task = ExplainerTask(params, protocol, texts, val)
    best_dir = out_dir / "best"

    def on_best(module: Any, epoch: int) -> None:
        save_assessor(module, tokenizer, best_dir)
        write_text(best_dir / "epoch.json", json.dumps({"epoch": epoch}) + "\n")

    cfg = params.train.model_copy(
        update={
            "epochs": e.epochs,
            "steps_per_epoch": e.steps_per_epoch,
            "lr": e.lr,
            "warmup_steps": e.warmup_steps,
        }
    )
    switches = ("feedback", "evidence", "constrain_levels", "constrain_reasons", "fit_levels")
    tags = {"protocol": protocol, "stage": "explainer", **{k: str(getattr(e, k)) for k in switches}}
    with tracked_run(params, f"explainer-{protocol}", out_dir, resume, tags) as log:
        result = fit(
            model,
            task,
            cfg,
            out_dir,
            ckpt_dir,
            seed=params.seed + 1,
            resume=resume,
            on_best=on_best,
            on_epoch_end=log,
        )
    summary = {"protocol": protocol, "best_epoch": result.best_epoch, "best_val_score": result.best_score}
    write_text(out_dir / "result.json", json.dumps(summary, indent=2) + "\n")
    return best_dir
