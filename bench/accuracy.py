"""Accuracy benchmark: the trained scorer vs BRISQUE and PIQE on the same proxy test images.

    python bench/accuracy.py [--protocol strict] [--protocol paper]

For each protocol, scores that protocol's test split with its best scorer, BRISQUE (libsvm model shipped
in the `brisque` wheel) and PIQE (`pypiqe`), both classic no-reference metrics that run offline
(lower is better for both, so they are negated). Prints SRCC per dimension over all test images, with the
share of the most common label value (`ties`) and the SRCC a tie-free perfect ranking could reach
(`ceiling`), then per defect kind over the test images showing it (composites: other defects vary too),
and writes the table to bench/results/accuracy_<protocol>.{csv,md}. BRISQUE and PIQE only judge technical
quality: they get no prompt, so correspondence is the scorer's alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mint_iqa.config import DIMENSIONS, load_params  # noqa: E402
from mint_iqa.evaluate import predict_split  # noqa: E402
from mint_iqa.io import load_image  # noqa: E402
from mint_iqa.metrics import srcc, srcc_ceiling, tie_share  # noqa: E402


def brisque_scorer():
    from brisque import BRISQUE

    class Brisque(BRISQUE):
        """The package's feature scaling calls float() on 1-element arrays, an error under numpy 2."""

        def scale_features(self, features):
            flat = np.array([np.asarray(f, dtype=np.float64).reshape(-1)[0] for f in features])
            lo = np.array(self.scale_params["min_"], dtype=np.float64).reshape(-1)
            hi = np.array(self.scale_params["max_"], dtype=np.float64).reshape(-1)
            return -1 + 2.0 / (hi - lo) * (flat - lo)

    model = Brisque(url=False)
    return lambda img: -float(model.score(img))


def piqe_scorer():
    from pypiqe import piqe

    return lambda img: -float(piqe(img)[0])


def table(df: pd.DataFrame, baselines: list[str]) -> pd.DataFrame:
    """SRCC per dimension over all test images (with tie share and ceiling), then per defect kind."""
    from mint_iqa.data.degradations import REGISTRY
    from mint_iqa.data.synth import kinds_of

    rows = []
    for dim in DIMENSIONS:
        label = df[dim].to_numpy(float)
        rows.append(
            {
                "subset": f"all images: {dim}",
                "n": len(df),
                "ties": tie_share(label),
                "ceiling": srcc_ceiling(label),
                "mint-iqa": srcc(df[f"{dim}_pred"], label),
                **{b: srcc(df[b], label) if dim != "correspondence" else np.nan for b in baselines},
            }
        )
    shown = [set(kinds_of(d)) for d in df["defects"]]
    for dim in ("quality", "authenticity"):
        for kind in REGISTRY[dim]:
            sub = df[[kind in s for s in shown]]
            if len(sub) >= 5:
                rows.append(
                    {
                        "subset": f"{dim}: {kind}",
                        "n": len(sub),
                        "ties": tie_share(sub[dim].to_numpy()),
                        "ceiling": srcc_ceiling(sub[dim].to_numpy()),
                        "mint-iqa": srcc(sub[f"{dim}_pred"], sub[dim]),
                        **{b: srcc(sub[b], sub[dim]) for b in baselines},
                    }
                )
    return pd.DataFrame(rows)


def write(result: pd.DataFrame, out_dir: Path, name: str, title: str, footer: str) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    result.to_csv(out_dir / f"{name}.csv", index=False, float_format="%.4f")
    text = result.to_markdown(index=False, floatfmt=".3f")
    (out_dir / f"{name}.md").write_text(f"# {title}\n\n{text}\n\n{footer}\n")
    return text


def run(protocol: str, params_path: Path, out_dir: Path) -> pd.DataFrame:
    params = load_params(params_path)
    df = predict_split(params, protocol)
    prepared = Path(params.prepare.out_dir)
    images = [np.asarray(load_image(prepared / rel)) for rel in df["image"]]
    timings = {}
    for name, make in (("brisque", brisque_scorer), ("piqe", piqe_scorer)):
        fn = make()
        start = time.perf_counter()
        df[name] = [fn(img) for img in images]
        timings[name] = len(images) / (time.perf_counter() - start)
    result = table(df, ["brisque", "piqe"])
    text = write(
        result,
        out_dir,
        f"accuracy_{protocol}",
        f"SRCC on the `{protocol}` test split ({len(df)} images)",
        f"Throughput on this machine: BRISQUE {timings['brisque']:.1f} img/s, "
        f"PIQE {timings['piqe']:.1f} img/s.",
    )
    print(f"\n== {protocol} test split: SRCC (higher is better) ==")
    print(text)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", action="append", choices=["paper", "strict"])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    for protocol in args.protocol or ["strict", "paper"]:
        run(protocol, args.params, args.out)


if __name__ == "__main__":
    main()
