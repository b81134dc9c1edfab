"""Training data shared by both stages: prepared splits and the on-the-fly sample stream."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from mint_iqa.config import DIMENSIONS
from mint_iqa.data import degradations, manifest
from mint_iqa.data.splits import split_rows
from mint_iqa.data.synth import WHERE_GRID, Synthesiser, kinds_of, parse_defects
from mint_iqa.io import load_image
from mint_iqa.models.tensors import to_batch

# the defect head names one kind per family, each its own choice; its classes are the families' kinds in turn
AUX_KINDS = {"quality": degradations.QUALITY, "authenticity": degradations.AUTHENTICITY}
AUX_CLASSES = [kind for kinds in AUX_KINDS.values() for kind in kinds]
NO_MAP = torch.full(
    (WHERE_GRID, WHERE_GRID, 2), -1.0
)  # a prepared image's damage map: unknown, masked in the loss


def aux_targets(worst: dict[str, str]) -> list[int]:
    """The defect head's targets: per family of `AUX_KINDS`, the `AUX_CLASSES` index of the kind that hurt
    that dimension most, or -100 (no such defect, or a kind the head does not know: ignored in the loss)."""
    return [AUX_CLASSES.index(worst[f]) if worst.get(f) in AUX_CLASSES else -100 for f in AUX_KINDS]


def row_worst(row: pd.Series) -> dict[str, str]:
    """A prepared row's worst kind per dimension: its recorded worst defect for its own family, and for the
    other the kind of that family at the highest level in its `defects` cell."""
    worst: dict[str, str] = {}
    for kind, _ in sorted(parse_defects(row.get("defects") or ""), key=lambda d: d[1]):
        for family, kinds in AUX_KINDS.items():
            if kind in kinds:
                worst[family] = kind
    if row["family"] in AUX_KINDS:
        worst[row["family"]] = row["distortion"]
    return worst


@dataclass
class Split:
    """Prepared images of one split, decoded once (small: a few hundred 256-px images)."""

    frame: pd.DataFrame
    images: list[np.ndarray]

    @classmethod
    def load(
        cls, prepared: Path, protocol: str, split: str, size: int, without: list[str] | None = None
    ) -> Split:
        """Rows of one split with their images decoded, squashed to `size` like inference does; rows showing
        a defect kind in `without` are left out."""
        df, meta = manifest.read(prepared)
        root = manifest.image_root(prepared, meta)
        df = split_rows(df, protocol, split)
        if without and "defects" in df:
            df = df[[not set(kinds_of(d)) & set(without) for d in df["defects"]]]
        df = df.reset_index(drop=True)
        images = []
        for rel in df["image"]:
            img = load_image(root / rel)
            images.append(np.asarray(img if img.size == (size, size) else img.resize((size, size), 3)))
        return cls(df, images)

    def labels(self) -> np.ndarray:
        return self.frame[list(DIMENSIONS)].to_numpy(np.float32)


def describes(defects: Any, family: str) -> bool:
    """Whether the prompt describes its image: no prompt mismatch among the sample's defects (composites: the
    mismatch need not be what hurts most); without a `defects` record (adapters), its family says it."""
    if isinstance(defects, str):
        return not any(kind == "mismatch" for kind, _ in parse_defects(defects))
    return family != "correspondence"


class TrainStream(Dataset):
    """`length` training items of one epoch, each a function of (seed, epoch, rank, index) only, so resuming
    is exact. Every synthesised sample is used `reuse` times under different flips / 90-degree turns,
    spread over a window of `window` items (a small cache in the loader process keeps the window), which
    halves the synthesis cost per item at `reuse=2` without putting two views in one batch."""

    def __init__(
        self,
        synth: Synthesiser | None,
        ref_indices: list[int],
        fixed: Split,
        seed: int,
        epoch: int,
        length: int,
        synthetic_fraction: float,
        crop: int | None,
        reuse: int = 1,
        window: int = 256,
    ):
        self.synth, self.refs, self.fixed = synth, ref_indices, fixed
        self.seed, self.epoch, self.length = seed, epoch, length
        self.synthetic_fraction, self.crop = synthetic_fraction, crop
        self.reuse, self.window = reuse, window - window % reuse
        self.rank = int(os.environ.get("RANK", "0"))  # each data-parallel rank draws its own samples
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return self.length

    def _sample(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, i])
        if self.synth is not None and (not len(self.fixed.frame) or rng.random() < self.synthetic_fraction):
            s = self.synth.random(rng, self.refs)
            image, prompt, labels, cls = (
                s.image,
                s.prompt,
                [s.labels[d] for d in DIMENSIONS],
                aux_targets(s.worst),
            )
            answers, where, group, matching = s.answers, s.where, s.ref_id, describes(s.defects, s.family)
        else:
            j = int(rng.integers(len(self.fixed.frame)))
            row = self.fixed.frame.iloc[j]
            image, prompt = self.fixed.images[j], row["prompt"]
            labels = [
                row[d] if row[d] == row[d] else -1.0 for d in DIMENSIONS
            ]  # NaN (no label) -> -1, masked
            cls = aux_targets(row_worst(row))
            answers = {k: row[col] for k, col in manifest.ANSWER_COLUMNS.items()}
            where = None  # prepared images carry no damage map
            ref = row.get("ref_id")
            group, matching = (
                ref if isinstance(ref, str) else "",
                describes(row.get("defects"), row["family"]),
            )
        if self.crop and self.crop < image.shape[0]:  # prepared images are full size: take a window
            y, x = rng.integers(0, image.shape[0] - self.crop + 1, size=2)
            image = image[y : y + self.crop, x : x + self.crop]
        return {
            "image": image,
            "prompt": prompt,
            "labels": torch.tensor(labels, dtype=torch.float32),
            "aux": cls,
            "answers": answers,
            "pick": int(rng.integers(1 << 30)),
            "where": where,
            "group": group,
            "matching": matching,
        }

    def __getitem__(self, j: int) -> dict[str, Any]:
        window, pos = divmod(j, self.window)
        order = np.random.default_rng([self.seed, self.epoch, self.rank, window, 0x5EED]).permutation(
            self.window
        )
        local, view = divmod(int(order[pos]), self.reuse)
        i = window * (self.window // self.reuse) + local
        if i not in self._cache:
            if len(self._cache) > self.window:
                self._cache.clear()
            self._cache[i] = self._sample(i)
        item = self._cache[i]
        image, where = _view(item["image"], view), item["where"]
        where = torch.from_numpy(_view(where, view).copy()) if where is not None else NO_MAP
        return {**item, "image": to_batch([image])[0], "where": where}


def _view(a: np.ndarray, view: int) -> np.ndarray:
    """View `view` of an (H, W, ...) array: turned by 90 degrees `view % 4` times, mirrored from view 4 on."""
    a = np.rot90(a, k=view % 4) if view else a
    return a[:, ::-1] if view >= 4 else a


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "images": torch.stack([i["image"] for i in items]),
        "prompts": [i["prompt"] for i in items],
        "labels": torch.stack([i["labels"] for i in items]),
        "aux": torch.tensor([i["aux"] for i in items]),  # (B, 2): quality, authenticity kind
        "answers": [i["answers"] for i in items],
        "picks": [i["pick"] for i in items],
        "where": torch.stack([i["where"] for i in items]),
        "groups": [i["group"] for i in items],
        "matching": torch.tensor([i["matching"] for i in items]),
    }


def loader(stream: Dataset, start_step: int, cfg: Any) -> DataLoader:
    """Batches of `stream` from step `start_step` on, in order (the stream itself is shuffled)."""
    indices = list(range(start_step * cfg.batch_size, len(stream)))
    return DataLoader(
        Subset(stream, indices),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.workers,
        collate_fn=collate,
        multiprocessing_context="fork" if cfg.workers else None,
        prefetch_factor=4 if cfg.workers else None,
    )


def training_synthesiser(params: Any, fixed: Split, protocol: str) -> Synthesiser | None:
    """The on-the-fly sample source of a protocol: the proxy set's training references only (strict: never a
    validation or test reference, not even its caption). Real datasets have no references: None."""
    from mint_iqa.data.references import load_references

    _, meta = manifest.read(params.prepare.out_dir)
    if meta.get("source") != "proxy":
        return None
    refs = load_references(params.data.raw_dir)
    if protocol != "paper":
        refs = [(r, px) for r, px in refs if r.id in set(fixed.frame["ref_id"])]
    unseen = set(held_out(params)) if protocol == "lko" else set()
    kinds = [k for family in degradations.REGISTRY for k in degradations.REGISTRY[family] if k not in unseen]
    return Synthesiser(
        refs,
        params.prepare,
        out_size=params.train.crop,
        augment=params.train.augment,
        mix=params.train.mix,
        kinds=kinds,
    )


def held_out(params: Any) -> list[str]:
    """The defect kinds the `lko` protocol never trains on (`generalise.fold`)."""
    from mint_iqa.data.splits import held_out_kinds

    g = params.generalise
    return held_out_kinds(degradations.GROUPS, g.folds, g.fold, params.seed)
