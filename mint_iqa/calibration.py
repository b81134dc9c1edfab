"""The 1-5 score scale: from raw head outputs to a calibrated, MOS-like score (5 = pristine / fully
faithful to the prompt), fitted once per model and stored in its config (`calibration`).

The heads are trained towards labels in [0, 1]. After training, a monotonic 4-parameter logistic from raw
output to label is fitted per dimension on the validation split (VQEG practice), and

    MOS = 1 + 4 * soft_unit(logistic(raw))

where `soft_unit` is the identity on [0.05, 0.95] with slow tails towards 0 and 1: strictly increasing
over all reals, so two different raw outputs never share a score (a hard clip would tie every image past
either end, and a model's best images are the ones a user most wants told apart). The logistic's width is
kept at least 1/12 of the observed output range, so it stays a ramp over every output the model gave on
validation, never a step. A dimension without a usable fit uses the identity before `soft_unit`.
"""

from __future__ import annotations

import warnings

import numpy as np

from mint_iqa.config import DIMENSIONS

SCALES = ("mos", "raw")
MARGIN = 0.05  # soft_unit is the identity on [MARGIN, 1 - MARGIN]
MIN_WIDTH = 1 / 12  # of the observed raw range: the narrowest logistic a fit may keep


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    z = np.clip(-(x - b3) / max(np.abs(b4), 1e-12), -60.0, 60.0)  # no overflow at the tails
    return (b1 - b2) / (1 + np.exp(z)) + b2


def logistic_params(pred: np.ndarray, label: np.ndarray, min_width: float = 0.0) -> list[float]:
    """Parameters of the monotonic 4-parameter logistic from predictions to labels; `min_width` bounds
    its width |b4| from below. A degenerate fit falls back to a straight line, written as
    [slope, intercept]."""
    from scipy import optimize

    pred, label = np.asarray(pred, float), np.asarray(label, float)
    width = max(float(np.std(pred)) or 1.0, 2 * min_width)
    p0 = [label.max(), label.min(), float(np.median(pred)), width]
    bounds = ([-np.inf, -np.inf, -np.inf, min_width], np.inf) if min_width > 0 else (-np.inf, np.inf)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, pred, label, p0=p0, bounds=bounds, maxfev=20000)
        return [float(p) for p in params]
    except (RuntimeError, ValueError):
        slope, intercept = np.polyfit(pred, label, 1) if np.std(pred) > 0 else (0.0, label.mean())
        return [float(slope), float(intercept)]


def apply_logistic(pred: np.ndarray, params: list[float]) -> np.ndarray:
    pred = np.asarray(pred, float)
    return logistic4(pred, *params) if len(params) == 4 else params[0] * pred + params[1]


def soft_unit(u: np.ndarray) -> np.ndarray:
    """The identity on [MARGIN, 1 - MARGIN] with hyperbolic tails below and above: a strictly increasing,
    once differentiable map of all reals onto (0, 1) whose tails flatten slowly (like 1/|u|), so even outputs
    far outside [0, 1] stay apart in double precision."""
    u = np.asarray(u, dtype=np.float64)
    m, out = MARGIN, u.copy()
    low, high = u < m, u > 1 - m
    out[low] = m * m / (2 * m - u[low])
    out[high] = 1 - m * m / (2 * m - 1 + u[high])
    return out


def fit_calibration(pred: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """Per dimension, the logistic from raw head output to label, fit where the label is known. A fit that
    is not finite and increasing over the observed outputs (a model that has not learnt the dimension), or
    that wants to be a step, is dropped, so calibration never reverses or collapses a ranking."""
    out = {}
    for i, dim in enumerate(DIMENSIONS):
        known = ~np.isnan(labels[:, i])
        x = pred[known, i]
        if known.sum() < 8 or np.std(x) == 0:
            continue
        free = logistic_params(x, labels[known, i])
        if len(free) == 4 and abs(free[3]) < 0.02 * np.std(x):  # the labels are a step, not a scale
            continue
        params = logistic_params(x, labels[known, i], min_width=MIN_WIDTH * float(np.ptp(x)))
        grid = apply_logistic(np.linspace(x.min(), x.max(), 256), params)
        if np.all(np.isfinite(params)) and np.all(np.isfinite(grid)) and np.all(np.diff(grid) > 0):
            out[dim] = params
    return out


def check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")


def to_scale(raw: np.ndarray, calibration: dict[str, list[float]], scale: str = "mos") -> np.ndarray:
    """Raw head outputs (N, 3) -> the requested scale (see the module docstring)."""
    check_scale(scale)
    raw = np.asarray(raw, dtype=np.float64).reshape(-1, len(DIMENSIONS))
    if scale == "raw":
        return raw
    mapped = np.stack(
        [
            apply_logistic(raw[:, i], calibration[d]) if d in calibration else raw[:, i]
            for i, d in enumerate(DIMENSIONS)
        ],
        axis=1,
    )
    return 1.0 + 4.0 * soft_unit(mapped)
