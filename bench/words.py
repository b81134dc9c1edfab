"""Word support against the learned correspondence score, on photographs the scorer never trained on.

    python bench/words.py [--model artifacts/scorer/strict/best] [--per-photo 10]

For images of the `strict` test split (photographs, captions and defects unseen in training), each with
its true caption and with the mismatches of the correspondence ladder (`mint_iqa.data.prompts`: an absent
object, a wrong attribute, scene or subject, another photograph's caption), it scores every prompt two
ways: the `strict` scorer's correspondence, and the word evidence of `mint_iqa.models.words` (the log of
the best-supported nameable word's ImageNet probability; prompts with no nameable word get the median).
A pair counts as right when the true caption scores higher; a tie counts half. Also prints each score's
SRCC against the split's correspondence labels. Writes bench/results/words.{csv,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def evidence(probs: np.ndarray, prompts: list[str]) -> np.ndarray:
    """Log support of each prompt's best-supported nameable word (NaN when it has none)."""
    from mint_iqa.models.words import support

    out = []
    for p, prompt in zip(probs, prompts):
        values = [v for _, v in support(p, prompt)]
        out.append(np.log(max(values) + 1e-6) if values else np.nan)
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts" / "scorer" / "strict" / "best")
    parser.add_argument("--prepared", type=Path, default=ROOT / "artifacts" / "prepared")
    parser.add_argument("--raw", type=Path, default=ROOT / "data")
    parser.add_argument("--per-photo", type=int, default=10, help="test images per photograph")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    from mint_iqa.data import manifest
    from mint_iqa.data.prompts import MISMATCHES, make_prompt
    from mint_iqa.data.references import load_references
    from mint_iqa.inference import Scorer
    from mint_iqa.io import load_image, write_text
    from mint_iqa.metrics import srcc
    from mint_iqa.models.tensors import to_batch
    from mint_iqa.models.words import class_probs, imagenet_classifier

    df, meta = manifest.read(args.prepared)
    root = manifest.image_root(args.prepared, meta)
    test = df[df["split_strict"] == "test"].reset_index(drop=True)
    refs = {ref.id: ref for ref, _ in load_references(args.raw)}
    rng = np.random.default_rng(0)
    chosen = test.groupby("ref_id", sort=True).head(args.per_photo).reset_index(drop=True)
    images = [np.asarray(load_image(root / p).convert("RGB")) for p in chosen["image"]]
    net = imagenet_classifier()
    small = [np.asarray(load_image(root / p).convert("RGB").resize((224, 224), 3)) for p in chosen["image"]]
    probs = np.concatenate(
        [class_probs(net, to_batch(small[i : i + 32])).numpy() for i in range(0, len(small), 32)]
    )
    scorer = Scorer.load(args.model)

    def both(prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        learned = scorer.score(images, prompts, batch_size=16, show_progress=False, scale="raw")
        return learned["correspondence"].to_numpy(), evidence(probs, prompts)

    levels = {"true caption": 0, **{kind: i + 1 for i, kind in enumerate(MISMATCHES)}}
    prompts = {
        name: [make_prompt(refs[r], list(refs.values()), level, rng).text for r in chosen["ref_id"]]
        for name, level in levels.items()
    }
    scores = {name: both(p) for name, p in prompts.items()}
    fill = np.nanmedian(np.concatenate([e for _, e in scores.values()]))
    rows = []
    true_learned, true_words = scores["true caption"]
    for name in MISMATCHES:
        learned, words = scores[name]
        tw, w = np.nan_to_num(true_words, nan=fill), np.nan_to_num(words, nan=fill)
        rows.append(
            {
                "prompt": name,
                "learned correspondence": float(
                    np.mean((true_learned > learned) + 0.5 * (true_learned == learned))
                ),
                "word evidence": float(np.mean((tw > w) + 0.5 * (tw == w))),
                "nameable share": float(np.mean(~np.isnan(words))),
            }
        )
    table = pd.DataFrame(rows)
    full_learned = scorer.score(
        [root / p for p in test["image"]],
        list(test["prompt"]),
        batch_size=16,
        show_progress=False,
        scale="raw",
    )["correspondence"]
    small_all = [np.asarray(load_image(root / p).convert("RGB").resize((224, 224), 3)) for p in test["image"]]
    probs_all = np.concatenate(
        [class_probs(net, to_batch(small_all[i : i + 32])).numpy() for i in range(0, len(small_all), 32)]
    )
    ev = evidence(probs_all, list(test["prompt"]))
    ev = np.nan_to_num(ev, nan=np.nanmedian(ev))
    labels = test["correspondence"].to_numpy()
    text = table.to_markdown(index=False, floatfmt=".3f")
    summary = (
        f"SRCC against the `strict` test labels ({len(test)} images): learned correspondence "
        f"{srcc(full_learned.to_numpy(), labels):.3f}, word evidence {srcc(ev, labels):.3f}."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "words.csv", index=False)
    write_text(
        args.out / "words.md",
        f"# True caption scored above a mismatched one (share of pairs)\n\n"
        f"{len(chosen)} `strict` test images ({chosen['ref_id'].nunique()} photographs never trained on)."
        f"\n\n{text}\n\n{summary}\n",
    )
    print(text, summary, sep="\n\n")


if __name__ == "__main__":
    main()
