"""Generalisation benchmark: degradations the scorer never trained on, applied to photographs it never saw.

    python bench/generalisation.py [--protocol strict] [--per-reference 6] [--no-baselines]

Takes the pristine test images of a protocol (`strict`: references held out of training) and damages
each with kinds of blur, noise, compression and artefacts that the training recipe
(`mint_iqa/data/degradations.py`) does not contain, at five severities chosen from what the operations
usually look like, not from what the model does. For each kind it reports the SRCC between a score and
the severity (pristine = 0; higher score should mean less severe), for the trained scorer's matching
head (quality or authenticity), BRISQUE and PIQE, and the mean over each head's kinds. Writes
bench/results/generalisation_<protocol>.{csv,md,png} and the per-image scores (..._scores.csv).
The degradations live here on purpose: nothing in the package can train on them.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Degrade = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def defocus(img: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Out-of-focus blur: a uniform disc kernel (the training recipe blurs with Gaussians and lines)."""
    import cv2

    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(yy, xx), 0.0, 1.0).astype(np.float32)
    return _to_uint8(cv2.filter2D(_float(img), -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT))


def pixelate(img: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """A low-resolution image blown up: box-averaged down by `factor`, nearest-neighbour back up."""
    from PIL import Image

    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST))


def shot_noise(img: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Photon (Poisson) noise: signal-dependent, unlike the Gaussian noise of the training recipe."""
    return _to_uint8(rng.poisson(_float(img) * photons) / photons)


def impulse(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: a share `amount` of pixels stuck at black or white."""
    out = img.copy()
    hit = rng.random(img.shape[:2]) < amount
    out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)[:, None].astype(np.uint8)
    return out


