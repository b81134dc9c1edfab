"""Synthesise proxy AIGI samples: a random crop of a reference, one distortion or prompt mismatch,
MOS-like labels and templated answers.

The same `Synthesiser` builds the fixed, versioned evaluation set (`prepare`) and, during training,
fresh samples on the fly from the training references only, so a model never sees one sample twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from mint_iqa.config import DIMENSIONS, LEVELS, PrepareConfig
from mint_iqa.data import degradations
from mint_iqa.data.answers import answers
from mint_iqa.data.prompts import make_prompt
from mint_iqa.data.references import Reference


@dataclass
class Sample:
    image: np.ndarray              # uint8, size x size x 3
    prompt: str
    ref_id: str
    family: str                    # pristine | quality | authenticity | correspondence
    distortion: str                # registry name, mismatch kind, or "none"
    level: int                     # 0 (pristine) .. 5
    damage: float = 0.0            # measured damage of the distortion (0 for pristine and mismatches)
    labels: dict[str, float] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    where: np.ndarray | None = None  # (G, G, 2) visible damage per cell, quality / authenticity family, in [0, 1]


Plan = tuple[str, str, int]        # (family, distortion, level)
WHERE_GRID = 16                    # cells per side of a sample's damage map

_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_RGB = np.linalg.inv(_YIQ).astype(np.float32)


def recolour(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training-time content augmentation of a *pristine* crop: a global hue turn, saturation change or
    grey conversion. A whole-image colour change is still a plausible photograph, so labels stay; it
    stops a model from learning "this reference is orange" instead of "this region's colour is off"."""
    if rng.random() < 0.5:
        return img
    yiq = img @ _YIQ.T
    if rng.random() < 0.2:
        yiq[..., 1:] = 0.0
    else:
        theta = rng.uniform(-np.pi, np.pi)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
        yiq[..., 1:] = yiq[..., 1:] @ rot.T * rng.uniform(0.6, 1.3)
    return np.clip(yiq @ _RGB.T, 0.0, 1.0).astype(np.float32)


