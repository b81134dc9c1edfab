"""The explainer's words in and out: the instruction it reads, tokenising a batch, and generating answers
under the stage-1 constraints (the level each score states, the defect it names). Shared by training,
evaluation and inference (`mint_iqa.inference.assess`), so none of them needs the others to explain an
image."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from mint_iqa.config import DIMENSIONS
from mint_iqa.data.answers import GRADE_WORDS, INTRO, QUESTIONS, reasons, sentence
from mint_iqa.data.kinds import AUTHENTICITY, DEFECT_NAMES, QUALITY
from mint_iqa.models.decoding import CompleteAnswer, LevelConstraint, ReasonConstraint, score_grades
from mint_iqa.models.scorer import ScorerOutput
from mint_iqa.models.tensors import to_batch, to_device
from mint_iqa.models.words import word_masks

FAMILIES = {
    "quality": QUALITY,
    "authenticity": AUTHENTICITY,
}  # the dimensions whose reasons name a defect type
WORD_GRADE = {word: g for g, word in GRADE_WORDS.items()}


def instruction(question: str, segmented_prompt: str) -> str:
    """What the Q-Former and the language model read before answering."""
    return f"{question} prompt: {segmented_prompt} answer:"


class Texts:
    """Tokenises the pieces of an explainer batch (Q-Former and LM share the tokenizer for `tiny`)."""

    def __init__(
        self,
        scorer_tokenizer: Any,
        lm_tokenizer: Any,
        segment: Any,
        cfg: Any,
        level_weight: float = 1.0,
        words: bool = False,
    ):
        self.scorer_tok, self.lm_tok, self.segment, self.cfg = scorer_tokenizer, lm_tokenizer, segment, cfg
        self.level_weight, self.words = level_weight, words

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
        return torch.tensor(
            [[self.level_weight if i in levels else 1.0 for i in row] for row in answer_ids.tolist()]
        )

    @functools.cached_property
    def token_text(self) -> list[str]:
        return [self.lm_tok.decode([i]) for i in range(self.lm_tok.vocab_size)]

    def spell(self, text: str) -> list[int]:
        """The LM tokens of `text`, as an answer spells it."""
        return self.lm_tok([text], max_length=4 * len(text) + 2, bos=False, eos=False)["input_ids"][
            0
        ].tolist()

    @functools.cached_property
    def reason_cache(self) -> dict[tuple, torch.Tensor]:
        """Banned tokens per spelling state, shared by the reason constraints of every batch."""
        return {}

    @functools.cached_property
    def repeat_cache(self) -> dict[tuple, torch.Tensor]:
        """The same for the constraint that states each asked dimension once (and, with templates, in
        order)."""
        return {}

    def constraint(
        self, num_beams: int, aux_classes: list[str], questions: list[str] | None = None
    ) -> Callable[[Any], list[LogitsProcessor]]:
        """Decoding constraints built from the stage-1 outputs. `cfg.constrain_levels`: an answer states the
        stage-1 level of each dimension its question (one of `QUESTIONS`) asks about before it ends, and no
        other level. `cfg.constrain_reasons`: the reason is the template of that level naming the defect stage
        1 found."""
        asked = {
            text: [INTRO[d] for d in (DIMENSIONS if key == "all" else [key])]
            for key, text in QUESTIONS.items()
        }

        def build(stage1: Any) -> list[LogitsProcessor]:
            decode = shared_decode(self.lm_tok.decode)  # each constraint reads the same text at each step
            grades = score_grades(stage1.scores, self.cfg.level_cuts)
            out: list[LogitsProcessor] = []
            if self.cfg.constrain_levels:
                out.append(
                    LevelConstraint(
                        grades, self.level_ids, decode, num_beams, intros=[INTRO[dim] for dim in DIMENSIONS]
                    )
                )
                if questions is not None:
                    out.append(
                        CompleteAnswer(
                            [asked.get(q, []) for q in questions],
                            self.lm_tok.eos_id,
                            decode,
                            num_beams,
                            token_text=self.token_text,
                            cache=self.repeat_cache,
                            in_order=self.cfg.constrain_reasons,
                        )
                    )
            if self.cfg.constrain_reasons:
                allowed = allowed_sentences(grades, stage1.aux_logits, aux_classes)
                out.append(
                    ReasonConstraint(
                        allowed,
                        self.token_text,
                        decode,
                        num_beams,
                        cache=self.reason_cache,
                        eos_id=self.lm_tok.eos_id,
                        encode=self.spell,
                    )
                )
            return out

        return build

    def encode(
        self, prompts: list[str], questions: list[str], answers: list[str] | None = None
    ) -> dict[str, Any]:
        seg = [self.segment(p) for p in prompts]
        prompt = self.scorer_tok(seg)
        inst = [instruction(q, s) for q, s in zip(questions, seg)]
        qf = self.scorer_tok(inst, self.cfg.max_instruction_tokens)
        lm = self.lm_tok(inst, self.cfg.max_instruction_tokens, bos=True, eos=False)
        out = {
            "prompt_ids": prompt["input_ids"],
            "prompt_mask": prompt["attention_mask"],
            "qformer_ids": qf["input_ids"],
            "qformer_mask": qf["attention_mask"],
            "instruction_ids": lm["input_ids"],
            "instruction_mask": lm["attention_mask"],
        }
        if self.words:  # the scorer fuses word evidence into correspondence (`words.word_masks`)
            out["prompt_words"] = word_masks(prompts)
        if answers is not None:  # answers start with <bos> (as generation does) and end with <eos>
            ans = self.lm_tok(answers, self.cfg.max_answer_tokens, bos=True, eos=True)
            out.update(
                answer_ids=ans["input_ids"],
                answer_mask=ans["attention_mask"],
                answer_weights=self.weights(ans["input_ids"]),
            )
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


def allowed_sentences(
    grades: torch.Tensor, aux_logits: torch.Tensor | None, aux_classes: list[str]
) -> list[dict[int, list[str]]]:
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


def explain_batch(
    model: Any,
    texts: Texts,
    images: list[np.ndarray],
    prompts: list[str],
    questions: list[str],
    num_beams: int = 1,
) -> tuple[list[str], ScorerOutput]:
    """Generated answers for a batch of uint8 images, and the stage-1 outputs they were read from (scores,
    and the damage maps and ImageNet probabilities when stage 1 has those heads)."""
    weight = next(model.parameters())
    enc = to_device(texts.encode(prompts, questions), weight.device)
    x = to_batch(images).to(weight.device, weight.dtype)
    tok = texts.lm_tok
    constraint = texts.constraint(num_beams, model.scorer.config.aux_classes, questions)
    ids, stage1 = model.generate(
        x,
        **enc,
        bos_id=tok.bos_id,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        num_beams=num_beams,
        constraint=constraint,
    )
    return texts.decode(ids), stage1
