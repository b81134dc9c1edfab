"""Word evidence and the scorer's correspondence, on photographs the scorer never trained on.

    python bench/words.py [--model artifacts/scorer/strict/best] [--per-photo 10]

For images of the `strict` test split (photographs, captions and defects unseen in training), each with
its true caption and with the mismatches of the correspondence ladder (`mint_iqa.data.prompts`: an absent
object, a wrong attribute, scene or subject, another photograph's caption), it scores every prompt two
ways: the `strict` scorer's correspondence (with the word evidence fused in, when the model has a
`word_fusion`), and the word evidence alone (`mint_iqa.models.words`: the log of the best-supported
nameable word's ImageNet probability; prompts with no nameable word get the median).
A pair counts as right when the true caption scores higher; a tie counts half. Also prints each score's
SRCC against the split's correspondence labels. Then each true caption with its first nameable word
swapped for another object (`swap_words`): the pairwise share as above, and the precision, recall and F1
of flagging exactly the swapped word by its support (the product's rule: support under
`mint_iqa.models.words.UNSUPPORTED`, 0.1; other thresholds beside it). Writes
bench/results/words.{csv,md} and words_flagged.csv; with `--clean`, the same for the undamaged photographs
themselves (each whole, as the scorer reads a user's photograph for correspondence, with as many
caption draws), words_clean.*.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def evidence(model, images: list[np.ndarray], prompts: list[str]) -> np.ndarray:
    """Word evidence of each prompt over its image (NaN: no nameable word), from the scorer's own head."""
    from mint_iqa.inference.scoring import evidence_arrays

    out = evidence_arrays(model, images, prompts)
    if out is None:
        raise SystemExit("this scorer's tower has no ImageNet head (preset lite0 with vision.classes)")
    return out


# fmt: off
OBJECTS = (  # common things ImageNet has classes for: what a swapped word becomes
    "dog", "cat", "car", "bicycle", "pizza", "banana", "guitar", "umbrella", "boat", "airliner", "horse",
    "chair", "laptop", "clock", "teapot", "shoe", "bottle", "tractor", "lion", "elephant", "zebra", "piano",
    "mushroom", "strawberry", "train", "bus", "tiger", "bear", "pineapple", "castle", "lighthouse", "volcano",
)
# fmt: on


def swap_words(scorer, images, captions, rng) -> tuple[list, list[dict]]:
    """Each caption with one of its nameable words, drawn at random, replaced by an object none of its
    words can name (None when it has no nameable word); and, per rule and support threshold, the
    precision, recall and F1 of flagging exactly the swapped word, with the share of true captions that
    get a word flagged. Rules: `every word` flags each word under the threshold; `subject` only the
    prompt's subject (`words.unsupported`, the product's rule)."""
    import re

    from mint_iqa.models.words import Lexicon, prompt_words, unsupported

    lexicon = Lexicon.load()
    objects = [o for o in OBJECTS if lexicon.lemma(o)]
    swapped, targets = [], []
    for caption in captions:
        words = prompt_words(caption, lexicon)
        named = {c for _, lemma in words for c in lexicon.classes_of(lemma)}
        choices = [o for o in objects if not named & set(lexicon.classes_of(lexicon.lemma(o)))]
        if not words or not choices:
            swapped.append(None)
            targets.append(None)
            continue
        old, new = words[int(rng.integers(len(words)))][0], choices[int(rng.integers(len(choices)))]
        at = re.search(rf"\b{re.escape(old)}\b", caption.lower()).start()
        swapped.append(caption[:at] + new + caption[at + len(old) :])
        targets.append(new)
    keep = [i for i, p in enumerate(swapped) if p is not None]
    probs = scorer.score([images[i] for i in keep], [swapped[i] for i in keep], words=True)["words"]
    truth = scorer.score([images[i] for i in keep], [captions[i] for i in keep], words=True)["words"]
    rules = {
        "every word": lambda pairs, prompt, t: {w for w, v in pairs if v < t},
        "subject": lambda pairs, prompt, t: set(unsupported(pairs, prompt, below=t)),
    }
    rows = []
    for (rule, flag), threshold in ((r, t) for r in rules.items() for t in (0.02, 0.05, 0.1, 0.2)):
        tp = fp = fn = 0
        for pairs, i in zip(probs, keep):
            flagged = flag(pairs, swapped[i], threshold)
            hit = targets[i] in flagged
            tp, fp, fn = tp + hit, fp + len(flagged - {targets[i]}), fn + (not hit)
        alarms = [bool(flag(pairs, captions[i], threshold)) for pairs, i in zip(truth, keep)]
        false_alarm = float(np.mean(alarms))
        rows.append(
            {
                "rule": rule,
                "threshold": threshold,
                "precision": tp / max(tp + fp, 1),
                "recall": tp / max(tp + fn, 1),
                "F1": 2 * tp / max(2 * tp + fp + fn, 1),
                "true captions with a word flagged": false_alarm,
                "F1 counting true captions": 2 * tp / max(2 * tp + fp + fn + sum(alarms), 1),
            }
        )
    return swapped, rows


def both_subset(scorer, images, prompts, keep) -> tuple[np.ndarray, np.ndarray]:
    """The scorer's correspondence and the word evidence of the `keep` items."""
    subset, texts = [images[i] for i in keep], [prompts[i] for i in keep]
    scored = scorer.score(subset, texts, batch_size=16, show_progress=False, scale="raw")
    return scored["correspondence"].to_numpy(), evidence(scorer.model, subset, texts)


