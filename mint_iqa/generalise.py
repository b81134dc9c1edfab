"""Step `generalise`: leave-kinds-out, the headline test of transfer.

Defect kinds are dealt into folds (`data/splits.kind_folds`). The `lko` scorer trained on the `strict`
training references without fold `generalise.fold`'s kinds; here it scores fresh composites of the `strict`
*test* references (photographs it never saw) made with that fold's kinds only: defects and photographs both
unseen. The `strict` scorer, which trained on those kinds, scores the same images, so the gap between the
two is what never having seen a kind costs. Writes `metrics/generalisation.json`
(`{"quality": {"srcc", "per_kind"}, "authenticity": {...}, ...}`) and the rendered set under
`generalise.out_dir` (images + `scores.csv`) for `bench/leave_kinds_out.py`'s baselines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from mint_iqa.config import DIMENSIONS, Params
from mint_iqa.data import degradations, manifest
from mint_iqa.data.references import load_references
from mint_iqa.data.synth import Synthesiser
from mint_iqa.evaluate import per_kind
from mint_iqa.inference import Scorer, resolve_device
from mint_iqa.io import atomic_dir, atomic_write, write_text
from mint_iqa.metrics import srcc, tie_share
from mint_iqa.train.data import held_out


def render(params: Params, out_dir: Path) -> pd.DataFrame:
    """`generalise.images` composites of the strict test references with the held-out kinds only."""
    frame, _ = manifest.read(params.prepare.out_dir)
    test_refs = set(frame.loc[frame["split_strict"] == "test", "ref_id"])
    refs = [(r, px) for r, px in load_references(params.data.raw_dir) if r.id in test_refs]
    synth = Synthesiser(refs, params.prepare, kinds=held_out(params))
    (out_dir / "images").mkdir(parents=True)
    rows = []
    for i in range(params.generalise.images):
        rng = np.random.default_rng([params.seed, 0x6E4, i])
        s = synth.random(rng)
        name = f"images/{s.ref_id}_{i:04d}.png"
        Image.fromarray(s.image).save(out_dir / name, compress_level=1)
        rows.append({"image": name, "prompt": s.prompt, "ref_id": s.ref_id, "defects": s.defects, **s.labels})
    return pd.DataFrame(rows)


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
    with atomic_dir(params.generalise.out_dir) as tmp:
        df = render(params, tmp)
        for protocol in ("lko", "strict"):
            scorer = Scorer.load(Path(params.train.out_dir) / protocol / "best", device=device)
            scores = scorer.score(
                [tmp / p for p in df["image"]], list(df["prompt"]), params.evaluate.batch_size, scale="raw"
            )
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
    return result
