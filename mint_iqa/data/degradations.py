"""Distortions of the proxy dataset, two families, registered by name.

* quality: global, technical defects (blur, noise, compression, exposure);
* authenticity: local defects typical of generators (warped geometry, cloned patches, smears,
  implausible colour, transposed-convolution grids).

Every function takes a float32 HxWx3 image in [0, 1], a numpy Generator (for nuisance parameters:
angles, positions, noise flavour) and the level's parameters from `params.yaml`, and returns a new
image. Nuisance randomness is deliberate: a model trained on these samples should learn the defect,
not one fixed rendering of it.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage, signal

Degradation = Callable[..., np.ndarray]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _blob(h: int, w: int, rng: np.random.Generator, radius: float) -> np.ndarray:
    """A soft, irregular region mask in [0, 1] (an ellipse roughened by smooth noise)."""
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    ry = radius * min(h, w) * rng.uniform(0.7, 1.3)
    rx = radius * min(h, w) * rng.uniform(0.7, 1.3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    rough = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), min(h, w) / 16)
    rough /= np.abs(rough).max() + 1e-6
    return np.clip((1.25 - dist + 0.35 * rough) * 3.0, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- quality family

def gaussian_blur(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    s = sigma * rng.uniform(0.9, 1.1)
    return ndimage.gaussian_filter(img, sigma=(s, s, 0), mode="reflect")


def motion_blur(img: np.ndarray, rng: np.random.Generator, length: float) -> np.ndarray:
    n = max(3, int(round(length)) | 1)
    kernel = np.zeros((n, n), np.float32)
    kernel[n // 2, :] = 1.0
    kernel = ndimage.rotate(kernel, rng.uniform(0, 180), reshape=False, order=1)
    kernel /= kernel.sum()
    pad = n // 2 + 1
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = signal.fftconvolve(padded, kernel[..., None], mode="same", axes=(0, 1))
    return out[pad:-pad, pad:-pad].astype(np.float32)


def noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Sensor-like noise: colour or luminance-only, signal-independent or shot-noise-like."""
    flavour = rng.integers(3)
    shape = img.shape if flavour != 1 else img.shape[:2] + (1,)
    n = rng.standard_normal(shape).astype(np.float32) * sigma
    if flavour == 2:  # shot noise grows with the signal
        n *= np.sqrt(np.clip(img, 0.02, 1.0)) * 1.4
    return img + n


def jpeg(img: np.ndarray, rng: np.random.Generator, quality: float) -> np.ndarray:
    q = int(np.clip(round(quality * rng.uniform(0.85, 1.15)), 2, 95))
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(img)).save(buf, format="JPEG", quality=q, subsampling=int(rng.integers(0, 3)))
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def exposure(img: np.ndarray, rng: np.random.Generator, stops: float) -> np.ndarray:
    """Over- or under-exposure by `stops` in linear light, clipped like a sensor."""
    sign = 1.0 if rng.random() < 0.5 else -1.0
    linear = np.clip(img, 0, 1) ** 2.2 * 2.0 ** (sign * stops)
    return np.clip(linear, 0, 1) ** (1 / 2.2)


# ----------------------------------------------------------- authenticity family

def elastic_warp(img: np.ndarray, rng: np.random.Generator, amplitude: float, radius: float) -> np.ndarray:
    """Locally warped geometry: a smooth random displacement field confined to one region."""
    h, w = img.shape[:2]
    mask = _blob(h, w, rng, radius)
    fields = []
    for _ in range(2):
        f = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), min(h, w) / 20)
        fields.append(f / (np.abs(f).max() + 1e-6) * amplitude * mask)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = [yy + fields[0], xx + fields[1]]
    return np.stack([ndimage.map_coordinates(img[..., c], coords, order=1, mode="reflect")
                     for c in range(img.shape[2])], axis=-1)


