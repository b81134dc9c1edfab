"""Accuracy benchmark: the trained scorer vs BRISQUE and PIQE on the same proxy test images.

    python bench/accuracy.py [--protocol strict] [--protocol paper]

For each protocol, scores that protocol's test split with its best scorer, BRISQUE (libsvm model shipped
in the `brisque` wheel) and PIQE (`pypiqe`), both classic no-reference metrics that run offline
(lower is better for both, so they are negated). Prints SRCC per dimension, per family and per
distortion type, and writes the table to bench/results/accuracy_<protocol>.{csv,md}.
BRISQUE and PIQE only judge technical quality: they get no prompt, so correspondence is the scorer's alone.

It also shows how much of the scorer's SRCC gap is the order among flawless images (bench/results/
ties_<protocol>.{csv,md}). In each proxy test split about 70 % of the images are flawless in a given
dimension and share its top label, so scores without ties cannot pass the tie ceiling (`srcc_ceiling`,
about 0.81). Per dimension: the evaluated SRCC, the ceiling, the SRCC when every score above a threshold
fitted on the validation split is set to that threshold (the scorer stating "flawless" with one value),
the share of flawless and of flawed test images put at that value, and how well the scores tell flawless
from flawed alone (AUC: the chance that a flawless image scores above a flawed one). An analysis, not how
mint-iqa scores: the tie is a property of the proxy labels, not of images, and on data with continuous
labels a shared top value would throw away order.
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
from mint_iqa.metrics import srcc, srcc_ceiling  # noqa: E402


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
    """SRCC per dimension over all test images, then per family and distortion type (each with the pristine
    images, so a metric must rank degraded below pristine as well as order the levels)."""
    rows = []
    for dim in ("quality", "authenticity", "correspondence"):
        rows.append({"subset": f"all images: {dim}", "n": len(df), "mint-iqa": srcc(df[f"{dim}_pred"], df[dim]),
                     **{b: srcc(df[b], df[dim]) if dim != "correspondence" else np.nan for b in baselines}})
    pristine = df[df["family"] == "pristine"]
    for family in ("quality", "authenticity"):
        fam = df[df["family"] == family]
        for name, group in [("all types", fam), *fam.groupby("distortion")]:
            sub = pd.concat([group, pristine])
            rows.append({"subset": f"{family}: {name}", "n": len(sub),
                         "mint-iqa": srcc(sub[f"{family}_pred"], sub[family]),
                         **{b: srcc(sub[b], sub[family]) for b in baselines}})
    return pd.DataFrame(rows)


def saturation(pred: np.ndarray, label: np.ndarray) -> float:
    """The threshold on `pred` (one of 96 quantiles) above which one shared value gives the highest SRCC."""
    candidates = np.quantile(pred, np.linspace(0.05, 1.0, 96))
    return float(max(candidates, key=lambda t: srcc(np.minimum(pred, t), label)))


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(positive)), np.zeros(len(negative))], np.r_[positive, negative]))


def ties_table(val: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Per dimension: SRCC as evaluated, the tie ceiling, and with one shared "flawless" value (module docstring)."""
    rows = []
    for dim in DIMENSIONS:
        v, t = val[val[dim] >= 0], test[test[dim] >= 0]  # known labels (NaN and -1 fail the test)
        flawless = t[dim].to_numpy() >= float(t[dim].max())
        cut = saturation(v[f"{dim}_pred"].to_numpy(), v[dim].to_numpy())
        pred = t[f"{dim}_pred"].to_numpy()
        rows.append({"dimension": dim, "n": len(t), "srcc": srcc(pred, t[dim]), "ceiling": srcc_ceiling(t[dim].to_numpy()),
                     "srcc one flawless value": srcc(np.minimum(pred, cut), t[dim]), "threshold": cut,
                     "flawless at it": float(np.mean(pred[flawless] >= cut)),
                     "flawed at it": float(np.mean(pred[~flawless] >= cut)),
                     "auc flawless vs flawed": auc(pred[flawless], pred[~flawless])})
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
    text = write(result, out_dir, f"accuracy_{protocol}", f"SRCC on the `{protocol}` test split ({len(df)} images)",
                 f"Throughput on this machine: BRISQUE {timings['brisque']:.1f} img/s, PIQE {timings['piqe']:.1f} img/s.")
    print(f"\n== {protocol} test split: SRCC (higher is better) ==")
    print(text)
    ties = write(ties_table(predict_split(params, protocol, "val"), df), out_dir, f"ties_{protocol}",
                 f"`{protocol}` test split: SRCC and the order among flawless images",
                 "Threshold fitted on the validation split. An analysis, not how mint-iqa scores (bench/accuracy.py).")
    print(f"\n== {protocol} test split: the order among flawless images ==")
    print(ties)
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
