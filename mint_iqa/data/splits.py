"""Evaluation protocols.

* `paper`: random by image, as in the released MINT-IQA code (prompts and references are shared
  between train and test, so it measures fit more than generalisation).
* `strict`: content-disjoint: references (proxy) or prompts (real data) are dealt into k folds; the
  test fold and the validation fold (the next one) never share content with training.
* `lko` (leave kinds out): `strict`'s references, and a fold of defect kinds never seen in training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mint_iqa.config import SplitConfig

SPLITS = ("train", "val", "test")


def paper_split(n: int, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    order = np.random.default_rng([seed, 0x5A9E]).permutation(n)
    n_test = int(round(n * fractions[2]))
    n_val = int(round(n * fractions[1]))
    split = np.full(n, "train", dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test : n_test + n_val]] = "val"
    return split


def strict_folds(groups: pd.Series, folds: int, seed: int) -> pd.Series:
    """Fold of each row: unique content groups shuffled and dealt round-robin into `folds` folds."""
    unique = sorted(groups.unique())
    order = np.random.default_rng([seed, 0x57C7]).permutation(len(unique))
    fold_of = {unique[i]: rank % folds for rank, i in enumerate(order)}
    return groups.map(fold_of).astype(int)


def strict_split(fold: pd.Series, folds: int, test_fold: int) -> pd.Series:
    """train / val / test for one choice of test fold (validation = the following fold)."""
    val_fold = (test_fold + 1) % folds
    return fold.map(lambda f: "test" if f == test_fold else "val" if f == val_fold else "train")


def assign(df: pd.DataFrame, cfg: SplitConfig, seed: int) -> pd.DataFrame:
    """Add `split_paper`, `strict_fold` and `split_strict` columns (grouping by `ref_id`)."""
    p = cfg.paper
    df = df.copy()
    df["split_paper"] = paper_split(len(df), (p.train, p.val, p.test), seed)
    df["strict_fold"] = strict_folds(df["ref_id"], cfg.strict.folds, seed)
    df["split_strict"] = strict_split(df["strict_fold"], cfg.strict.folds, cfg.strict.test_fold)
    return df


def split_rows(frame: pd.DataFrame, protocol: str, split: str) -> pd.DataFrame:
    """The manifest rows of `split` (train / val / test) under `protocol`, renumbered from 0."""
    return frame[frame[split_column(protocol)] == split].reset_index(drop=True)


def split_column(protocol: str) -> str:
    """The manifest column of a protocol's splits (`lko` uses the `strict` references)."""
    if protocol not in ("paper", "strict", "lko"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'paper', 'strict' or 'lko'")
    return "split_strict" if protocol == "lko" else f"split_{protocol}"


def kind_folds(groups: dict[str, str], folds: int, seed: int) -> dict[str, int]:
    """Fold of each defect kind: within each group (blur, noise, geometry, ...) the kinds are shuffled and
    dealt round-robin, continuing from group to group, so every fold holds kinds of most groups and a held-out
    fold asks for a new kind of a known family, not for a family never seen."""
    out, rank = {}, 0
    rng = np.random.default_rng([seed, 0x4B1D])
    for group in sorted(set(groups.values())):
        kinds = sorted(k for k, g in groups.items() if g == group)
        for i in rng.permutation(len(kinds)):
            out[kinds[i]] = rank % folds
            rank += 1
    return out


def held_out_kinds(groups: dict[str, str], folds: int, fold: int, seed: int) -> list[str]:
    return sorted(k for k, f in kind_folds(groups, folds, seed).items() if f == fold)