# long: the whole measurement as a script, top to bottom, ending in its tables
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts" / "scorer" / "strict" / "best")
    parser.add_argument("--prepared", type=Path, default=ROOT / "artifacts" / "prepared")
    parser.add_argument("--raw", type=Path, default=ROOT / "data")
    parser.add_argument("--per-photo", type=int, default=10, help="test images per photograph")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--clean",
        action="store_true",
        help="score the undamaged photographs themselves (whole, resized as the scorer reads them for "
        "correspondence) instead of their damaged 256-px crops; writes words_clean.*",
    )
    args = parser.parse_args()

    from mint_iqa.data import manifest
    from mint_iqa.data.prompts import MISMATCHES, make_prompt
    from mint_iqa.data.references import load_references
    from mint_iqa.inference.scoring import Scorer
    from mint_iqa.io import load_image, write_text
    from mint_iqa.metrics import srcc

    df, meta = manifest.read(args.prepared)
    root = manifest.image_root(args.prepared, meta)
    test = df[df["split_strict"] == "test"].reset_index(drop=True)
    loaded = load_references(args.raw)
    refs = {ref.id: ref for ref, _ in loaded}
    rng = np.random.default_rng(0)
    chosen = test.groupby("ref_id", sort=True).head(args.per_photo).reset_index(drop=True)
    scorer = Scorer.load(args.model)
    if args.clean:  # each photograph as a user would give it, as the scorer reads it whole for correspondence
        photos = {ref.id: pixels for ref, pixels in loaded}
        images = scorer.decode([photos[r] for r in chosen["ref_id"]])
    else:
        images = [np.asarray(load_image(root / p).convert("RGB")) for p in chosen["image"]]

    def both(prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        scored = scorer.score(images, prompts, batch_size=16, show_progress=False, scale="raw")
        return scored["correspondence"].to_numpy(), evidence(scorer.model, images, prompts)

    levels = {"true caption": 0, **{kind: i + 1 for i, kind in enumerate(MISMATCHES)}}
    prompts = {
        name: [make_prompt(refs[r], list(refs.values()), level, rng).text for r in chosen["ref_id"]]
        for name, level in levels.items()
    }
    scores = {name: both(p) for name, p in prompts.items()}
    fill = np.nanmedian(np.concatenate([e for _, e in scores.values()]))
    rows = []
    true_scored, true_words = scores["true caption"]
    for name in MISMATCHES:
        scored, words = scores[name]
        tw, w = np.nan_to_num(true_words, nan=fill), np.nan_to_num(words, nan=fill)
        rows.append(
            {
                "prompt": name,
                "scorer correspondence": float(
                    np.mean((true_scored > scored) + 0.5 * (true_scored == scored))
                ),
                "word evidence": float(np.mean((tw > w) + 0.5 * (tw == w))),
                "nameable share": float(np.mean(~np.isnan(words))),
            }
        )
    swapped, swap_rows = swap_words(scorer, images, prompts["true caption"], rng)
    true_scored = scores["true caption"][0]
    keep = [i for i, p in enumerate(swapped) if p is not None]
    swap_scored, swap_words_ev = both_subset(scorer, images, swapped, keep)
    tw = np.nan_to_num(scores["true caption"][1][keep], nan=fill)
    sw = np.nan_to_num(swap_words_ev, nan=fill)
    rows.append(
        {
            "prompt": "one nameable word swapped for another object",
            "scorer correspondence": float(
                np.mean((true_scored[keep] > swap_scored) + 0.5 * (true_scored[keep] == swap_scored))
            ),
            "word evidence": float(np.mean((tw > sw) + 0.5 * (tw == sw))),
            "nameable share": len(keep) / len(swapped),
        }
    )
    table = pd.DataFrame(rows)
    all_images = [np.asarray(load_image(root / p).convert("RGB")) for p in test["image"]]
    all_prompts = list(test["prompt"])
    scored_all = scorer.score(all_images, all_prompts, batch_size=16, show_progress=False, scale="raw")
    ev = evidence(scorer.model, all_images, all_prompts)
    ev = np.nan_to_num(ev, nan=np.nanmedian(ev))
    labels = test["correspondence"].to_numpy()
    text = table.to_markdown(index=False, floatfmt=".3f")
    flags = pd.DataFrame(swap_rows).to_markdown(index=False, floatfmt=".3f")
    summary = (
        f"SRCC against the `strict` test labels ({len(test)} images): scorer correspondence "
        f"{srcc(scored_all['correspondence'].to_numpy(), labels):.3f}, word evidence {srcc(ev, labels):.3f}."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "words_clean" if args.clean else "words"
    table.to_csv(args.out / f"{name}.csv", index=False)
    write_text(
        args.out / f"{name}.md",
        f"# True caption scored above a mismatched one (share of pairs)\n\n"
        f"{len(chosen)} {'undamaged whole photographs' if args.clean else '`strict` test images'} "
        f"({chosen['ref_id'].nunique()} photographs never trained on)."
        f"\n\n{text}\n\n{summary}\n\n# Flagging the swapped word (support under a threshold)\n\n{flags}\n",
    )
    pd.DataFrame(swap_rows).to_csv(args.out / f"{name}_flagged.csv", index=False)
    print(text, summary, flags, sep="\n\n")


if __name__ == "__main__":
    main()
