"""The tie analysis (bench/accuracy.py): AUC as the pairwise count, and a shared "flawless" value that passes the
tie ceiling only where the labels tie."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mint_iqa.metrics import srcc, srcc_ceiling

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("accuracy", ROOT / "bench" / "accuracy.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_auc_is_the_share_of_pairs_ranked_right() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1.0, 1.0, 40).round(1), rng.normal(0.0, 1.0, 30).round(1)  # rounding makes ties
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert abs(bench.auc(pos, neg) - pairs) < 1e-12
    assert bench.auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert bench.auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0


def test_one_flawless_value_passes_the_ceiling_only_where_labels_tie() -> None:
    rng = np.random.default_rng(1)
    flawed = rng.uniform(0.1, 0.85, 300)
    label = np.concatenate([np.full(700, 0.9), flawed])  # 70 % share the top label, as in a proxy split
    pred = np.concatenate([rng.normal(0.9, 0.02, 700), flawed + rng.normal(0.0, 0.02, 300)])
    cut = bench.saturation(pred, label)
    assert srcc(pred, label) < srcc_ceiling(label) < 0.82
    assert srcc(np.minimum(pred, cut), label) > 0.9

    smooth = rng.uniform(0.0, 1.0, 1000)  # continuous labels: nothing to gain from a shared top value
    noisy = smooth + rng.normal(0.0, 0.05, 1000)
    cut = bench.saturation(noisy, smooth)
    assert abs(srcc(np.minimum(noisy, cut), smooth) - srcc(noisy, smooth)) < 0.001
