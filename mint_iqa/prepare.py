"""Step `prepare`: raw data -> `artifacts/prepared` (manifest, splits, instructions, images).

`data.source: proxy` synthesises the proxy AIGI set from the reference photographs in `data/`; the
other sources go through an adapter. Either way the output has one schema (`data/manifest.py`).
Every image gets its own seed derived from (seed, reference, index), so the bytes do not depend on
the number of worker processes.
"""

from __future__ import annotations

import io
import multiprocessing as mp
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from mint_iqa.config import DIMENSIONS, Params
from mint_iqa.data import adapters, manifest, splits
from mint_iqa.data.references import load_references
from mint_iqa.data.synth import Recipe, Synthesiser
from mint_iqa.io import atomic_dir
from mint_iqa.progress import progress

_WORKER: dict[str, Any] = {}


def _init_worker(synth: Synthesiser, seed: int, images_dir: Path) -> None:
    _WORKER.update(synth=synth, seed=seed, images_dir=images_dir)


def _render(job: tuple[int, int, Recipe]) -> dict[str, Any]:
    ref_index, index, plan = job
    synth: Synthesiser = _WORKER["synth"]
    sample = synth.make(ref_index, plan, np.random.default_rng([_WORKER["seed"], ref_index, index]))
    name = f"{sample.ref_id}_{index:04d}"
    buf = io.BytesIO()
    Image.fromarray(sample.image).save(buf, format="PNG", compress_level=1)
    (_WORKER["images_dir"] / f"{name}.png").write_bytes(buf.getvalue())
    return {
        "id": name,
        "image": f"images/{name}.png",
        "prompt": sample.prompt,
        "ref_id": sample.ref_id,
        "source": "proxy",
        "family": sample.family,
        "distortion": sample.distortion,
        "level": sample.level,
        **sample.labels,
        "damage": sample.damage,
        "defects": sample.defects,
        **{manifest.ANSWER_COLUMNS[k]: v for k, v in sample.answers.items()},
        "licence": synth.refs[ref_index].licence,
    }


def build_proxy(params: Params, out_dir: Path) -> pd.DataFrame:
    cfg = params.prepare
    synth = Synthesiser(load_references(params.data.raw_dir), cfg)
    jobs = []
    for ref_index in range(len(synth.refs)):
        plans = synth.plan(cfg.images_per_reference, np.random.default_rng([params.seed, ref_index, 0x91A9]))
        jobs += [(ref_index, i, plan) for i, plan in enumerate(plans)]
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True)
    init = (synth, params.seed, images_dir)
    bar = dict(total=len(jobs), desc="prepare: rendering proxy images", unit="img")
    if cfg.workers > 1:
        with mp.get_context("fork").Pool(cfg.workers, _init_worker, init) as pool:
            rows = list(progress(pool.imap(_render, jobs, chunksize=8), **bar))
    else:
        _init_worker(*init)
        rows = [_render(job) for job in progress(jobs, **bar)]
    return pd.DataFrame(rows)


def prepare(params: Params) -> Path:
    """Build the prepared dataset for `params.data.source`; returns the output folder."""
    out_dir = Path(params.prepare.out_dir)
    with atomic_dir(out_dir) as tmp:
        if params.data.source == "proxy":
            df = build_proxy(params, tmp)
            meta = {"source": "proxy", "image_root": ".", "labels": list(DIMENSIONS), "seed": params.seed}
        else:
            df, meta = adapters.build(params.data)
        df = splits.assign(df, params.prepare.splits, params.seed)
        manifest.write(df, tmp, meta)
    return out_dir
