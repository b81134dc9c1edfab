"""Throughput benchmark: PNG files scored end to end (decode, preprocess, model), images per second.

    python bench/throughput.py [--images 512] [--model artifacts/scorer/paper/best]

Uses the 256 px PNGs of the prepared proxy set (or generates random ones), the trained scorer (the default
preset, `lite0`), and a freshly built `tiny` preset beside it (random weights: same architecture, same cost).
Each worker thread decodes a batch and runs it through the model on its share of the cores, so decoding
overlaps the model. Prints a table for batch sizes 1/8/32 and 1/2 workers (and, at batch 32, with the damage
maps and the word support read out), next to BRISQUE on the same files,
and writes it to bench/results/throughput.{csv,md}. The machine's speed may drift between timings, so the
ratio to BRISQUE comes from `--rounds` back-to-back pairs of timings (batch 32, 2 workers), their median
(bench/results/throughput_rounds.csv).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mint_iqa.inference.scoring import Scorer  # noqa: E402
from mint_iqa.io import load_image  # noqa: E402


def png_files(n: int, workdir: Path) -> list[Path]:
    prepared = sorted((ROOT / "artifacts" / "prepared" / "images").glob("*.png"))
    if len(prepared) >= n:
        return prepared[:n]
    from PIL import Image

    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        path = workdir / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


def scorer(model: Path | None, preset: str = "tiny") -> tuple[Scorer, str]:
    if model is not None and model.exists():
        return Scorer.load(model), str(model)
    from mint_iqa.models.factory import build_scorer, build_tokenizer, preset_config

    config = preset_config(preset)
    tokenizer = build_tokenizer(config.text, corpus=["content: a cat | style: a photo | scene: indoors"] * 20)
    net, tokenizer = build_scorer(config, tokenizer=tokenizer)
    return Scorer(net.eval(), tokenizer, torch.device("cpu")), f"{preset} preset (random weights)"


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


# long: the whole measurement as a script, top to bottom, ending in its table
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts" / "scorer" / "paper" / "best")
    parser.add_argument(
        "--brisque-images", type=int, default=128, help="BRISQUE is slow; it gets fewer files"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="paired mint-iqa / BRISQUE timings for the ratio"
    )
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    from bench.accuracy import brisque_scorer

    brisque = brisque_scorer()
    with tempfile.TemporaryDirectory() as tmp:
        files = png_files(args.images, Path(tmp))
        model, source = scorer(args.model)
        prompts = ["a photo of a cat on a sofa"] * len(files)
        subset = files[: args.brisque_images]

        def ours(batch: int, workers: int, n: int) -> float:
            model.workers = workers
            return rate(lambda: model.score(files[:n], prompts[:n], batch_size=batch, show_progress=False), n)

        def theirs() -> float:
            return rate(lambda: [brisque(np.asarray(load_image(f))) for f in subset], len(subset))

        ours(32, 2, 64)  # warm-up
        rows = []
        name = f"mint-iqa {model.model.config.preset}"
        for workers in (1, 2):
            for batch in (1, 8, 32):
                r = ours(batch, workers, len(files) if batch > 1 else min(len(files), 128))
                rows.append({"method": name, "batch": batch, "workers": workers, "images/s": round(r, 1)})
                print(rows[-1], flush=True)
        model.workers = 2  # damage maps and word support: the same pass, read out (batch 32, 2 workers)
        for extra in [k for k, has in (("maps", model.has_maps), ("words", model.has_words)) if has]:
            options = {extra: True}
            r = rate(lambda o=options: model.score(files, prompts, 32, False, **o), len(files))
            rows.append({"method": f"{name} + {extra}", "batch": 32, "workers": 2, "images/s": round(r, 1)})
            print(rows[-1], flush=True)
        tiny, _ = scorer(None, "tiny")
        tiny.workers = 2
        tiny.score(files[:64], prompts[:64], batch_size=32, show_progress=False)  # warm-up
        r = rate(lambda: tiny.score(files, prompts, batch_size=32, show_progress=False), len(files))
        rows.append({"method": "mint-iqa tiny", "batch": 32, "workers": 2, "images/s": round(r, 1)})
        # The machine's speed drifts over minutes: the ratio comes from back-to-back pairs of timings.
        pairs = [(ours(32, 2, len(files)), theirs()) for _ in range(args.rounds)]
    mine, base = np.array(pairs).T
    ratio = float(np.median(mine / base))
    print(
        f"paired rounds at batch 32, 2 workers: mint-iqa {np.round(mine, 1).tolist()} images/s, "
        f"BRISQUE {np.round(base, 1).tolist()}; ratios {np.round(mine / base, 1).tolist()}"
    )
    r = float(np.median(base))
    rows.append({"method": "BRISQUE", "batch": 1, "workers": 1, "images/s": round(r, 1)})
    df = pd.DataFrame(rows)
    df["vs BRISQUE"] = (df["images/s"] / r).round(1)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "throughput.csv", index=False)
    pd.DataFrame(
        {
            "round": range(1, len(mine) + 1),
            "mint-iqa images/s": mine.round(1),
            "BRISQUE images/s": base.round(1),
            "ratio": (mine / base).round(2),
        }
    ).to_csv(out / "throughput_rounds.csv", index=False)
    header = (
        f"{len(files)} PNG files (256 px), model: {source}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}; BRISQUE: median of {len(base)} rounds\n\n"
    )
    footer = (
        f"\nmint-iqa at batch 32 with 2 workers vs BRISQUE, {len(mine)} back-to-back rounds: "
        f"{mine.min():.0f}-{mine.max():.0f} vs {base.min():.1f}-{base.max():.1f} images/s, "
        f"median ratio {ratio:.1f}x (range {(mine / base).min():.1f}-{(mine / base).max():.1f}x)\n"
    )
    (out / "throughput.md").write_text(header + df.to_markdown(index=False) + "\n" + footer)
    print(header + df.to_markdown(index=False) + "\n" + footer)


if __name__ == "__main__":
    main()
