"""Agreement metrics: what the numbers in `metrics/*.json` can and cannot reach."""

from __future__ import annotations

import numpy as np

from mint_iqa.metrics import srcc, srcc_ceiling


def test_srcc_ceiling_of_tied_labels() -> None:
    rng = np.random.default_rng(0)
    distinct = rng.random(200)
    assert srcc_ceiling(distinct) == 1.0  # nothing tied: a perfect ranking reaches 1
    # 70 % of the images flawless (one shared label), the rest graded: as in the proxy set's test splits
    labels = np.where(rng.random(1000) < 0.7, 0.9, rng.uniform(0.1, 0.85, 1000))
    ceiling = srcc_ceiling(labels)
    assert abs(ceiling - np.sqrt(1 - np.mean(labels == 0.9) ** 3)) < 0.01 and 0.78 < ceiling < 0.84
    # no prediction without ties beats it, however the tied images are ordered
    for seed in range(5):
        perfect = labels + np.random.default_rng(seed).normal(0, 1e-9, labels.shape)
        assert srcc(perfect, labels) <= ceiling + 1e-9
