"""Leave-kinds-out with baselines: the `generalise` step's images scored by BRISQUE and PIQE too.

    python bench/leave_kinds_out.py

Reads `artifacts/generalisation/` (written by `mint-iqa generalise` / `dvc repro generalise`: composites of
the `strict` test photographs made with defect kinds the `lko` scorer never trained on), scores every image
with BRISQUE and PIQE, and prints SRCC per dimension and per held-out kind for: the `lko` scorer (kinds
and photographs unseen), the `strict` scorer (photographs unseen, kinds seen) and the two baselines.
Writes bench/results/leave_kinds_out.{csv,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=ROOT / "artifacts" / "generalisation")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    from bench.accuracy import brisque_scorer, piqe_scorer
    from mint_iqa.data.degradations import REGISTRY
    from mint_iqa.data.synth import kinds_of
    from mint_iqa.io import load_image, write_text
    from mint_iqa.metrics import srcc, tie_share
    from mint_iqa.progress import progress

    df = pd.read_csv(args.set / "scores.csv")
    images = [np.asarray(load_image(args.set / p)) for p in df["image"]]
    for name, make in (("brisque", brisque_scorer), ("piqe", piqe_scorer)):
        fn = make()
        df[name] = [fn(img) for img in progress(images, desc=name, unit="img")]
    methods = {
        "mint-iqa (kinds unseen)": "lko_{dim}",
        "mint-iqa (kinds seen)": "strict_{dim}",
        "brisque": "brisque",
        "piqe": "piqe",
    }
    shown = [set(kinds_of(d)) for d in df["defects"]]
    rows = []
    for dim in ("quality", "authenticity"):
        rows.append(
            {
                "subset": f"{dim}: pooled",
                "n": len(df),
                "ties": tie_share(df[dim].to_numpy()),
                **{m: srcc(df[c.format(dim=dim)], df[dim]) for m, c in methods.items()},
            }
        )
        for kind in sorted({k for s in shown for k in s} & set(REGISTRY[dim])):
            sub = df[[kind in s for s in shown]]
            rows.append(
                {
                    "subset": f"{dim}: {kind}",
                    "n": len(sub),
                    "ties": tie_share(sub[dim].to_numpy()),
                    **{m: srcc(sub[c.format(dim=dim)], sub[dim]) for m, c in methods.items()},
                }
            )
    table = pd.DataFrame(rows)
    text = table.to_markdown(index=False, floatfmt=".3f")
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "leave_kinds_out.csv", index=False, float_format="%.4f")
    held = json.loads((ROOT / "metrics" / "generalisation.json").read_text()).get("held_out", [])
    write_text(
        args.out / "leave_kinds_out.md",
        f"# Leave-kinds-out: SRCC on defect kinds and photographs the "
        f"`lko` scorer never saw ({len(df)} images)\n\nHeld-out kinds: {', '.join(held)}.\n\n{text}\n",
    )
    print(text)


if __name__ == "__main__":
    main()
