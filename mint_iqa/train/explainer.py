"""Step `train-explainer`: stage 2 of MINT-IQA for one protocol, through the same DeepSpeed engine.

Instruction data: every training sample (synthesised on the fly from the protocol's training references,
as in stage 1) comes with answers to the four questions; each item asks one of them. The stage-1 scorer
of the same protocol is loaded frozen and feeds its query embeddings back. Validation generates answers
for the validation split and scores the level words they state. Output: `<explain.out_dir>/<protocol>/
best/`, an assessor folder (`scorer/` + `explainer/`) that `mint_iqa.Assessor.load` reads.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from mint_iqa.config import DIMENSIONS, Params
from mint_iqa.data.answers import GRADE_WORDS, INTRO, QUESTIONS, reasons, sentence
from mint_iqa.data.degradations import AUTHENTICITY, DEFECT_NAMES, QUALITY
from mint_iqa.models.decoding import CompleteAnswer, LevelConstraint, ReasonConstraint, score_grades
from mint_iqa.inference import fit_level_cuts, score_arrays, to_batch
from mint_iqa.io import write_text
from mint_iqa.models.registry import build_explainer, explainer_config, load_scorer, save_assessor
from mint_iqa.models.text import segmenter
from mint_iqa.train.data import Split, TrainStream, loader, training_synthesiser
from mint_iqa.train.engine import fit, local_device, seed_everything, to_device, tracked_run

KEYS = list(QUESTIONS)
FAMILIES = {"quality": QUALITY, "authenticity": AUTHENTICITY}  # the dimensions whose reasons name a defect type
WORD_GRADE = {word: g for g, word in GRADE_WORDS.items()}


def instruction(question: str, segmented_prompt: str) -> str:
    """What the Q-Former and the language model read before answering."""
    return f"{question} prompt: {segmented_prompt} answer:"


class Texts:
    """Tokenises the pieces of an explainer batch (Q-Former and LM share the tokenizer for `tiny`)."""

    def __init__(self, scorer_tokenizer: Any, lm_tokenizer: Any, segment: Any, cfg: Any, level_weight: float = 1.0):
        self.scorer_tok, self.lm_tok, self.segment, self.cfg = scorer_tokenizer, lm_tokenizer, segment, cfg
        self.level_weight = level_weight

    @functools.cached_property
    def level_ids(self) -> dict[int, list[int]]:
        """LM token ids that spell each level word on their own, by grade (5: "excellent" ... 1: "bad")."""
        out: dict[int, list[int]] = {g: [] for g in GRADE_WORDS}
        for i in range(self.lm_tok.vocab_size):
            word = self.lm_tok.decode([i]).strip().lower()
            if word in WORD_GRADE:
                out[WORD_GRADE[word]].append(i)
        return out

    def weights(self, answer_ids: torch.Tensor) -> torch.Tensor:
        """Loss weight per answer token: `level_weight` for a level word, else 1."""
        levels = {i for ids in self.level_ids.values() for i in ids}
        return torch.tensor([[self.level_weight if i in levels else 1.0 for i in row] for row in answer_ids.tolist()])

    @functools.cached_property
    def token_text(self) -> list[str]:
        return [self.lm_tok.decode([i]) for i in range(self.lm_tok.vocab_size)]

    def spell(self, text: str) -> list[int]:
        """The LM tokens of `text`, as an answer spells it."""
        return self.lm_tok([text], max_length=4 * len(text) + 2, bos=False, eos=False)["input_ids"][0].tolist()

    @functools.cached_property
    def reason_cache(self) -> dict[tuple, torch.Tensor]:
        """Banned tokens per spelling state, shared by the reason constraints of every batch."""
        return {}

    @functools.cached_property
    def repeat_cache(self) -> dict[tuple, torch.Tensor]:
        """The same for the constraint that states each asked dimension once (and, with templates, in order)."""
        return {}

    def constraint(self, num_beams: int, aux_classes: list[str],
                   questions: list[str] | None = None) -> Callable[[Any], list[LogitsProcessor]]:
        """Decoding constraints built from the stage-1 outputs. `cfg.constrain_levels`: an answer states the
        stage-1 level of each dimension its question (one of `QUESTIONS`) asks about before it ends, and no
        other level. `cfg.constrain_reasons`: the reason is the template of that level naming the defect stage
        1 found."""
        asked = {text: [INTRO[d] for d in (DIMENSIONS if key == "all" else [key])]
                 for key, text in QUESTIONS.items()}

        def build(stage1: Any) -> list[LogitsProcessor]:
            decode = shared_decode(self.lm_tok.decode)  # each constraint reads the same text at each step
            grades = score_grades(stage1.scores, self.cfg.level_cuts)
            out: list[LogitsProcessor] = []
            if self.cfg.constrain_levels:
                out.append(LevelConstraint(grades, self.level_ids, decode, num_beams,
                                           intros=[INTRO[dim] for dim in DIMENSIONS]))
                if questions is not None:
                    out.append(CompleteAnswer([asked.get(q, []) for q in questions], self.lm_tok.eos_id,
                                              decode, num_beams, token_text=self.token_text,
                                              cache=self.repeat_cache, in_order=self.cfg.constrain_reasons))
            if self.cfg.constrain_reasons:
                allowed = allowed_sentences(grades, stage1.aux_logits, aux_classes)
                out.append(ReasonConstraint(allowed, self.token_text, decode, num_beams, cache=self.reason_cache,
                                            eos_id=self.lm_tok.eos_id, encode=self.spell))
            return out
        return build

    def encode(self, prompts: list[str], questions: list[str], answers: list[str] | None = None) -> dict[str, Any]:
        seg = [self.segment(p) for p in prompts]
        prompt = self.scorer_tok(seg)
        inst = [instruction(q, s) for q, s in zip(questions, seg)]
        qf = self.scorer_tok(inst, self.cfg.max_instruction_tokens)
        lm = self.lm_tok(inst, self.cfg.max_instruction_tokens, bos=True, eos=False)
        out = {"prompt_ids": prompt["input_ids"], "prompt_mask": prompt["attention_mask"],
               "qformer_ids": qf["input_ids"], "qformer_mask": qf["attention_mask"],
               "instruction_ids": lm["input_ids"], "instruction_mask": lm["attention_mask"]}
        if answers is not None:  # answers start with <bos> (as generation does) and end with <eos>
            ans = self.lm_tok(answers, self.cfg.max_answer_tokens, bos=True, eos=True)
            out.update(answer_ids=ans["input_ids"], answer_mask=ans["attention_mask"],
                       answer_weights=self.weights(ans["input_ids"]))
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [self.lm_tok.decode(row.tolist()) for row in ids]


def shared_decode(decode: Callable[[list[int]], str]) -> Callable[[list[int]], str]:
    """`decode`, remembered per token sequence: the constraints of one generation call decode each row's
    answer once per step between them, not once each."""
    seen: dict[tuple[int, ...], str] = {}

    def cached(ids: list[int]) -> str:
        key = tuple(ids)
        if key not in seen:
            seen[key] = decode(ids)
        return seen[key]
    return cached


def defect_targets(aux_logits: torch.Tensor, aux_classes: list[str]) -> list[dict[int, str]]:
    """Per image, the defect name stage 1 finds most likely for quality and for authenticity: the top class of
    the auxiliary head among that family's distortion types."""
    out: list[dict[int, str]] = [{} for _ in range(aux_logits.shape[0])]
    for name, family in FAMILIES.items():
        columns = [i for i, c in enumerate(aux_classes) if c in family and c in DEFECT_NAMES]
        if not columns:
            continue
        best = aux_logits[:, columns].argmax(dim=1).tolist()
        for row, k in enumerate(best):
            out[row][DIMENSIONS.index(name)] = DEFECT_NAMES[aux_classes[columns[k]]]
    return out


