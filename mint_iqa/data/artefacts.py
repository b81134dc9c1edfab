"""Authenticity defects: local inconsistencies typical of image generators, each confined to one
soft-edged region (a few are whole-image patterns, like `grid`), so most of the image stays pristine.

Groups (`degradations.GROUPS`) and what each kind uses:

* geometry: `elastic_warp` (scipy.ndimage), `swirl`, `bulge` (OpenCV remap);
* repetition: `duplicated_patch` (numpy), `tiled_repeat` (numpy), `ghost` (OpenCV warpAffine);
* smear: `smear` (scipy.ndimage), `melt` (OpenCV line-element morphology), `plastic` (OpenCV bilateral);
* seam: `seam` (OpenCV remap), `tile_shuffle` (numpy);
* transplant: `transplant` (OpenCV warpAffine);
* colour_region: `implausible_colour` (numpy), `colour_bleed` (OpenCV resize + Gaussian blur);
* pattern: `grid` (scipy.ndimage), `upsample_blocks` (OpenCV resize, numpy), `ripple` (numpy).

Region sizes are fractions of min(h, w), so a defect looks the same at any resolution; the original five
kinds keep their pixel-sized parameters and their exact outputs. Heavy filters (melt, plastic, colour
bleed) run on a copy shrunk to a fixed working size, so their cost stays linear in the pixel count.
This module also holds the colour matrices and region masks that `degradations` shares.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
RGB = np.linalg.inv(YIQ).astype(np.float32)
_WORK = 256  # working size (short side) of the shrunk copies


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


def _region(h: int, w: int, rng: np.random.Generator, radius: float) -> tuple[np.ndarray, float, float]:
    """Like `_blob` (same look), but roughened by upsampled coarse noise, so linear in the pixel count.
    Returns the (h, w, 1) mask and the region's centre (y, x)."""
    short = min(h, w)
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    ry, rx = radius * short * rng.uniform(0.7, 1.3, size=2)
    coarse = rng.standard_normal((max(2, round(8 * h / short)), max(2, round(8 * w / short)))).astype(
        np.float32
    )
    rough = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    rough /= np.abs(rough).max() + 1e-6
    yy = ((np.arange(h, dtype=np.float32) - cy) / ry)[:, None]
    xx = ((np.arange(w, dtype=np.float32) - cx) / rx)[None, :]
    mask = np.clip((1.25 - np.sqrt(yy**2 + xx**2) + 0.35 * rough) * 3.0, 0.0, 1.0)
    return mask[..., None].astype(np.float32), float(cy), float(cx)