def webp(img: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    """WebP (lossy) compression: other block and ringing artefacts than JPEG's."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="WEBP", quality=int(quality), method=4)
    return np.asarray(Image.open(buffer).convert("RGB"))


def posterise(img: np.ndarray, bits: float, rng: np.random.Generator) -> np.ndarray:
    """Colour banding: each channel kept to `bits` bits."""
    step = 2 ** (8 - int(bits))
    return ((img // step) * step + step // 2).astype(np.uint8)


def haze(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Veiling haze: contrast pulled towards a light grey."""
    return _to_uint8(_float(img) * (1.0 - amount) + 0.8 * amount)


def chromatic(img: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Lateral chromatic aberration: red and blue planes shifted apart horizontally."""
    s = int(shift)
    out = img.copy()
    out[:, s:, 0], out[:, :-s, 2] = img[:, :-s, 0], img[:, s:, 2]
    return out


def swirl(img: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A local whirl of the image content around a random point (a geometric artefact of another shape
    than the training recipe's elastic warp)."""
    from skimage.transform import swirl as sk_swirl

    h, w = img.shape[:2]
    centre = (rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h)
    out = sk_swirl(_float(img), center=centre, strength=strength, radius=0.3 * min(h, w), mode="reflect")
    return _to_uint8(out)


def blotch(img: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A painted-over blob: a round region whose texture is flattened (median-filtered), feathered in."""
    import cv2

    h, w = img.shape[:2]
    r = radius * min(h, w)
    cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
    yy, xx = np.mgrid[:h, :w]
    mask = np.clip((r - np.hypot(yy - cy, xx - cx)) / (0.25 * r), 0.0, 1.0)[..., None]
    flat = cv2.medianBlur(img, 15).astype(np.float32)
    return (img * (1.0 - mask) + flat * mask + 0.5).astype(np.uint8)


# kind -> (the head that should see it, the operation, its parameter at severities 1 ... 5)
KINDS: dict[str, tuple[str, Degrade, list[float]]] = {
    "defocus": ("quality", defocus, [1.0, 1.8, 2.7, 4.0, 6.0]),
    "pixelate": ("quality", pixelate, [1.5, 2.0, 3.0, 4.0, 6.0]),
    "shot_noise": ("quality", shot_noise, [400, 150, 60, 25, 10]),
    "impulse": ("quality", impulse, [0.003, 0.01, 0.03, 0.06, 0.12]),
    "webp": ("quality", webp, [30, 15, 8, 4, 1]),
    "posterise": ("quality", posterise, [5, 4, 3, 2, 1]),
    "haze": ("quality", haze, [0.15, 0.3, 0.45, 0.6, 0.75]),
    "chromatic": ("quality", chromatic, [1, 2, 3, 5, 8]),
    "swirl": ("authenticity", swirl, [1.0, 2.0, 3.5, 5.5, 8.0]),
    "blotch": ("authenticity", blotch, [0.08, 0.11, 0.14, 0.17, 0.2]),
}


def damaged_set(bases: list[np.ndarray], seed: int = 0) -> pd.DataFrame:
    """One row per (base image, kind, severity), plus the untouched bases (severity 0, kind 'none')."""
    rows = [{"base": b, "kind": "none", "dimension": None, "severity": 0, "image": img} for b, img in enumerate(bases)]
    for k, (name, (dimension, fn, ladder)) in enumerate(KINDS.items()):
        for b, img in enumerate(bases):
            for s, value in enumerate(ladder, start=1):
                rng = np.random.default_rng([seed, k, b, s])
                rows.append({"base": b, "kind": name, "dimension": dimension, "severity": s,
                             "image": fn(img, value, rng)})
    return pd.DataFrame(rows)


def _srcc(rows: pd.DataFrame, method: str, dim: str) -> float:
    """SRCC of a method's scores against -severity over the images it could score (BRISQUE gives none
    for some flat, heavily posterised images)."""
    from mint_iqa.metrics import srcc

    score = rows[f"{method}_{dim}" if method == "mint-iqa" else method].to_numpy(float)
    ok = np.isfinite(score)
    return srcc(score[ok], -rows["severity"].to_numpy(float)[ok])


def table(df: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """SRCC of each method against -severity per kind (with the pristine bases), then its mean over each
    head's kinds. Severities of different kinds are not comparable, so kinds are not pooled."""
    pristine = df[df["kind"] == "none"]
    rows = []
    for kind, group in df[df["kind"] != "none"].groupby("kind", sort=False):
        dim, sub = group["dimension"].iloc[0], pd.concat([group, pristine])
        rows.append({"subset": f"{dim}: {kind}", "n": len(sub), **{m: _srcc(sub, m, dim) for m in methods}})
    kinds = pd.DataFrame(rows)
    means = [{"subset": f"{dim}: mean over kinds", "n": len(pristine) + int((g["n"] - len(pristine)).sum()),
              **g[methods].mean().to_dict()}
             for dim, g in kinds.groupby(kinds["subset"].str.split(":").str[0], sort=False)]
    return pd.concat([pd.DataFrame(means), kinds], ignore_index=True)


def bar_chart(result: pd.DataFrame, methods: list[str], path: Path, protocol: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(result))
    for i, m in enumerate(methods):
        ax.bar(x + (i - (len(methods) - 1) / 2) * 0.8 / len(methods), result[m], 0.8 / len(methods), label=m)
    ax.set_xticks(x, result["subset"], rotation=35, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("SRCC against severity")
    ax.set_title(f"Degradations outside the training recipe ({protocol} test photographs)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=["strict", "paper"], default="strict")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--per-reference", type=int, default=6, help="pristine test images taken per reference")
    parser.add_argument("--no-baselines", action="store_true", help="skip BRISQUE and PIQE (they are slow)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    from mint_iqa.config import DIMENSIONS, load_params
    from mint_iqa.data import manifest
    from mint_iqa.data.splits import split_column
    from mint_iqa.inference import Scorer
    from mint_iqa.io import load_image, write_text
    from mint_iqa.progress import progress

    params = load_params(args.params)
    prepared = Path(params.prepare.out_dir)
    frame, meta = manifest.read(prepared)
    root = manifest.image_root(prepared, meta)
    test = frame[(frame[split_column(args.protocol)] == "test") & (frame["family"] == "pristine")]
    test = test.groupby("ref_id", sort=True).head(args.per_reference)
    bases = [np.asarray(load_image(root / rel)) for rel in test["image"]]
    start = time.perf_counter()
    df = damaged_set(bases, params.seed)
    seen = "unseen in training" if args.protocol == "strict" else "other crops of them seen in training"
    print(f"{len(df)} images from {len(bases)} pristine test photographs of {test['ref_id'].nunique()} references "
          f"({seen}) in {time.perf_counter() - start:.1f} s")

    scorer = Scorer.load(Path(params.train.out_dir) / args.protocol / "best")
    prompts = [test["prompt"].iloc[b] for b in df["base"]]
    scores = scorer.score(list(df["image"]), prompts, batch_size=32, scale="raw")
    for dim in DIMENSIONS:
        df[f"mint-iqa_{dim}"] = scores[dim].to_numpy()
    methods = ["mint-iqa"]
    if not args.no_baselines:
        from bench.accuracy import brisque_scorer, piqe_scorer

        for name, make in (("brisque", brisque_scorer), ("piqe", piqe_scorer)):
            fn = make()
            df[name] = [fn(img) for img in progress(df["image"], desc=name, unit="img")]
            methods.append(name)
    result = table(df, methods)
    text = result.to_markdown(index=False, floatfmt=".3f")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"generalisation_{args.protocol}"
    result.to_csv(f"{stem}.csv", index=False, float_format="%.4f")
    scored = df.drop(columns="image").assign(reference=[test["ref_id"].iloc[b] for b in df["base"]])
    scored.to_csv(f"{stem}_scores.csv", index=False, float_format="%.5f")
    bar_chart(result, methods, Path(f"{stem}.png"), args.protocol)
    unscored = {m: int((~np.isfinite(df[m].to_numpy(float))).sum()) for m in methods if m in df}
    missing = "".join(f"\n{m} returned no score for {n} images; its rows leave them out.\n"
                      for m, n in unscored.items() if n)
    write_text(args.out / f"generalisation_{args.protocol}.md",
               f"# SRCC against severity on degradations outside the training recipe "
               f"(`{args.protocol}` test photographs, {len(bases)} pristine + {len(df) - len(bases)} damaged)\n\n"
               f"{text}\n{missing}")
    print(f"\n== unseen degradations, {args.protocol} test photographs: SRCC against severity ==")
    print(text)


if __name__ == "__main__":
    main()