class Synthesiser:
    """`out_size` < `cfg.image_size` renders a window of what a full `image_size` sample would show, at the
    same pixel scale (training crops: four times cheaper, and the label stays true because the defect
    is rendered inside the window). Local defects are sized as fractions of the window, so a 128-px
    window's warp or cloned patch is half as wide in pixels as a full image's; sizing them to the full
    frame instead was measured and did not help (single runs, demo budget)."""

    def __init__(self, references: list[tuple[Reference, np.ndarray]], cfg: PrepareConfig,
                 out_size: int | None = None, augment: bool = False, composite: float = 0.0):
        self.augment, self.composite = augment, composite
        self.refs = [ref for ref, _ in references]
        self.pixels = [pixels for _, pixels in references]
        self.cfg = cfg
        self.out_size = out_size or cfg.image_size
        self.grids: dict[str, list[tuple[str, int]]] = {
            family: [(name, level) for name in getattr(cfg, family) for level in range(1, LEVELS + 1)]
            for family in degradations.REGISTRY
        }
        for family, ladders in (("quality", cfg.quality), ("authenticity", cfg.authenticity)):
            unknown = set(ladders) - set(degradations.REGISTRY[family])
            if unknown:
                raise ValueError(f"prepare.{family}: unknown distortion(s) {sorted(unknown)}; "
                                 f"known: {sorted(degradations.REGISTRY[family])}")

    # ------------------------------------------------------------------ pieces
    def crop(self, ref_index: int, rng: np.random.Generator) -> np.ndarray:
        """A random square crop, never upscaled when the photograph is large enough, as float32 [0, 1]."""
        pixels = self.pixels[ref_index]
        h, w = pixels.shape[:2]
        size, short = self.cfg.image_size, min(h, w)
        side = int(rng.uniform(min(size, short), short + 1)) if short > size else short
        side = max(1, round(side * self.out_size / size))  # window of a full-size sample, same pixel scale
        size = self.out_size
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        patch = pixels[y:y + side, x:x + side]
        if side != size:  # area averaging when shrinking (no aliasing), bicubic in the rare enlargement
            patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
        arr = patch.astype(np.float32) / 255.0
        if self.augment:
            arr = recolour(arr, rng)
        return arr[:, ::-1].copy() if rng.random() < 0.5 else arr

    def plan(self, n: int, rng: np.random.Generator) -> list[Plan]:
        """`n` (family, distortion, level) triples: family counts from `family_mix` (largest remainder),
        distortion x level combinations cycled in a shuffled order so every combination appears."""
        mix = {f: s for f, s in self.cfg.family_mix.items() if s > 0}
        total = sum(mix.values())
        exact = {f: n * s / total for f, s in mix.items()}
        counts = {f: int(v) for f, v in exact.items()}
        for f in sorted(exact, key=lambda f: counts[f] - exact[f])[: n - sum(counts.values())]:
            counts[f] += 1
        plans: list[Plan] = []
        for family, count in counts.items():
            if family == "pristine":
                combos = [("none", 0)]
            elif family == "correspondence":
                combos = [("mismatch", level) for level in range(1, LEVELS + 1)]
            else:
                combos = list(self.grids[family])
            order = rng.permutation(len(combos))
            plans += [(family, *combos[order[i % len(combos)]]) for i in range(count)]
        return [plans[i] for i in rng.permutation(len(plans))]

    # ------------------------------------------------------------------ samples
    def make(self, ref_index: int, plan: Plan, rng: np.random.Generator, also: Plan | None = None) -> Sample:
        """One sample of `plan`; `also` (training only) adds a defect of the other image family, quality
        first, each labelled by the damage it does itself."""
        family, distortion, level = plan
        ref = self.refs[ref_index]
        img = self.crop(ref_index, rng)
        labels = {dim: self.cfg.labels.for_level(0) for dim in DIMENSIONS}
        defects: dict[str, str] = {}
        prompt = make_prompt(ref, self.refs, level if family == "correspondence" else 0, rng)
        damage = 0.0
        where = np.zeros((WHERE_GRID, WHERE_GRID, 2), np.float32)
        steps = [p for p in (plan, also) if p is not None and p[0] in degradations.REGISTRY]
        for fam, name, lvl in sorted(steps, key=lambda p: p[0] != "quality"):
            before = img
            img = degradations.apply(img, fam, name, lvl, getattr(self.cfg, fam), rng)
            dmap = degradations.damage_map(before, img)
            hurt = degradations.damage(before, img, local=fam == "authenticity", dmap=dmap)
            visible = np.clip(dmap / self.cfg.labels.damage_scale[name], 0.0, 1.0)
            where[..., int(fam == "authenticity")] = cv2.resize(visible, (WHERE_GRID, WHERE_GRID),
                                                           interpolation=cv2.INTER_AREA)
            labels[fam] = self.cfg.labels.for_damage(name, hurt)
            defects[fam] = degradations.DEFECT_NAMES[name]
            damage = hurt if fam == family else damage
        if family == "correspondence":
            distortion = prompt.mismatch
            defects[family] = prompt.explanation
            labels[family] = self.cfg.labels.for_level(level)
        image = (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)
        return Sample(image, prompt.text, ref.id, family, distortion, level, round(damage, 6), labels,
                      answers(labels, defects), where)

    def calibrate(self, rng: np.random.Generator, samples: int = 100) -> dict[str, float]:
        """A `damage_scale` per distortion: the 90th percentile of the damage its level 5 does to random
        crops, so that level-5 damage maps onto (or near) the label floor."""
        scales = {}
        for family, grid in self.grids.items():
            for name in dict.fromkeys(n for n, _ in grid):
                hits = []
                for _ in range(samples):
                    base = self.crop(int(rng.integers(len(self.refs))), rng)
                    out = degradations.apply(base, family, name, LEVELS, getattr(self.cfg, family), rng)
                    hits.append(degradations.damage(base, out, local=family == "authenticity"))
                scales[name] = round(float(np.percentile(hits, 90)), 3)
        return scales

    def random(self, rng: np.random.Generator, ref_indices: list[int] | None = None) -> Sample:
        """A fresh sample from one of `ref_indices` (all references by default), plan drawn at random."""
        pool = ref_indices if ref_indices is not None else list(range(len(self.refs)))
        ref_index = pool[int(rng.integers(len(pool)))]
        families = [f for f, share in self.cfg.family_mix.items() if share > 0]
        shares = np.array([self.cfg.family_mix[f] for f in families], dtype=float)
        family = families[rng.choice(len(families), p=shares / shares.sum())]
        if family == "pristine":
            plan: Plan = (family, "none", 0)
        elif family == "correspondence":
            plan = (family, "mismatch", int(rng.integers(1, LEVELS + 1)))
        else:
            plan = (family, *self.grids[family][int(rng.integers(len(self.grids[family])))])
        also = None
        if self.composite and family != "correspondence":  # each image family's defect drawn independently
            drawn = [(f, *self.grids[f][int(rng.integers(len(self.grids[f])))])
                     for f in ("quality", "authenticity") if rng.random() < self.composite]
            plan, also = (drawn + [("pristine", "none", 0)])[0], (drawn[1] if len(drawn) > 1 else None)
        return self.make(ref_index, plan, rng, also)
