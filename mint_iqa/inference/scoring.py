"""Inference core: load a trained scorer once, score many (image, prompt) pairs in batches.

Scoring runs in `workers` threads, each decoding a batch and passing it through the model with its
share of the CPU's threads (Pillow and torch release the GIL), so decoding overlaps the model and a
model on one thread per core wastes no time synchronising. A bad image or prompt never stops a batch:
its row gets NaN scores and a status message.

**Score scale.** By default scores are on the calibrated 1-5 scale of `mint_iqa.calibration` (5 =
pristine / fully faithful to the prompt; strictly increasing in the raw outputs, so it never ties two
images the heads tell apart). `scale="raw"` returns the head outputs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mint_iqa.calibration import check_scale, to_scale
from mint_iqa.config import BATCH_SIZE, DIMENSIONS
from mint_iqa.io import DEFAULT_MAX_PIXELS, OK, ImageError, ImageInput, load_image
from mint_iqa.models.factory import load_scorer
from mint_iqa.models.scorer import damage_grid
from mint_iqa.models.tensors import to_batch
from mint_iqa.models.text import segmenter
from mint_iqa.models.words import evidence, support, word_masks
from mint_iqa.progress import progress

_SHARE_LOCK = threading.Lock()
_SHARE = {"active": 0, "before": 1}  # concurrent `Scorer.score` calls and torch's thread count before them
MAX_PROMPT_CHARS = 2000
MAP_COLUMNS = ("quality_map", "authenticity_map")
NO_MAPS = "this model has no damage-map head (it was trained with train.loss.locate: 0)"
NO_WORDS = "this model's tower has no ImageNet classifier to read prompt words with (preset lite0 has one)"


@dataclass
class Reading:
    """What one pass of the scorer gives for a batch of images: raw scores (B, 3), and the damage maps
    (per image (rows, cols, 2), `damage_grid`) and ImageNet probabilities (B, 1000) when the model has the
    heads for them."""

    scores: np.ndarray
    maps: list[np.ndarray] | None
    probs: np.ndarray | None


def map_columns(grid: np.ndarray | None) -> dict[str, np.ndarray | None]:
    """A (rows, cols, 2) damage map as the `quality_map` / `authenticity_map` cells of a result row."""
    if grid is None:
        return dict.fromkeys(MAP_COLUMNS)
    return {name: np.ascontiguousarray(grid[..., k], np.float32) for k, name in enumerate(MAP_COLUMNS)}


def screen(decoded: list[np.ndarray | str], prompts: Sequence[str]) -> list[np.ndarray | str]:
    """Decoded images (or their error messages) with an unusable prompt turned into its error message."""
    return [
        item if isinstance(item, str) else check_prompt(prompt) or item
        for item, prompt in zip(decoded, prompts)
    ]


def check_prompt(prompt: object) -> str | None:
    """Why a prompt cannot be used (None when it can)."""
    if not isinstance(prompt, str):
        return f"prompt must be text, got {type(prompt).__name__}"
    if not prompt.strip():
        return "prompt is empty (correspondence is judged against the prompt the image was made from)"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}"
    return None


@dataclass
class Views:
    """A large image as the model reads it: the whole, resized, and native-resolution windows (with their
    top-left corners `spots` in the native image of `shape` (h, w))."""

    whole: np.ndarray
    windows: list[np.ndarray]
    spots: list[tuple[int, int]] = field(default_factory=list)
    shape: tuple[int, int] = (0, 0)


def window_spots(h: int, w: int, size: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners of up to `count` windows of `size` px spread evenly over a grid of an h x w image."""
    side = int(np.ceil(np.sqrt(count)))
    ys = np.linspace(0, h - size, side).round().astype(int)
    xs = np.linspace(0, w - size, side).round().astype(int)
    return list(dict.fromkeys((int(y), int(x)) for y in ys for x in xs))[:count]


def native_windows(img: np.ndarray, size: int, count: int) -> list[np.ndarray]:
    """Up to `count` windows of `size` px at native resolution, spread evenly over a grid of the image."""
    spots = window_spots(*img.shape[:2], size, count)
    return [np.ascontiguousarray(img[y : y + size, x : x + size]) for y, x in spots]


def stitch(views: Views, whole: np.ndarray, windows: list[np.ndarray]) -> np.ndarray:
    """A large image's damage map (rows, cols, 2) at its windows' cell size: the windows' maps where they
    read the native pixels (averaged where they overlap), the whole image's map, resized, elsewhere."""
    g = windows[0].shape[0]
    cell = views.windows[0].shape[0] / g
    rows, cols = (max(1, round(n / cell)) for n in views.shape)
    grid = torch.from_numpy(np.ascontiguousarray(whole)).permute(2, 0, 1)[None]
    out = F.interpolate(grid, size=(rows, cols), mode="bilinear", align_corners=False)[0]
    out = out.permute(1, 2, 0).numpy().copy()
    total, count = np.zeros_like(out), np.zeros((rows, cols, 1), np.float32)
    for (y, x), part in zip(views.spots, windows):
        r, c = round(y / cell), round(x / cell)
        h, w = min(g, rows - r), min(g, cols - c)
        total[r : r + h, c : c + w] += part[:h, :w]
        count[r : r + h, c : c + w] += 1
    return np.where(count > 0, total / np.maximum(count, 1), out).astype(np.float32)