def allowed_sentences(grades: torch.Tensor, aux_logits: torch.Tensor | None,
                      aux_classes: list[str]) -> list[dict[int, list[str]]]:
    """Per image and dimension, the sentences that fit stage 1 (grades (B, 3), 1 ... 5): the stage-1 level
    and, for quality and authenticity, the template of that level naming the defect `defect_targets` picks
    (any defect of the family when the scorer has no defect head); for correspondence the flawless reason at
    level 5 and the generic one below it ("it does not fully show what the prompt asks for"): stage 1 scores
    how well the image matches its prompt, not which part does not, and a small LM left to say it in its own
    words wrote "... is poor: the image shows what the prompt asks for"."""
    targets = defect_targets(aux_logits, aux_classes) if aux_logits is not None else [{}] * len(grades)
    out: list[dict[int, list[str]]] = []
    for row, target in zip(grades.tolist(), targets):
        allowed = {}
        for i, (dim, g) in enumerate(zip(DIMENSIONS, row)):
            names: list[str] = []
            if dim in FAMILIES:
                names = [target[i]] if i in target else [DEFECT_NAMES[d] for d in FAMILIES[dim]]
            allowed[i] = [sentence(dim, g, r) for r in reasons(dim, g, names)]
        out.append(allowed)
    return out


