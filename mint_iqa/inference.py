"""Inference core: load a trained scorer once, score many (image, prompt) pairs in batches.

Images are decoded by a thread pool while the model runs (Pillow releases the GIL while decoding),
so both cores work. A bad image never stops a batch: its row gets NaN scores and a status message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mint_iqa.config import DIMENSIONS
from mint_iqa.io import DEFAULT_MAX_PIXELS, ImageError, ImageInput, load_image
from mint_iqa.models.registry import load_scorer
from mint_iqa.models.text import segmenter
from mint_iqa.progress import progress

OK = "ok"


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(img, dtype=np.float32, copy=True)).permute(2, 0, 1).div_(255.0)


def _decode(item: ImageInput, size: int | None, max_pixels: int) -> np.ndarray | str:
    try:
        img = load_image(item, max_pixels=max_pixels)
    except ImageError as exc:
        return str(exc)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), resample=3)  # bicubic; 3 == Image.Resampling.BICUBIC
    return np.asarray(img)


@dataclass
class Scorer:
    """A trained stage-1 scorer: `Scorer.load(folder).score(images, prompts)`."""

    model: Any
    tokenizer: Any
    device: torch.device
    input_size: int = 256
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu", input_size: int = 256) -> Scorer:
        model, tokenizer = load_scorer(folder)
        return cls(model.to(device), tokenizer, torch.device(device), input_size)

    @property
    def segment(self):
        return segmenter(self.model.config.text.get("segmenter", "rules"))

    @torch.no_grad()
    def forward_batch(self, images: list[np.ndarray], prompts: list[str]) -> np.ndarray:
        enc = self.tokenizer([self.segment(p) for p in prompts])
        x = torch.stack([to_tensor(i) for i in images]).to(self.device)
        out = self.model(x, enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
        return out.scores.float().cpu().numpy()

    def decode(self, images: Sequence[ImageInput]) -> list[np.ndarray | str]:
        """Decoded, resized uint8 arrays — or the error message — for each input, in order."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(lambda it: _decode(it, self.input_size, self.max_pixels), images))

    def _batches(self, images: Sequence[ImageInput], batch_size: int) -> Iterator[list[np.ndarray | str]]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            decoded = pool.map(lambda it: _decode(it, self.input_size, self.max_pixels), images)
            batch: list[np.ndarray | str] = []
            for item in decoded:
                batch.append(item)
                if len(batch) == batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def score(self, images: Sequence[ImageInput], prompts: Sequence[str] | str, batch_size: int = 32,
              show_progress: bool = True) -> pd.DataFrame:
        """One row per input, in order: quality, authenticity, correspondence, status ('ok' or the reason)."""
        prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        self.model.eval()
        rows: list[dict[str, Any]] = []
        bar = progress(total=len(images), desc="scoring", unit="img", disable=not show_progress or len(images) < 64)
        for batch in self._batches(images, batch_size):
            start = len(rows)
            good = [i for i, item in enumerate(batch) if not isinstance(item, str)]
            scores = self.forward_batch([batch[i] for i in good], [prompts[start + i] for i in good]) if good else []
            by_index = dict(zip(good, scores))
            for i, item in enumerate(batch):
                if i in by_index:
                    rows.append({**dict(zip(DIMENSIONS, map(float, by_index[i]))), "status": OK})
                else:
                    rows.append({**{d: np.nan for d in DIMENSIONS}, "status": item})
            bar.update(len(batch))
        bar.close()
        return pd.DataFrame(rows, columns=[*DIMENSIONS, "status"])


def score_arrays(model: Any, tokenizer: Any, images: Iterable[np.ndarray], prompts: list[str],
                 batch_size: int = 32) -> np.ndarray:
    """Scores of in-memory uint8 images (used by validation during training)."""
    scorer = Scorer(model, tokenizer, next(model.parameters()).device)
    out, batch, texts = [], [], []
    for img, prompt in zip(images, prompts):
        batch.append(img)
        texts.append(prompt)
        if len(batch) == batch_size:
            out.append(scorer.forward_batch(batch, texts))
            batch, texts = [], []
    if batch:
        out.append(scorer.forward_batch(batch, texts))
    return np.concatenate(out) if out else np.zeros((0, len(DIMENSIONS)))