def _decode(
    item: ImageInput, size: int | None, max_pixels: int, windows: int = 0
) -> np.ndarray | Views | str:
    """The image resized to `size` (or the error message); with `windows` and an image at least 1.5 times
    `size` on its short side, also that many native-resolution windows (`Views`)."""
    try:
        img = load_image(item, max_pixels=max_pixels)
    except ImageError as exc:
        return str(exc)
    native = np.asarray(img) if windows and size and min(img.size) >= 1.5 * size else None
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), resample=3)  # bicubic; 3 == Image.Resampling.BICUBIC
    if native is not None:
        spots = window_spots(*native.shape[:2], size, windows)
        return Views(np.asarray(img), native_windows(native, size, windows), spots, native.shape[:2])
    return np.asarray(img)


def resolve_device(device: str) -> str:
    """`auto`: the first CUDA device when there is one, else the CPU; any other name as given."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Scorer:
    """A trained stage-1 scorer: `Scorer.load(folder).score(images, prompts)`."""

    model: Any
    tokenizer: Any
    device: torch.device
    input_size: int | None = None  # px images are read at; None: the model's own (`ScorerConfig.input_size`)
    max_pixels: int = DEFAULT_MAX_PIXELS
    dtype: torch.dtype = torch.float32
    workers: int = 2  # threads that each decode a batch and score it
    micro_batch: int = 4  # images per vision-tower pass on CPU: activations stay in cache (faster per image)
    windows: int = 4  # native-resolution windows that judge quality and authenticity of large images

    @classmethod
    def load(
        cls,
        folder: str | Path,
        device: str = "cpu",
        input_size: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Scorer:
        model, tokenizer = load_scorer(folder)
        model = model.to(device=device, dtype=dtype)
        return cls(model, tokenizer, torch.device(device), input_size, dtype=dtype)

    def __post_init__(self) -> None:
        self.input_size = self.input_size or self.model.config.input_size

    @property
    def calibration(self) -> dict[str, list[float]]:
        return self.model.config.calibration

    @property
    def segment(self):
        return segmenter(self.model.config.text.get("segmenter", "rules"))

    @property
    def has_maps(self) -> bool:
        """Whether the model has the per-patch damage head that `score(..., maps=True)` reads."""
        return self.model.locate is not None

    @property
    def has_words(self) -> bool:
        """Whether the tower has the ImageNet classifier that `score(..., words=True)` reads."""
        return getattr(self.model.vision, "head", None) is not None

    def forward_batch(self, images: list[np.ndarray], prompts: list[str]) -> np.ndarray:
        return self.read(images, prompts).scores

    @torch.no_grad()
    def read(self, images: list[np.ndarray], prompts: list[str]) -> Reading:
        """One pass over a batch of decoded images: raw scores, and the damage maps and ImageNet
        probabilities when the model has the heads for them."""
        enc = self.tokenizer([self.segment(p) for p in prompts])
        x = to_batch(images).to(self.device, self.dtype)
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        # On CPU the tower runs on micro-batches (its activations stay in cache); the Q-Former and heads,
        # many small matrix products, run once on the whole batch. An accelerator takes the batch whole.
        step = self.micro_batch if self.device.type == "cpu" else len(x)
        parts = [self.model.encode(x[i : i + step]) for i in range(0, len(x), step)]
        feats = torch.cat([f for f, _ in parts])
        probs = torch.cat([p for _, p in parts]) if parts[0][1] is not None else None
        words = word_masks(prompts) if probs is not None and self.model.config.word_fusion else None
        out = self.model(x, ids, mask, feats=feats, probs=probs, words=words)
        return Reading(
            out.scores.float().cpu().numpy(),
            list(damage_grid(out.where_logits).cpu().numpy()) if out.where_logits is not None else None,
            probs.float().cpu().numpy() if probs is not None else None,
        )

    def decode(self, images: Sequence[ImageInput]) -> list[np.ndarray | str]:
        """Decoded, resized uint8 arrays — or the error message — for each input, in order (whole images:
        what the explainer reads)."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda it: _decode(it, self.input_size, self.max_pixels), images))

    def _score_batch(self, images: Sequence[ImageInput], prompts: Sequence[str]) -> tuple[list[str], Reading]:
        """Status ('ok' or the reason) per item, and the reading of the 'ok' items, in order."""
        batch = screen(
            [_decode(it, self.input_size, self.max_pixels, self.windows) for it in images], prompts
        )
        good = [i for i, item in enumerate(batch) if not isinstance(item, str)]
        if not good:
            return list(batch), Reading(np.zeros((0, len(DIMENSIONS))), [], None)
        reading = self.score_views([batch[i] for i in good], [prompts[i] for i in good])
        return [OK if i in good else item for i, item in enumerate(batch)], reading

    def score_views(self, items: list[np.ndarray | Views], prompts: list[str]) -> Reading:
        """The reading of decoded items. Defects are applied, and seen, at the pixel scale they were made
        at: a large image's quality and authenticity are the mean over its native-resolution windows
        (resizing it whole would hide its noise, compression and grids), and its map is stitched from
        theirs (`stitch`); correspondence and the ImageNet classes read the whole image."""
        reading = self.read([v.whole if isinstance(v, Views) else v for v in items], prompts)
        owners = [i for i, v in enumerate(items) if isinstance(v, Views) for _ in v.windows]
        if owners:
            crops = [w for v in items if isinstance(v, Views) for w in v.windows]
            windows = self.read(crops, [prompts[i] for i in owners])
            for i in dict.fromkeys(owners):
                mine = np.flatnonzero(np.array(owners) == i)
                reading.scores[i, :2] = windows.scores[mine, :2].mean(axis=0)
                if reading.maps is not None and windows.maps is not None:
                    reading.maps[i] = stitch(items[i], reading.maps[i], [windows.maps[k] for k in mine])
        return reading

    @contextmanager
    def _cpu_share(self) -> Iterator[None]:
        """On CPU, each worker's model calls get threads // workers intra-op threads. torch's thread count
        is process-wide: the first of any concurrent `score` calls lowers it, the last one restores it."""
        if self.device.type != "cpu" or self.workers <= 1:
            yield
            return
        with _SHARE_LOCK:
            if _SHARE["active"] == 0:
                _SHARE["before"] = torch.get_num_threads()
                torch.set_num_threads(max(1, _SHARE["before"] // self.workers))
            _SHARE["active"] += 1
        try:
            yield
        finally:
            with _SHARE_LOCK:
                _SHARE["active"] -= 1
                if _SHARE["active"] == 0:
                    torch.set_num_threads(_SHARE["before"])

    def score(
        self,
        images: Sequence[ImageInput],
        prompts: Sequence[str] | str,
        batch_size: int = BATCH_SIZE,
        show_progress: bool = True,
        scale: str = "mos",
        maps: bool = False,
        words: bool = False,
    ) -> pd.DataFrame:
        """One row per input, in order: quality, authenticity, correspondence, status ('ok' or the reason);
        with `maps`, also `quality_map` and `authenticity_map`: (rows, cols) float32 arrays of how visibly
        damaged each cell of the image is, in [0, 1]; with `words`, `words`: (word, support in [0, 1]) for
        each nameable word of the prompt (`mint_iqa.models.words`). All from the same pass; None for
        failed rows."""
        prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        check_scale(scale)  # before any work
        if maps and not self.has_maps:
            raise ValueError(NO_MAPS)
        if words and not self.has_words:
            raise ValueError(NO_WORDS)
        self.model.eval()
        rows: list[dict[str, Any]] = []
        bar = progress(
            total=len(images), desc="scoring", unit="img", disable=not show_progress or len(images) < 64
        )
        starts = range(0, len(images), batch_size)
        with self._cpu_share(), ThreadPoolExecutor(max_workers=self.workers) as pool:
            done = pool.map(
                lambda i: self._score_batch(images[i : i + batch_size], prompts[i : i + batch_size]), starts
            )
            for start, (statuses, reading) in zip(starts, done):  # in input order
                scores, k = to_scale(reading.scores, self.calibration, scale), 0
                for j, status in enumerate(statuses):
                    ok = status == OK
                    values = map(float, scores[k]) if ok else [np.nan] * len(DIMENSIONS)
                    rows.append({**dict(zip(DIMENSIONS, values)), "status": status})
                    if maps:
                        rows[-1].update(map_columns(reading.maps[k] if ok else None))
                    if words:
                        rows[-1]["words"] = support(reading.probs[k], prompts[start + j]) if ok else None
                    k += ok
                bar.update(len(statuses))
        bar.close()
        extra = [*(MAP_COLUMNS if maps else ()), *(["words"] if words else [])]
        return pd.DataFrame(rows, columns=[*DIMENSIONS, "status", *extra])


@torch.no_grad()
def evidence_arrays(
    model: Any, images: Sequence[np.ndarray], prompts: list[str], batch_size: int = BATCH_SIZE
) -> np.ndarray | None:
    """Word evidence (`mint_iqa.models.words.evidence`; NaN: no nameable word) of in-memory uint8 images,
    or None for a tower without an ImageNet classifier."""
    weight, out = next(model.parameters()), []
    for i in range(0, len(images), batch_size):
        probs = model.encode(to_batch(images[i : i + batch_size]).to(weight.device, weight.dtype))[1]
        if probs is None:
            return None
        out.append(evidence(probs, word_masks(prompts[i : i + batch_size])).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def score_arrays(
    model: Any, tokenizer: Any, images: Iterable[np.ndarray], prompts: list[str], batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """Scores of in-memory uint8 images (used by validation during training)."""
    weight = next(model.parameters())
    scorer = Scorer(model, tokenizer, weight.device, dtype=weight.dtype)
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
