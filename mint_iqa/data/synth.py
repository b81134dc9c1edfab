"""Synthesise proxy AIGI samples: a random crop of a reference, one distortion or prompt mismatch,
MOS-like labels and templated answers.

The same `Synthesiser` builds the fixed, versioned evaluation set (`prepare`) and, during training,
fresh samples on the fly from the training references only, so a model never sees one sample twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from mint_iqa.config import LEVELS, MixConfig, PrepareConfig
from mint_iqa.data import damage as measure
from mint_iqa.data import degradations
from mint_iqa.data.answers import answers
from mint_iqa.data.prompts import make_prompt
from mint_iqa.data.references import Reference


@dataclass
class Sample:
    image: np.ndarray  # uint8, size x size x 3
    prompt: str
    ref_id: str
    family: str  # the dimension hurt most: pristine | quality | authenticity | correspondence
    distortion: str  # its defect kind, mismatch kind, or "none"
    level: int  # its level rounded (0 pristine .. 5)
    damage: float = 0.0  # measured damage of that defect (0 for pristine and mismatches)
    labels: dict[str, float] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    where: np.ndarray | None = (
        None  # (G, G, 2) visible damage per cell, quality / authenticity family, in [0, 1]
    )
    defects: str = ""  # every defect as kind@level, ';'-separated (`Recipe.describe`)
    worst: dict[str, str] = field(default_factory=dict)  # per damaged dimension, the kind that hurt it most


@dataclass(frozen=True)
class Recipe:
    """What one sample gets: image defects (family, kind, level in [1, 5]; fractional levels interpolate the
    ladder), each of independent severity, and a prompt-mismatch ladder level (0: the true caption)."""

    defects: tuple[tuple[str, str, float], ...] = ()
    mismatch: int = 0

    def describe(self) -> str:
        """The manifest's `defects` cell: `kind@level` per defect, then `mismatch@level` (wrong prompt)."""
        parts = [f"{kind}@{level:.2f}" for _, kind, level in self.defects]
        return ";".join(parts + ([f"mismatch@{self.mismatch}"] if self.mismatch else []))


def parse_defects(cell: str) -> list[tuple[str, float]]:
    """(kind, level) of each part of a manifest `defects` cell (`mismatch` for the prompt)."""
    return [
        (kind, float(level))
        for kind, level in (part.split("@") for part in str(cell or "").split(";") if "@" in part)
    ]


def kinds_of(cell: str) -> list[str]:
    """The image defect kinds of a manifest `defects` cell."""
    return [kind for kind, _ in parse_defects(cell) if kind != "mismatch"]


