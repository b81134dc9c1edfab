"""Step `generalise`: leave-kinds-out, the headline test of transfer.

Defect kinds are dealt into folds (`data/splits.kind_folds`). The `lko` scorer trained on the `strict`
training references without fold `generalise.fold`'s kinds; here it scores fresh composites of the `strict`
*test* references (photographs it never saw) made with that fold's kinds only: defects and photographs both
unseen. The `strict` scorer, which trained on those kinds, scores the same images, so the gap between the
two is what never having seen a kind costs. Writes `metrics/generalisation.json`
(`{"quality": {"srcc", "per_kind"}, "authenticity": {...}, ...}`) and the rendered set under
`generalise.out_dir` (images + `scores.csv`) for `bench/leave_kinds_out.py`'s baselines.

It also measures how well the damage maps point (`metrics/pointing.json`): per image, the Pearson CC and
AUROC of each predicted map (`Scorer.score(maps=True)`) against the true one (the damage each defect did,
per cell, over its kind's scale; AUROC for the cells damaged at least `DAMAGED`), averaged over the images
where it is defined. `strict`: the `strict` scorer on as many composites of its test references with every
kind; `leave_kinds_out`: the `lko` scorer on the held-out-kind composites above.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from mint_iqa.config import DIMENSIONS, Params
from mint_iqa.data import degradations, manifest
from mint_iqa.data.references import load_references
from mint_iqa.data.synth import Synthesiser
from mint_iqa.evaluate import per_kind
from mint_iqa.inference.scoring import MAP_COLUMNS, Scorer, resolve_device
from mint_iqa.io import atomic_dir, atomic_write, write_text
from mint_iqa.metrics import map_agreement, srcc, tie_share
from mint_iqa.train.data import held_out

DAMAGED = 0.5  # a cell counts as damaged (AUROC) when its true damage is at least half the label floor's


def render(
    params: Params, out_dir: Path | None, kinds: list[str] | None, salt: int
) -> tuple[pd.DataFrame, list]:
    """`generalise.images` composites of the strict test references (with `kinds` only; None: all), saved
    under `out_dir/images` when given, and their true damage maps (`Sample.where`)."""
    frame, _ = manifest.read(params.prepare.out_dir)
    test_refs = set(frame.loc[frame["split_strict"] == "test", "ref_id"])
    refs = [(r, px) for r, px in load_references(params.data.raw_dir) if r.id in test_refs]
    synth = Synthesiser(refs, params.prepare, kinds=kinds)
    if out_dir is not None:
        (out_dir / "images").mkdir(parents=True)
    rows, truth = [], []
    for i in range(params.generalise.images):
        s = synth.random(np.random.default_rng([params.seed, salt, i]))
        image: Any = s.image
        if out_dir is not None:
            image = f"images/{s.ref_id}_{i:04d}.png"
            Image.fromarray(s.image).save(out_dir / image, compress_level=1)
        rows.append(
            {"image": image, "prompt": s.prompt, "ref_id": s.ref_id, "defects": s.defects, **s.labels}
        )
        truth.append(s.where)
    return pd.DataFrame(rows), truth


def pointing(scored: pd.DataFrame, truth: list[np.ndarray]) -> dict[str, Any] | None:
    """Mean per-image CC and AUROC of the predicted maps against the true ones (pooled onto the predicted
    grid, as the training target is), per image dimension, with the number of images each is defined on;
    None for a model without the damage-map head."""
    if MAP_COLUMNS[0] not in scored:
        return None
    out: dict[str, Any] = {}
    for k, dim in enumerate(MAP_COLUMNS):
        cc, auc = zip(
            *(
                map_agreement(pred, _pool(true[..., k], pred.shape), DAMAGED)
                for pred, true in zip(scored[dim], truth)
            )
        )
        out[dim.removesuffix("_map")] = {
            "cc": round(float(np.nanmean(cc)), 4) if np.isfinite(cc).any() else None,
            "auroc": round(float(np.nanmean(auc)), 4) if np.isfinite(auc).any() else None,
            "images_cc": int(np.isfinite(cc).sum()),
            "images_auroc": int(np.isfinite(auc).sum()),
        }
    return out


def _pool(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return F.adaptive_avg_pool2d(torch.from_numpy(grid)[None, None], shape)[0, 0].numpy()


def summarise(df: pd.DataFrame, kinds: list[str], column: str = "{dim}_pred") -> dict[str, Any]:
    """Pooled SRCC per image dimension, its label tie share, and SRCC per held-out kind."""
    out = {}
    for dim in ("quality", "authenticity"):
        own = [k for k in kinds if k in degradations.REGISTRY[dim]]
        scored = df.rename(columns={column.format(dim=dim): f"{dim}_pred"})
        out[dim] = {
            "srcc": round(srcc(scored[f"{dim}_pred"], scored[dim]), 4),
            "tie_share": round(tie_share(scored[dim].to_numpy()), 4),
            "per_kind": per_kind(scored, dim, own),
        }
    return out


def generalise(params: Params) -> dict[str, Any]:
    kinds = held_out(params)
    device = resolve_device(params.evaluate.device)
    scorers = {
        p: Scorer.load(Path(params.train.out_dir) / p / "best", device=device) for p in ("lko", "strict")
    }
    with atomic_dir(params.generalise.out_dir) as tmp:
        df, truth = render(params, tmp, kinds, salt=0x6E4)
        located = {}
        for protocol, scorer in scorers.items():
            images = [tmp / p for p in df["image"]]
            scores = scorer.score(
                images, list(df["prompt"]), params.evaluate.batch_size, scale="raw", maps=scorer.has_maps
            )
            located[protocol] = scores
            for dim in DIMENSIONS:
                df[f"{protocol}_{dim}"] = scores[dim].to_numpy()
        with atomic_write(tmp / "scores.csv", "w") as fh:
            df.to_csv(fh, index=False, float_format="%.5f")
    result = {
        **summarise(df, kinds, "lko_{dim}"),
        "images": len(df),
        "held_out": kinds,
        "fold": params.generalise.fold,
        "seen_by_strict_model": summarise(df, kinds, "strict_{dim}"),
    }
    write_text(params.generalise.metrics, json.dumps(result, indent=2) + "\n")
    every, every_truth = render(params, None, None, salt=0x9E1)
    strict = scorers["strict"]
    seen = strict.score(list(every["image"]), list(every["prompt"]), scale="raw", maps=strict.has_maps)
    points = {
        "damaged": DAMAGED,
        "strict": {**(pointing(seen, every_truth) or {}), "images": len(every), "kinds": "all"},
        "leave_kinds_out": {
            **(pointing(located["lko"], truth) or {}),
            "images": len(df),
            "kinds": "held out",
        },
        "leave_kinds_out_by_strict_model": pointing(located["strict"], truth),
    }
    write_text(params.generalise.pointing, json.dumps(points, indent=2) + "\n")
    return result
