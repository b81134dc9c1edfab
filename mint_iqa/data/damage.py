"""How much a defect actually changed an image: the measurement the proxy set's labels and damage maps
are made of (`synth.Synthesiser.make`, `params.yaml` `prepare.labels`)."""

from __future__ import annotations

import cv2
import numpy as np

from mint_iqa.data.artefacts import YIQ


def damage_map(pristine: np.ndarray, degraded: np.ndarray) -> np.ndarray:
    """Per-pixel structural dissimilarity (1 - SSIM, 7x7 windows) averaged over Y, I and Q channels.

    Computing it in a luma/chroma space makes colour defects count as well as structural ones.
    """
    a = np.ascontiguousarray(pristine @ YIQ.T, dtype=np.float32)
    b = np.ascontiguousarray(degraded @ YIQ.T, dtype=np.float32)
    c1, c2 = 0.01**2, 0.03**2

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.blur(x, (7, 7), borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = box(a), box(b)
    var_a = box(a * a) - mu_a**2
    var_b = box(b * b) - mu_b**2
    cov = box(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return np.clip(1.0 - ssim, 0.0, 2.0).mean(axis=-1)


def damage(pristine: np.ndarray, degraded: np.ndarray, local: bool, dmap: np.ndarray | None = None) -> float:
    """How much a distortion actually changed this image: mean dissimilarity over the whole image
    (global defects) or over its most damaged 5% (local defects, which people notice wherever they are)."""
    dmap = damage_map(pristine, degraded) if dmap is None else dmap
    if not local:
        return float(dmap.mean())
    flat = dmap.ravel()
    k = max(1, flat.size // 20)
    return float(np.partition(flat, flat.size - k)[-k:].mean())