def duplicated_patch(img: np.ndarray, rng: np.random.Generator, count: float, size: float) -> np.ndarray:
    """Cloned regions: patches copied elsewhere with soft edges, like a generator repeating content."""
    out = img.copy()
    h, w = img.shape[:2]
    s = max(8, int(size * min(h, w)))
    ramp = np.minimum(np.arange(s), np.arange(s)[::-1]).astype(np.float32)
    edge = np.clip(ramp / max(2, s // 6), 0, 1)
    alpha = np.outer(edge, edge)[..., None]
    for _ in range(int(count)):
        sy, sx = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        for _ in range(10):  # destination that does not overlap its source much
            dy, dx = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            if abs(dy - sy) > s // 2 or abs(dx - sx) > s // 2:
                break
        patch = img[sy:sy + s, sx:sx + s]
        out[dy:dy + s, dx:dx + s] = alpha * patch + (1 - alpha) * out[dy:dy + s, dx:dx + s]
    return out


def smear(img: np.ndarray, rng: np.random.Generator, length: float, radius: float) -> np.ndarray:
    """A melted region: content dragged along one direction with growing displacement."""
    h, w = img.shape[:2]
    mask = _blob(h, w, rng, radius)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    steps = 8
    acc = np.zeros_like(img)
    for t in np.linspace(0, 1, steps):
        shift = t * length * mask
        coords = [yy - shift * np.sin(angle), xx - shift * np.cos(angle)]
        acc += np.stack([ndimage.map_coordinates(img[..., c], coords, order=1, mode="reflect")
                         for c in range(img.shape[2])], axis=-1)
    smeared = acc / steps
    m = mask[..., None]
    return m * smeared + (1 - m) * img


_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_RGB = np.linalg.inv(_YIQ).astype(np.float32)


def implausible_colour(img: np.ndarray, rng: np.random.Generator, hue: float, radius: float) -> np.ndarray:
    """A region whose colours are rotated in hue and tinted (grey regions get a colour cast too)."""
    h, w = img.shape[:2]
    mask = _blob(h, w, rng, radius)[..., None]
    yiq = img @ _YIQ.T
    theta = np.deg2rad(hue) * (1 if rng.random() < 0.5 else -1)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
    chroma = yiq[..., 1:] @ rot.T * 1.3
    tint_angle = rng.uniform(0, 2 * np.pi)
    chroma += 0.12 * hue / 180 * np.array([np.cos(tint_angle), np.sin(tint_angle)], np.float32)
    shifted = np.concatenate([yiq[..., :1], chroma], axis=-1) @ _RGB.T
    return mask * shifted + (1 - mask) * img


def grid(img: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Checkerboard artefacts of a transposed convolution: a periodic pattern modulated by content."""
    h, w = img.shape[:2]
    period = int(rng.choice([2, 3, 4]))
    cell = rng.standard_normal((period, period, 1)).astype(np.float32)
    cell = (cell - cell.mean()) / (cell.std() + 1e-6)
    pattern = np.tile(cell, (h // period + 1, w // period + 1, 1))[:h, :w]
    detail = np.abs(img - ndimage.uniform_filter(img, size=(5, 5, 1)))
    gain = 0.6 + 4.0 * detail.mean(axis=-1, keepdims=True)
    return img + amplitude * pattern * gain


QUALITY: dict[str, Degradation] = {
    "gaussian_blur": gaussian_blur, "motion_blur": motion_blur, "noise": noise, "jpeg": jpeg,
    "exposure": exposure,
}
AUTHENTICITY: dict[str, Degradation] = {
    "elastic_warp": elastic_warp, "duplicated_patch": duplicated_patch, "smear": smear,
    "implausible_colour": implausible_colour, "grid": grid,
}
REGISTRY: dict[str, dict[str, Degradation]] = {"quality": QUALITY, "authenticity": AUTHENTICITY}

# How an explanation names each defect (used by the templated answers and the explainer metrics).
DEFECT_NAMES: dict[str, str] = {
    "gaussian_blur": "blur", "motion_blur": "motion blur", "noise": "noise", "jpeg": "compression artefacts",
    "exposure": "poor exposure", "elastic_warp": "warped geometry", "duplicated_patch": "a duplicated patch",
    "smear": "a smeared region", "implausible_colour": "implausible colours", "grid": "a grid pattern",
}


def damage_map(pristine: np.ndarray, degraded: np.ndarray) -> np.ndarray:
    """Per-pixel structural dissimilarity (1 - SSIM, 7x7 windows) averaged over Y, I and Q channels.

    Computing it in a luma/chroma space makes colour defects count as well as structural ones.
    """
    import cv2

    a = np.ascontiguousarray(pristine @ _YIQ.T, dtype=np.float32)
    b = np.ascontiguousarray(degraded @ _YIQ.T, dtype=np.float32)
    c1, c2 = 0.01**2, 0.03**2
    box = lambda x: cv2.blur(x, (7, 7), borderType=cv2.BORDER_REFLECT)  # noqa: E731
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


def apply(img: np.ndarray, family: str, name: str, level: int, ladders: dict[str, dict[str, list[float]]],
          rng: np.random.Generator) -> np.ndarray:
    """Apply distortion `name` of `family` at `level` (1-5) with that level's parameters, clipped to [0, 1]."""
    fn = REGISTRY[family][name]
    kwargs = {key: values[level - 1] for key, values in ladders[name].items()}
    return np.clip(fn(img, rng, **kwargs), 0.0, 1.0).astype(np.float32)
