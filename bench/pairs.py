"""Clean against damaged: does a large photograph score higher than its own damaged copy?

    python bench/pairs.py [--model artifacts/scorer/strict/best] [--photos DIR ...] [--limit 20]

Takes photographs (and a few renders) of at least 1,000 px that are not training references (default: the
Debian packages `lomiri-wallpapers-16.04`, `lomiri-wallpapers-20.04` and `mate-backgrounds`' nature folder;
photographs from other sources via --photos), each scaled to at most `--long-side` px, and damages each copy
at full resolution: JPEG at quality 5, 10 and 20, gaussian noise (sigma 0.1) and a 7-px box blur. A pair
counts as right when the clean photograph gets the higher quality score. Prints and writes
bench/results/pairs.{csv,md}, with BRISQUE and PIQE on the same pairs.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_PHOTOS = [Path("/usr/share/backgrounds"), Path("/usr/share/backgrounds/mate/nature")]


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    out = img / 255.0 + np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def box_blur(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.blur(img, (size, size), borderType=cv2.BORDER_REFLECT)


DAMAGE = {
    "jpeg q5": lambda img, i: jpeg(img, 5),
    "jpeg q10": lambda img, i: jpeg(img, 10),
    "jpeg q20": lambda img, i: jpeg(img, 20),
    "gaussian noise 0.1": lambda img, i: noise(img, 0.1, i),
    "box blur 7 px": lambda img, i: box_blur(img, 7),
}


def photographs(folders: list[Path], limit: int, long_side: int) -> list[tuple[str, np.ndarray]]:
    """Up to `limit` photographs (JPEG files, short side >= 1,000 px after scaling to `long_side`)."""
    out = []
    for path in sorted(p for folder in folders for p in folder.glob("*.jpg")):
        img = Image.open(path).convert("RGB")
        scale = min(1.0, long_side / max(img.size))
        if scale < 1:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        if min(img.size) >= 1000 or max(img.size) >= 1000 and min(img.size) >= 700:
            out.append((path.stem, np.asarray(img)))
        if len(out) == limit:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts" / "scorer" / "strict" / "best")
    parser.add_argument("--photos", type=Path, action="append")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--long-side", type=int, default=1600)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    from mint_iqa.inference.scoring import Scorer
    from mint_iqa.io import write_text

    photos = photographs(args.photos or DEFAULT_PHOTOS, args.limit, args.long_side)
    if not photos:
        raise SystemExit(
            "no photographs found: install lomiri-wallpapers-16.04 / mate-backgrounds or pass --photos"
        )
    scorer = Scorer.load(args.model)
    model = args.model.resolve()
    shown = model.relative_to(ROOT) if model.is_relative_to(ROOT) else model  # no machine paths in results
    methods = {
        "mint-iqa": lambda imgs: scorer.score(imgs, "a photograph", batch_size=8, show_progress=False)[
            "quality"
        ].to_numpy()
    }
    if not args.no_baselines:
        from bench.accuracy import brisque_scorer, piqe_scorer

        for name, make in (("brisque", brisque_scorer), ("piqe", piqe_scorer)):
            fn = make()
            methods[name] = lambda imgs, fn=fn: np.array([fn(img) for img in imgs])
    rows = []
    for i, (name, clean) in enumerate(photos):
        images = [clean] + [damage(clean, i) for damage in DAMAGE.values()]
        scores = {m: fn(images) for m, fn in methods.items()}
        for k, kind in enumerate(DAMAGE, start=1):
            rows.append(
                {
                    "photo": name,
                    "size": f"{clean.shape[1]}x{clean.shape[0]}",
                    "damage": kind,
                    **{m: bool(s[0] > s[k]) for m, s in scores.items()},
                }
            )
        print(f"{i + 1}/{len(photos)} {name}", flush=True)
    df = pd.DataFrame(rows)
    table = df.groupby("damage", sort=False)[list(methods)].mean().reset_index()
    table.loc[len(table)] = ["all pairs", *df[list(methods)].mean()]
    text = table.to_markdown(index=False, floatfmt=".3f")
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "pairs.csv", index=False)
    write_text(
        args.out / "pairs.md",
        f"# Clean photograph scored above its damaged copy (share of pairs)\n\n"
        f"{len(photos)} photographs, {df['size'].iloc[0]} and similar, model `{shown}`.\n\n{text}\n",
    )
    print(text)


if __name__ == "__main__":
    main()
