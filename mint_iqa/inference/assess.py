"""One API for both stages: `Assessor.load(folder).assess(images, prompts)` -> three scores and one
explanation per dimension, batched, models loaded once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mint_iqa.calibration import to_scale
from mint_iqa.config import DIMENSIONS, EXPLANATION_COLUMNS
from mint_iqa.data.answers import QUESTIONS, split_answer
from mint_iqa.inference.scoring import (
    MAP_COLUMNS,
    NO_MAPS,
    NO_WORDS,
    Scorer,
    check_prompt,
    map_columns,
    screen,
)
from mint_iqa.io import OK, ImageInput
from mint_iqa.models.explaining import Texts, explain_batch
from mint_iqa.models.factory import load_assessor
from mint_iqa.models.scorer import damage_grid
from mint_iqa.models.text import segmenter
from mint_iqa.models.words import support, unsupported, unsupported_sentence

FAILED = {  # the cells of a row that could not be scored
    **dict.fromkeys(DIMENSIONS, np.nan),
    **dict.fromkeys(EXPLANATION_COLUMNS, ""),
    **dict.fromkeys(MAP_COLUMNS),
    "words": None,
}


@dataclass
class Assessor:
    explainer: Any
    texts: Texts
    scorer: Scorer
    num_beams: int = 1

    @classmethod
    def load(
        cls,
        folder: str | Path,
        device: str = "cpu",
        num_beams: int = 1,
        dtype: torch.dtype = torch.float32,
        scorer: Scorer | None = None,
    ) -> Assessor:
        """The assessor in `folder` (`scorer/` + `explainer/`); `scorer`: its stage 1, when already loaded."""
        model, lm_tokenizer = load_assessor(folder)
        if scorer is not None:
            device, dtype = scorer.device, scorer.dtype
        model = model.to(device=device, dtype=dtype)
        scorer = scorer or Scorer.load(Path(folder) / "scorer", device=device, dtype=dtype)
        seg = segmenter(model.scorer.config.text.get("segmenter", "rules"))
        words = bool(model.scorer.config.word_fusion)
        texts = Texts(scorer.tokenizer, lm_tokenizer, seg, model.config, words=words)
        return cls(model, texts, scorer, num_beams)

    def explain(self, image: ImageInput, prompt: str, question: str | None = None) -> str:
        """The answer to `question` (default: all three perspectives) about one image."""
        [decoded] = self.scorer.decode([image])
        if isinstance(decoded, str):
            raise ValueError(decoded)
        problem = check_prompt(prompt)
        if problem:
            raise ValueError(problem)
        with torch.no_grad():
            answers, _ = explain_batch(
                self.explainer,
                self.texts,
                [decoded],
                [prompt],
                [question or QUESTIONS["all"]],
                self.num_beams,
            )
        return answers[0]

    def assess(
        self,
        images: list[ImageInput],
        prompts: list[str] | str,
        batch_size: int = 16,
        scale: str = "mos",
        maps: bool = False,
        words: bool = False,
    ) -> pd.DataFrame:
        """One row per image: quality, authenticity, correspondence, status and an explanation per
        dimension; with `maps` and `words`, also the damage maps and the prompt words' support of stage 1's
        pass (as `Scorer.score` gives them). The correspondence explanation ends by naming the prompt's
        subject when it is not recognised in the image (`words.unsupported`), if the tower can tell."""
        prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        if maps and not self.scorer.has_maps:
            raise ValueError(NO_MAPS)
        if words and not self.scorer.has_words:
            raise ValueError(NO_WORDS)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(images), batch_size):
            chunk = screen(
                self.scorer.decode(images[start : start + batch_size]), prompts[start : start + batch_size]
            )
            good = [i for i, item in enumerate(chunk) if not isinstance(item, str)]
            texts = [prompts[start + i] for i in good]
            answered = iter(self._answer([chunk[i] for i in good], texts, scale) if good else [])
            for i, item in enumerate(chunk):
                rows.append(next(answered) if i in good else {**FAILED, "status": item})
        columns = [*DIMENSIONS, "status", *EXPLANATION_COLUMNS, *(MAP_COLUMNS if maps else ())]
        return pd.DataFrame(rows, columns=[*columns, *(["words"] if words else [])])

    def _answer(self, images: list[np.ndarray], prompts: list[str], scale: str) -> list[dict[str, Any]]:
        """Result rows for decoded images: scores, explanations, and the maps and word support stage 1
        read on the way."""
        with torch.no_grad():
            texts, stage1 = explain_batch(
                self.explainer, self.texts, images, prompts, [QUESTIONS["all"]] * len(images), self.num_beams
            )
        scores = to_scale(stage1.scores.float().cpu().numpy(), self.scorer.calibration, scale)
        grids = damage_grid(stage1.where_logits).cpu().numpy() if stage1.where_logits is not None else None
        probs = stage1.class_probs.float().cpu().numpy() if stage1.class_probs is not None else None
        rows = []
        for k, (text, score, prompt) in enumerate(zip(texts, scores, prompts)):
            parts = split_answer(text)
            found = support(probs[k], prompt) if probs is not None else None
            if found and unsupported(found, prompt):
                parts["correspondence"] = (
                    f"{parts['correspondence']} {unsupported_sentence(unsupported(found, prompt))}"
                )
            rows.append(
                {
                    **dict(zip(DIMENSIONS, map(float, score))),
                    "status": OK,
                    **{f"explanation_{d}": parts[d].strip() for d in DIMENSIONS},
                    **map_columns(grids[k] if grids is not None else None),
                    "words": found,
                }
            )
        return rows
