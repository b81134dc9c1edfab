"""Synthesise proxy AIGI samples: a random crop of a reference, one distortion or prompt mismatch,
MOS-like labels and templated answers.

The same `Synthesiser` builds the fixed, versioned evaluation set (`prepare`) and, during training,
fresh samples on the fly from the training references only, so a model never sees one sample twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

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
    labels: dict[str, float] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)


Plan = tuple[str, str, int]        # (family, distortion, level)


class Synthesiser:
    def __init__(self, references: list[tuple[Reference, np.ndarray]], cfg: PrepareConfig):
        self.refs = [ref for ref, _ in references]
        self.pixels = [pixels for _, pixels in references]
        self.cfg = cfg
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
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        patch = Image.fromarray(pixels[y:y + side, x:x + side])
        if side != size:
            patch = patch.resize((size, size), Image.Resampling.LANCZOS)
        arr = np.asarray(patch, dtype=np.float32) / 255.0
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
    def make(self, ref_index: int, plan: Plan, rng: np.random.Generator) -> Sample:
        family, distortion, level = plan
        ref = self.refs[ref_index]
        img = self.crop(ref_index, rng)
        labels = {dim: self.cfg.labels.for_level(0) for dim in DIMENSIONS}
        defects: dict[str, str] = {}
        prompt = make_prompt(ref, self.refs, level if family == "correspondence" else 0, rng)
        if family in degradations.REGISTRY:
            ladders = getattr(self.cfg, family)
            img = degradations.apply(img, family, distortion, level, ladders, rng)
            defects[family] = degradations.DEFECT_NAMES[distortion]
        if family == "correspondence":
            distortion = prompt.mismatch
            defects[family] = prompt.explanation
        if family != "pristine":
            labels[family] = self.cfg.labels.for_level(level)
        image = (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)
        return Sample(image, prompt.text, ref.id, family, distortion, level, labels, answers(labels, defects))

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
        return self.make(ref_index, plan, rng)