WHERE_GRID = 16  # cells per side of a sample's damage map
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
    is rendered inside the window). Local defects are sized as fractions of the window. `kinds` limits the
    defect kinds drawn (leave-kinds-out training); `mix` the chance of each dimension's defect (default:
    `cfg.mix`, the evaluation design)."""

    def __init__(
        self,
        references: list[tuple[Reference, np.ndarray]],
        cfg: PrepareConfig,
        out_size: int | None = None,
        augment: bool = False,
        mix: MixConfig | None = None,
        kinds: list[str] | None = None,
    ):
        self.augment, self.mix = augment, mix or cfg.mix
        self.refs = [ref for ref, _ in references]
        self.pixels = [pixels for _, pixels in references]
        self.cfg = cfg
        self.out_size = out_size or cfg.image_size
        for family, ladders in (("quality", cfg.quality), ("authenticity", cfg.authenticity)):
            unknown = set(ladders) - set(degradations.REGISTRY[family])
            if unknown:
                raise ValueError(
                    f"prepare.{family}: unknown distortion(s) {sorted(unknown)}; "
                    f"known: {sorted(degradations.REGISTRY[family])}"
                )
        self.kinds = {
            family: [k for k in getattr(cfg, family) if kinds is None or k in kinds]
            for family in degradations.REGISTRY
        }

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
        patch = pixels[y : y + side, x : x + side]
        if side != size:  # area averaging when shrinking (no aliasing), bicubic in the rare enlargement
            patch = cv2.resize(
                patch, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
            )
        arr = patch.astype(np.float32) / 255.0
        if self.augment:
            arr = recolour(arr, rng)
        return arr[:, ::-1].copy() if rng.random() < 0.5 else arr

    def draw(self, rng: np.random.Generator) -> Recipe:
        """A recipe with each dimension's defect drawn independently (`mix`), kinds uniformly, levels
        uniformly in [1, 5]: continuous labels, so rankings can be measured without ties."""
        mix, defects = self.mix, []
        n_quality = int(rng.random() < mix.quality) * (1 + int(rng.random() < mix.second))
        for family, count in (("quality", n_quality), ("authenticity", int(rng.random() < mix.authenticity))):
            kinds = self.kinds[family]
            for k in rng.choice(len(kinds), size=min(count, len(kinds)), replace=False) if kinds else []:
                defects.append((family, kinds[int(k)], round(float(rng.uniform(1.0, LEVELS)), 2)))
        mismatch = int(rng.integers(1, LEVELS + 1)) if rng.random() < mix.correspondence else 0
        return Recipe(tuple(defects), mismatch)

    def plan(self, n: int, rng: np.random.Generator) -> list[Recipe]:
        return [self.draw(rng) for _ in range(n)]

    # ------------------------------------------------------------------ samples
    def make(self, ref_index: int, recipe: Recipe, rng: np.random.Generator) -> Sample:
        """One sample of `recipe`. Quality defects come first and authenticity ones last, each measured
        against the image just before it. A dimension's label comes from the sum of its defects' severities
        (`LabelConfig.measure`: drawn level, or measured damage over the kind's `damage_scale`)."""
        ref = self.refs[ref_index]
        img = self.crop(ref_index, rng)
        prompt = make_prompt(ref, self.refs, recipe.mismatch, rng)
        severity = {fam: 0.0 for fam in degradations.REGISTRY}
        names: dict[str, list[str]] = {fam: [] for fam in degradations.REGISTRY}
        worst = ("pristine", "none", 0, 0.0, 0.0)  # family, kind, level, severity, damage
        worst_of: dict[str, tuple[float, str]] = {}  # per dimension: (severity, kind) of its worst defect
        where = np.zeros((WHERE_GRID, WHERE_GRID, 2), np.float32)
        for fam, name, lvl in sorted(recipe.defects, key=lambda d: d[0] != "quality"):
            before = img
            img = degradations.apply(img, fam, name, lvl, getattr(self.cfg, fam), rng)
            dmap = measure.damage_map(before, img)
            hurt = measure.damage(before, img, local=fam == "authenticity", dmap=dmap)
            scale = self.cfg.labels.scale(name)
            visible = np.clip(dmap / scale, 0.0, 1.0)
            cell = cv2.resize(visible, (WHERE_GRID, WHERE_GRID), interpolation=cv2.INTER_AREA)
            where[..., int(fam == "authenticity")] = np.maximum(where[..., int(fam == "authenticity")], cell)
            done = lvl / LEVELS if self.cfg.labels.measure == "level" else hurt / scale
            severity[fam] += done
            names[fam].append(degradations.DEFECT_NAMES[name])
            if done >= worst_of.get(fam, (-1.0, ""))[0]:
                worst_of[fam] = (done, name)
            if done > worst[3]:
                worst = (fam, name, int(round(lvl)), done, hurt)
        labels = {fam: self.cfg.labels.for_severity(s) for fam, s in severity.items()}
        labels["correspondence"] = self.cfg.labels.for_level(recipe.mismatch)
        defects = {fam: " and ".join(n) for fam, n in names.items() if n}
        family, distortion, level, _, damage = worst
        if recipe.mismatch and labels["correspondence"] <= min(labels["quality"], labels["authenticity"]):
            family, distortion, level, damage = "correspondence", prompt.mismatch, recipe.mismatch, 0.0
        if recipe.mismatch:
            defects["correspondence"] = prompt.explanation
        image = (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)
        return Sample(
            image,
            prompt.text,
            ref.id,
            family,
            distortion,
            level,
            round(damage, 6),
            labels,
            answers(labels, defects),
            where,
            recipe.describe(),
            {fam: kind for fam, (_, kind) in worst_of.items()},
        )

    def calibrate(self, rng: np.random.Generator, samples: int = 100) -> dict[str, float]:
        """A `damage_scale` per distortion: the 90th percentile of the damage its level 5 does to random
        crops, so that level-5 damage maps onto (or near) the label floor."""
        scales = {}
        for family in degradations.REGISTRY:
            for name in getattr(self.cfg, family):
                hits = []
                for _ in range(samples):
                    base = self.crop(int(rng.integers(len(self.refs))), rng)
                    out = degradations.apply(base, family, name, LEVELS, getattr(self.cfg, family), rng)
                    hits.append(measure.damage(base, out, local=family == "authenticity"))
                scales[name] = round(float(np.percentile(hits, 90)), 3)
        return scales

    def random(self, rng: np.random.Generator, ref_indices: list[int] | None = None) -> Sample:
        """A fresh sample from one of `ref_indices` (all references by default), recipe drawn at random."""
        pool = ref_indices if ref_indices is not None else list(range(len(self.refs)))
        ref_index = pool[int(rng.integers(len(pool)))]
        return self.make(ref_index, self.draw(rng), rng)
