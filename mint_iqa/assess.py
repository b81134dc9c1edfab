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
from mint_iqa.inference import Scorer, check_prompt, screen
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
        self, images: list[ImageInput], prompts: list[str] | str, batch_size: int = 16, scale: str = "mos"
    ) -> pd.DataFrame:
        """One row per image: quality, authenticity, correspondence, status and an explanation per
        dimension."""
        prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        rows: list[dict[str, Any]] = []
        for start in range(0, len(images), batch_size):
            end = start + batch_size
            chunk = screen(self.scorer.decode(images[start:end]), prompts[start:end])
            good = [i for i, item in enumerate(chunk) if not isinstance(item, str)]
            texts: list[str] = []
            scores = np.zeros((0, 3))
            if good:
                with torch.no_grad():
                    texts, raw = explain_batch(
                        self.explainer,
                        self.texts,
                        [chunk[i] for i in good],
                        [prompts[start + i] for i in good],
                        [QUESTIONS["all"]] * len(good),
                        self.num_beams,
                    )
                scores = to_scale(raw, self.scorer.calibration, scale)
            by_index = {i: (t, s) for i, t, s in zip(good, texts, scores)}
            for i, item in enumerate(chunk):
                if i in by_index:
                    text, score = by_index[i]
                    parts = split_answer(text)
                    rows.append(
                        {
                            **dict(zip(DIMENSIONS, map(float, score))),
                            "status": OK,
                            **{f"explanation_{d}": parts[d] for d in DIMENSIONS},
                        }
                    )
                else:
                    rows.append(
                        {
                            **{d: np.nan for d in DIMENSIONS},
                            "status": item,
                            **{c: "" for c in EXPLANATION_COLUMNS},
                        }
                    )
        return pd.DataFrame(rows, columns=[*DIMENSIONS, "status", *EXPLANATION_COLUMNS])