def explain_batch(model: Any, texts: Texts, images: list[np.ndarray], prompts: list[str], questions: list[str],
                  num_beams: int = 1) -> tuple[list[str], np.ndarray]:
    """Generated answers and the stage-1 scores for a batch of uint8 images."""
    weight = next(model.parameters())
    enc = to_device(texts.encode(prompts, questions), weight.device)
    x = to_batch(images).to(weight.device, weight.dtype)
    tok = texts.lm_tok
    constraint = texts.constraint(num_beams, model.scorer.config.aux_classes, questions)
    ids, scores = model.generate(x, **enc, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id,
                                 num_beams=num_beams, constraint=constraint)
    return texts.decode(ids), scores.float().cpu().numpy()


def pick_question(pick: int, labels: list[float]) -> str:
    """Which question a training item asks. Most dimensions of most images are flawless, so uniform questions
    would teach the prior ("excellent") and little else: an image with a visible defect is asked about that
    dimension three times out of five, otherwise any of the four questions."""
    flawed = [d for d, label in zip(DIMENSIONS, labels) if 0 <= label < 0.8]
    if flawed and pick % 5 < 3:
        return flawed[(pick // 5) % len(flawed)]
    return KEYS[(pick // 5) % len(KEYS)]


class ExplainerTask:
    def __init__(self, params: Params, protocol: str, texts: Texts, val: Split):
        self.params, self.protocol, self.cfg, self.texts, self.val = params, protocol, params.train, texts, val
        self.fixed = Split.load(Path(params.prepare.out_dir), protocol, "train")
        self.synth = training_synthesiser(params, self.fixed, protocol)

    def batches(self, epoch: int, start_step: int) -> Iterator[dict[str, Any]]:
        cfg, e = self.cfg, self.params.explain
        refs = list(range(len(self.synth.refs))) if self.synth else []
        stream = TrainStream(self.synth, refs, self.fixed, self.params.seed + 1, epoch,
                             e.steps_per_epoch * cfg.batch_size, cfg.synthetic_fraction, cfg.crop, cfg.reuse)
        for batch in loader(stream, start_step, cfg):
            keys = [pick_question(pick, labels) for pick, labels in zip(batch["picks"], batch["labels"].tolist())]
            answers = [a[k] for a, k in zip(batch["answers"], keys)]
            yield {"images": batch["images"],
                   **self.texts.encode(batch["prompts"], [QUESTIONS[k] for k in keys], answers)}

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
            texts, s = explain_batch(model, self.texts, self.val.images[start:end], prompts,
                                     [QUESTIONS["all"]] * (end - start))
            answers += texts
            scores.append(s)
        m = explanation_metrics(self.val.frame.iloc[:n], answers, np.concatenate(scores), model.config.level_cuts)
        out = {f"level_acc_{d}": v for d, v in m["level_accuracy"].items()}
        out.update({k: m[k] for k in ("rouge_l", "defect_mention_accuracy", "consistency")
                    if m[k] is not None})
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
    val = Split.load(Path(params.prepare.out_dir), protocol, "val")
    if e.fit_levels:  # where stage 1's scores turn into level words: cuts that fit its validation outputs
        pred = score_arrays(scorer, tokenizer, val.images, list(val.frame["prompt"]), params.evaluate.batch_size)
        config.level_cuts = fit_level_cuts(pred, val.labels())
    seed_everything(params.seed + 1)
    model, lm_tokenizer = build_explainer(scorer, tokenizer, config)
    texts = Texts(tokenizer, lm_tokenizer, segmenter(scorer.config.text.get("segmenter", "rules")), config,
                  e.level_weight)
    task = ExplainerTask(params, protocol, texts, val)
    best_dir = out_dir / "best"

    def on_best(module: Any, epoch: int) -> None:
        save_assessor(module, tokenizer, best_dir)
        write_text(best_dir / "epoch.json", json.dumps({"epoch": epoch}) + "\n")

    cfg = params.train.model_copy(update={"epochs": e.epochs, "steps_per_epoch": e.steps_per_epoch, "lr": e.lr,
                                          "warmup_steps": e.warmup_steps})
    tags = {"protocol": protocol, "stage": "explainer", "feedback": str(e.feedback), "evidence": str(e.evidence),
            "constrain_levels": str(e.constrain_levels), "constrain_reasons": str(e.constrain_reasons),
            "fit_levels": str(e.fit_levels)}
    with tracked_run(params, f"explainer-{protocol}", out_dir, resume, tags) as log:
        result = fit(model, task, cfg, out_dir, ckpt_dir, seed=params.seed + 1, resume=resume, on_best=on_best,
                     on_epoch_end=log)
    write_text(out_dir / "result.json", json.dumps({"protocol": protocol, "best_epoch": result.best_epoch,
                                                    "best_val_score": result.best_score}, indent=2) + "\n")
    return best_dir