def _blend(img: np.ndarray, other: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return (img + alpha * (other - img)).astype(np.float32)


def _remap(img: np.ndarray, src_y: np.ndarray, src_x: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Sample `img` at (src_y, src_x) per output pixel, reflecting at the borders."""
    return cv2.remap(
        np.ascontiguousarray(img, np.float32),
        src_x.astype(np.float32),
        src_y.astype(np.float32),
        cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def _shrunk(img: np.ndarray, size: int = _WORK) -> tuple[np.ndarray, float]:
    """`img` with its short side at most `size` (area averaging) and the factor it was shrunk by."""
    h, w = img.shape[:2]
    f = max(1.0, min(h, w) / size)
    if f == 1.0:
        return np.ascontiguousarray(img, np.float32), f
    small = cv2.resize(img, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    return small, f


def _grown(small: np.ndarray, h: int, w: int) -> np.ndarray:
    if small.shape[:2] == (h, w):
        return small
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)


def _soft_square(s: int, edge: int) -> np.ndarray:
    ramp = np.minimum(np.arange(s), np.arange(s)[::-1]).astype(np.float32)
    e = np.clip(ramp / max(1, edge), 0, 1)
    return np.outer(e, e)[..., None]


# ------------------------------------------------------------------------------------- original five


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
    return np.stack(
        [ndimage.map_coordinates(img[..., c], coords, order=1, mode="reflect") for c in range(img.shape[2])],
        axis=-1,
    )


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
        patch = img[sy : sy + s, sx : sx + s]
        out[dy : dy + s, dx : dx + s] = alpha * patch + (1 - alpha) * out[dy : dy + s, dx : dx + s]
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
        acc += np.stack(
            [
                ndimage.map_coordinates(img[..., c], coords, order=1, mode="reflect")
                for c in range(img.shape[2])
            ],
            axis=-1,
        )
    smeared = acc / steps
    m = mask[..., None]
    return m * smeared + (1 - m) * img


def implausible_colour(img: np.ndarray, rng: np.random.Generator, hue: float, radius: float) -> np.ndarray:
    """A region whose colours are rotated in hue and tinted (grey regions get a colour cast too)."""
    h, w = img.shape[:2]
    mask = _blob(h, w, rng, radius)[..., None]
    yiq = img @ YIQ.T
    theta = np.deg2rad(hue) * (1 if rng.random() < 0.5 else -1)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
    chroma = yiq[..., 1:] @ rot.T * 1.3
    tint_angle = rng.uniform(0, 2 * np.pi)
    chroma += 0.12 * hue / 180 * np.array([np.cos(tint_angle), np.sin(tint_angle)], np.float32)
    shifted = np.concatenate([yiq[..., :1], chroma], axis=-1) @ RGB.T
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


# ------------------------------------------------------------------------------------------ geometry


def _polar(h: int, w: int, rng: np.random.Generator, radius: float):
    """Offsets from a random centre, squeezed into a random ellipse, and the falloff t = (1 - r/R)^2."""
    short = min(h, w)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    big = radius * short * rng.uniform(0.85, 1.15)
    aspect = rng.uniform(0.75, 1.33)
    dy = (np.arange(h, dtype=np.float32) - cy)[:, None]
    dx = (np.arange(w, dtype=np.float32) - cx)[None, :]
    r = np.sqrt((dy * aspect) ** 2 + (dx / aspect) ** 2)
    return cy, cx, dy, dx, np.clip(1.0 - r / big, 0.0, 1.0) ** 2


def swirl(img: np.ndarray, rng: np.random.Generator, strength: float, radius: float) -> np.ndarray:
    """A twisted region: content rotated about a centre by an angle (radians) fading to zero at its rim."""
    h, w = img.shape[:2]
    cy, cx, dy, dx, t = _polar(h, w, rng, radius)
    theta = strength * t * (1 if rng.random() < 0.5 else -1)
    cos, sin = np.cos(theta), np.sin(theta)
    return _remap(img, cy + dx * sin + dy * cos, cx + dx * cos - dy * sin)


def bulge(img: np.ndarray, rng: np.random.Generator, strength: float, radius: float) -> np.ndarray:
    """A region magnified outwards (bulge) or sucked inwards (pinch), like a fish-eye glitch."""
    h, w = img.shape[:2]
    cy, cx, dy, dx, t = _polar(h, w, rng, radius)
    scale = 1.0 - strength * t if rng.random() < 0.5 else 1.0 + 0.7 * strength * t
    return _remap(img, cy + dy * scale, cx + dx * scale)


# ---------------------------------------------------------------------------------------- repetition


def tiled_repeat(img: np.ndarray, rng: np.random.Generator, opacity: float, radius: float) -> np.ndarray:
    """A region overwritten by one small tile of itself repeated as a wallpaper pattern."""
    h, w = img.shape[:2]
    mask, cy, cx = _region(h, w, rng, radius)
    t = max(4, round(rng.uniform(0.08, 0.14) * min(h, w)))
    y0, x0 = int(np.clip(cy - t / 2, 0, h - t)), int(np.clip(cx - t / 2, 0, w - t))
    tile = img[y0 : y0 + t, x0 : x0 + t]
    pattern = np.tile(tile, (h // t + 2, w // t + 2, 1))
    oy, ox = (t - y0 % t) % t, (t - x0 % t) % t  # the source tile stays where it was
    return _blend(img, pattern[oy : oy + h, ox : ox + w], opacity * mask)


def ghost(
    img: np.ndarray, rng: np.random.Generator, opacity: float, offset: float, radius: float
) -> np.ndarray:
    """A semi-transparent double of a region's content, offset from it (a ghosted contour)."""
    h, w = img.shape[:2]
    mask, _, _ = _region(h, w, rng, radius)
    d, a = offset * min(h, w) * rng.uniform(0.85, 1.15), rng.uniform(0, 2 * np.pi)
    m = np.float32([[1, 0, d * np.cos(a)], [0, 1, d * np.sin(a)]])
    double = cv2.warpAffine(
        np.ascontiguousarray(img, np.float32),
        m,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return _blend(img, double, opacity * mask)


# --------------------------------------------------------------------------------------------- smear


def melt(img: np.ndarray, rng: np.random.Generator, length: float, radius: float) -> np.ndarray:
    """A melted region: opening and closing with a line element, streaking content along one direction."""
    h, w = img.shape[:2]
    mask, _, _ = _region(h, w, rng, radius)
    small, f = _shrunk(img)
    n = max(3, round(length * min(h, w) / f) | 1)
    kernel = np.zeros((n, n), np.uint8)
    a, c = rng.uniform(0, np.pi), n // 2
    cv2.line(
        kernel,
        (round(c - c * np.cos(a)), round(c - c * np.sin(a))),
        (round(c + c * np.cos(a)), round(c + c * np.sin(a))),
        1,
        1,
    )
    melted = cv2.morphologyEx(cv2.morphologyEx(small, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
    melted = cv2.filter2D(melted, -1, kernel.astype(np.float32) / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    return _blend(img, _grown(melted, h, w), mask)


def plastic(img: np.ndarray, rng: np.random.Generator, sigma: float, radius: float) -> np.ndarray:
    """Waxy, over-smoothed "plastic" skin: edge-preserving (bilateral) flattening of one region."""
    h, w = img.shape[:2]
    mask, _, _ = _region(h, w, rng, radius)
    flat, _ = _shrunk(img)
    for _ in range(3):
        flat = cv2.bilateralFilter(flat, 7, sigma * rng.uniform(0.85, 1.15), 3.0)
    return _blend(img, _grown(flat, h, w), mask)


# ---------------------------------------------------------------------------------------------- seam


def seam(img: np.ndarray, rng: np.random.Generator, offset: float, length: float) -> np.ndarray:
    """A cut: along a line segment the content on one side slides along it, so edges crossing it misalign."""
    h, w = img.shape[:2]
    short = min(h, w)
    py, px = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    a = rng.uniform(0, np.pi)
    uy, ux = np.sin(a), np.cos(a)
    dy = (np.arange(h, dtype=np.float32) - py)[:, None]
    dx = (np.arange(w, dtype=np.float32) - px)[None, :]
    along, across = dx * ux + dy * uy, dy * ux - dx * uy
    half, band = 0.5 * length * short, rng.uniform(0.1, 0.18) * short
    wa = np.clip((half - np.abs(along)) / (0.3 * half), 0.0, 1.0)
    wb = np.where(across >= 0, np.clip((band - across) / (0.6 * band), 0.0, 1.0), 0.0)
    shift = offset * short * rng.uniform(0.85, 1.15) * (1 if rng.random() < 0.5 else -1) * wa * wb
    out = _remap(img, dy + py - shift * uy, dx + px - shift * ux)
    return out * (1.0 + rng.uniform(-0.04, 0.04) * wa * wb)[..., None].astype(np.float32)


def tile_shuffle(img: np.ndarray, rng: np.random.Generator, size: float, tiles: float) -> np.ndarray:
    """A square region cut into tiles that are put back in a shuffled order (soft outer border)."""
    h, w = img.shape[:2]
    n = max(2, round(tiles))
    t = max(2, int(min(size * min(h, w) * rng.uniform(0.9, 1.1), min(h, w)) // n))
    s = t * n
    y0, x0 = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
    block = img[y0 : y0 + s, x0 : x0 + s]
    order = rng.permutation(n * n)
    if np.array_equal(order, np.arange(n * n)):
        order = np.roll(order, 1)
    cells = block.reshape(n, t, n, t, -1).transpose(0, 2, 1, 3, 4).reshape(n * n, t, t, -1)[order]
    shuffled = cells.reshape(n, n, t, t, -1).transpose(0, 2, 1, 3, 4).reshape(s, s, -1)
    out = img.astype(np.float32, copy=True)
    out[y0 : y0 + s, x0 : x0 + s] = _blend(block, shuffled, _soft_square(s, max(2, t // 4)))
    return out


# ---------------------------------------------------------------------------------------- transplant


def transplant(img: np.ndarray, rng: np.random.Generator, scale: float, radius: float) -> np.ndarray:
    """A region filled with texture from elsewhere in the image, rotated and at the wrong scale."""
    h, w = img.shape[:2]
    mask, cy, cx = _region(h, w, rng, radius)
    sy, sx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    zoom = scale * rng.uniform(0.9, 1.1)  # magnified: texture, not a miniature of the whole scene
    a = rng.uniform(0.25, 1.75) * np.pi
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / zoom  # destination -> source
    m = np.hstack([rot, (np.array([sx, sy]) - rot @ np.array([cx, cy]))[:, None]]).astype(np.float32)
    copy = cv2.warpAffine(
        np.ascontiguousarray(img, np.float32),
        m,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return _blend(img, copy, mask)


# ------------------------------------------------------------------------------------- colour region


def colour_bleed(img: np.ndarray, rng: np.random.Generator, spread: float, radius: float) -> np.ndarray:
    """A region whose colours leak across edges: chroma blurred, shifted off the luma and boosted."""
    h, w = img.shape[:2]
    mask, _, _ = _region(h, w, rng, radius)
    small, f = _shrunk(img @ YIQ.T)
    s = spread * min(h, w) / f
    a = rng.uniform(0, 2 * np.pi)
    m = np.float32([[1, 0, 0.7 * s * np.cos(a)], [0, 1, 0.7 * s * np.sin(a)]])
    chroma = cv2.GaussianBlur(np.ascontiguousarray(small[..., 1:]), (0, 0), s)
    chroma = cv2.warpAffine(chroma, m, chroma.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)
    yiq = img @ YIQ.T
    bled = np.concatenate([yiq[..., :1], 1.5 * _grown(chroma, h, w)], axis=-1) @ RGB.T
    return _blend(img, bled, mask)


# ------------------------------------------------------------------------------------------- pattern


def upsample_blocks(img: np.ndarray, rng: np.random.Generator, factor: float, radius: float) -> np.ndarray:
    """Nearest-neighbour upsampling in one region: pixels doubled (or more) into visible square blocks."""
    h, w = img.shape[:2]
    mask, _, _ = _region(h, w, rng, radius)
    f = max(2, int(factor))
    oy, ox = rng.integers(0, f, size=2)
    padded = np.pad(img, ((oy, f), (ox, f), (0, 0)), mode="reflect")
    hh, ww = (padded.shape[0] // f) * f, (padded.shape[1] // f) * f
    small = padded[:hh, :ww].reshape(hh // f, f, ww // f, f, -1)[:, f // 2, :, f // 2]  # point sampling
    blocks = np.repeat(np.repeat(small, f, axis=0), f, axis=1)[oy : oy + h, ox : ox + w]
    return _blend(img, blocks, mask)


def ripple(img: np.ndarray, rng: np.random.Generator, amplitude: float, radius: float) -> np.ndarray:
    """Aliasing ripples in one region: fine fringes whose phase follows the content (a moire)."""
    h, w = img.shape[:2]
    mask, _, _ = _region(h, w, rng, radius)
    period, a = rng.uniform(3.0, 6.0), rng.uniform(0, np.pi)
    phase = (
        np.arange(h, dtype=np.float32)[:, None] * np.sin(a)
        + np.arange(w, dtype=np.float32)[None, :] * np.cos(a)
    ) * (2 * np.pi / period)
    luma = img @ YIQ[0]
    fringes = np.sin(phase + rng.uniform(4, 8) * luma)[..., None]
    return (img + amplitude * mask * fringes).astype(np.float32)
