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
from mint_iqa.inference import MAP_COLUMNS, NO_MAPS, Scorer, check_prompt, map_columns, screen
from mint_iqa.io import OK, ImageInput
from mint_iqa.models.explaining import Texts, explain_batch
from mint_iqa.models.registry import load_assessor
from mint_iqa.models.text import segmenter


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
            answers, _, _ = explain_batch(
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
    ) -> pd.DataFrame:
        """One row per image: quality, authenticity, correspondence, status and an explanation per
        dimension; with `maps`, the damage maps of stage 1's pass (`Scorer.score`)."""
        prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        if maps and not self.scorer.has_maps:
            raise ValueError(NO_MAPS)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(images), batch_size):
            end = start + batch_size
            chunk = screen(self.scorer.decode(images[start:end]), prompts[start:end])
            good = [i for i, item in enumerate(chunk) if not isinstance(item, str)]
            texts: list[str] = []
            scores, grids = np.zeros((0, 3)), None
            if good:
                with torch.no_grad():
                    texts, raw, grids = explain_batch(
                        self.explainer,
                        self.texts,
                        [chunk[i] for i in good],
                        [prompts[start + i] for i in good],
                        [QUESTIONS["all"]] * len(good),
                        self.num_beams,
                    )
                scores = to_scale(raw, self.scorer.calibration, scale)
            by_index = {i: (t, s, k) for k, (i, t, s) in enumerate(zip(good, texts, scores))}
            for i, item in enumerate(chunk):
                if i in by_index:
                    text, score, k = by_index[i]
                    parts = split_answer(text)
                    row = {
                        **dict(zip(DIMENSIONS, map(float, score))),
                        "status": OK,
                        **{f"explanation_{d}": parts[d] for d in DIMENSIONS},
                    }
                else:
                    row = {
                        **{d: np.nan for d in DIMENSIONS},
                        "status": item,
                        **{c: "" for c in EXPLANATION_COLUMNS},
                    }
                if maps:
                    row.update(map_columns(grids[k] if i in by_index and grids is not None else None))
                rows.append(row)
        extra = MAP_COLUMNS if maps else ()
        return pd.DataFrame(rows, columns=[*DIMENSIONS, "status", *EXPLANATION_COLUMNS, *extra])
