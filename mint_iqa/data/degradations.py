"""Distortions of the proxy dataset, two families, registered by name.

* quality: global, technical defects in seven groups, covering the KADID-10k families
  (`GROUPS` maps every kind to its group):
  - blur: `gaussian_blur` (scipy.ndimage), `motion_blur` (scipy.signal), `lens_blur` (disc kernel,
    OpenCV filter2D), `box_blur` (OpenCV);
  - colour: `desaturate`, `oversaturate`, `colour_cast` (numpy), `colour_quantise` (Pillow palette,
    optional Floyd-Steinberg dither), `chromatic_aberration` (OpenCV warpAffine);
  - compression: `jpeg`, `jpeg2000` (Pillow + OpenJPEG, registered only when Pillow has it), `webp`
    (Pillow), `chroma_subsampling` (OpenCV resize);
  - noise: `noise`, `impulse_noise`, `speckle_noise`, `poisson_noise`, `dither_noise` (numpy),
    `correlated_noise` (OpenCV Gaussian blur of white noise), `denoise` (noise, then OpenCV bilateral);
  - brightness: `exposure`, `brighten`, `darken`, `mean_shift`, `low_contrast`, `vignetting` (numpy);
  - spatial: `pixelate`, `patch_swap`, `colour_block` (numpy), `resample` (OpenCV resize), `jitter`
    (OpenCV remap), `ringing` (ideal low-pass, scipy.fft);
  - sharpness: `oversharpen` (OpenCV unsharp mask), `contrast_boost`, `posterise` (numpy).
* authenticity: local defects typical of generators, each confined to one soft-edged region (warped or
  twisted geometry, repetition, smears, seams, transplanted texture, off colours, upsampling patterns);
  they live in `artefacts.py`, which says what each uses.

Every function takes a float32 HxWx3 image in [0, 1] of any size, a numpy Generator (for nuisance
parameters: angles, positions, noise flavour) and the level's parameters from `params.yaml`, and returns
a new float32 image of the same shape (`apply` clips it). Pixel-scale defects (blur, noise, compression,
pixelation) act at native resolution; region sizes are fractions of min(h, w). Nuisance randomness is
deliberate: a model trained on these samples should learn the defect, not one fixed rendering of it.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image
from scipy import fft, ndimage, signal

from mint_iqa.data import artefacts, kinds
from mint_iqa.data.artefacts import RGB as _RGB
from mint_iqa.data.artefacts import YIQ as _YIQ
from mint_iqa.data.kinds import DEFECT_NAMES, GROUPS  # noqa: F401 - re-exported beside the functions

Degradation = Callable[..., np.ndarray]
_REFLECT = cv2.BORDER_REFLECT_101


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _f32(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img, dtype=np.float32)


def _luma(img: np.ndarray) -> np.ndarray:
    return (img @ _YIQ[0])[..., None]


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _codec(img: np.ndarray, fmt: str, **options) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(img)).save(buf, format=fmt, **options)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


# ---------------------------------------------------------------------------------------------- blur


def gaussian_blur(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Out-of-focus softness: a Gaussian point-spread function."""
    s = sigma * rng.uniform(0.9, 1.1)
    return ndimage.gaussian_filter(img, sigma=(s, s, 0), mode="reflect")


def motion_blur(img: np.ndarray, rng: np.random.Generator, length: float) -> np.ndarray:
    """Camera shake: a straight line kernel at a random angle."""
    n = max(3, round(length) | 1)
    line = np.zeros((n, n), np.float32)
    line[n // 2, :] = 1.0
    kernel = ndimage.rotate(line, rng.uniform(0, 180), reshape=False, order=1)
    kernel /= kernel.sum()
    pad = n // 2 + 1
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = signal.fftconvolve(padded, kernel[..., None], mode="same", axes=(0, 1))
    return out[pad:-pad, pad:-pad].astype(np.float32)


def lens_blur(img: np.ndarray, rng: np.random.Generator, radius: float) -> np.ndarray:
    """Defocus through a lens aperture: a uniform disc kernel (bokeh), anti-aliased at its rim."""
    r = radius * rng.uniform(0.9, 1.1)
    n = int(np.ceil(r))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    kernel = np.clip(r + 0.5 - np.hypot(yy, xx), 0, 1).astype(np.float32)
    return cv2.filter2D(_f32(img), -1, kernel / kernel.sum(), borderType=_REFLECT)


def box_blur(img: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
    """A mean filter (cheap smoothing in a pipeline), square or slightly oblong."""
    ky, kx = (max(2, round(size * rng.uniform(0.85, 1.15))) for _ in range(2))
    return cv2.blur(_f32(img), (kx, ky), borderType=_REFLECT)


# -------------------------------------------------------------------------------------------- colour


def desaturate(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Saturation loss: colours pulled towards grey (1 = greyscale)."""
    grey = _luma(img)
    return grey + (img - grey) * max(0.0, 1.0 - amount * rng.uniform(0.95, 1.05))


def oversaturate(img: np.ndarray, rng: np.random.Generator, gain: float) -> np.ndarray:
    """Over-saturation: colour differences from grey multiplied by `gain`, saturating to the gamut."""
    grey = _luma(img)
    return grey + (img - grey) * (gain * rng.uniform(0.92, 1.08))


def colour_cast(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A white-balance error: channel gains exp(strength * d) along a random zero-mean colour direction."""
    a = rng.uniform(0, 2 * np.pi)
    d = np.cos(a) * np.array([1, 0, -1]) / np.sqrt(2) + np.sin(a) * np.array([1, -2, 1]) / np.sqrt(6)
    return img * np.exp(strength * rng.uniform(0.9, 1.1) * d).astype(np.float32)


def colour_quantise(img: np.ndarray, rng: np.random.Generator, colours: float) -> np.ndarray:
    """A reduced palette (fast octree, `colours` entries), with or without Floyd-Steinberg dithering."""
    pil = Image.fromarray(_to_uint8(img))
    paletted = pil.quantize(colors=max(2, round(colours)), method=Image.Quantize.FASTOCTREE)
    if rng.random() < 0.5:
        paletted = pil.quantize(palette=paletted, dither=Image.Dither.FLOYDSTEINBERG)
    return np.asarray(paletted.convert("RGB"), dtype=np.float32) / 255.0


def chromatic_aberration(img: np.ndarray, rng: np.random.Generator, shift: float) -> np.ndarray:
    """Colour fringes: red and blue planes misregistered by `shift` px (translated, or scaled like a lens)."""
    h, w = img.shape[:2]
    s = shift * rng.uniform(0.9, 1.1)
    out = _f32(img).copy()
    if rng.random() < 0.5:  # lateral: magnification differs per colour, `shift` px at the corners
        k = s / (0.5 * np.hypot(h, w))
        cy, cx = (h - 1) / 2, (w - 1) / 2
        mats = [np.float32([[1 + e * k, 0, -e * k * cx], [0, 1 + e * k, -e * k * cy]]) for e in (1, -1)]
    else:
        a = rng.uniform(0, 2 * np.pi)
        mats = [np.float32([[1, 0, e * s * np.cos(a)], [0, 1, e * s * np.sin(a)]]) for e in (0.5, -0.5)]
    for c, m in zip((0, 2), mats):
        out[..., c] = cv2.warpAffine(_f32(img[..., c]), m, (w, h), flags=1, borderMode=_REFLECT)  # 1: linear
    return out


# --------------------------------------------------------------------------------------- compression


def jpeg(img: np.ndarray, rng: np.random.Generator, quality: float) -> np.ndarray:
    """JPEG blocking and ringing at a low quality factor, random chroma subsampling."""
    q = int(np.clip(round(quality * rng.uniform(0.85, 1.15)), 2, 95))
    return _codec(img, "JPEG", quality=q, subsampling=int(rng.integers(0, 3)))


def jpeg2000(img: np.ndarray, rng: np.random.Generator, ratio: float) -> np.ndarray:
    """JPEG 2000 (wavelet) at a compression `ratio`: smudged detail and ringing, no blocks."""
    r = ratio * rng.uniform(0.85, 1.15)
    return _codec(img, "JPEG2000", quality_mode="rates", quality_layers=[r], irreversible=True)


def webp(img: np.ndarray, rng: np.random.Generator, quality: float) -> np.ndarray:
    """Lossy WebP (VP8 intra) at a low quality: smeared blocks and flattened texture."""
    return _codec(img, "WEBP", quality=int(np.clip(round(quality * rng.uniform(0.85, 1.15)), 0, 95)))


def chroma_subsampling(img: np.ndarray, rng: np.random.Generator, factor: float) -> np.ndarray:
    """Block-based colour compression: chroma averaged over `factor` px blocks and coarsely quantised."""
    h, w = img.shape[:2]
    f = max(2, round(factor))
    yiq = img @ _YIQ.T
    small = cv2.resize(_f32(yiq[..., 1:]), (-(-w // f), -(-h // f)), interpolation=cv2.INTER_AREA)
    step = 0.008 * f * rng.uniform(0.8, 1.2)
    small = np.round(small / step) * step
    grow = cv2.INTER_NEAREST if rng.random() < 0.6 else cv2.INTER_LINEAR
    up = cv2.resize(small, (w, h), interpolation=grow)
    return np.concatenate([yiq[..., :1], up], axis=-1) @ _RGB.T


# --------------------------------------------------------------------------------------------- noise


def noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Sensor-like noise: colour or luminance-only, signal-independent or shot-noise-like."""
    flavour = rng.integers(3)
    shape = img.shape if flavour != 1 else img.shape[:2] + (1,)
    n = rng.standard_normal(shape).astype(np.float32) * sigma
    if flavour == 2:  # shot noise grows with the signal
        n *= np.sqrt(np.clip(img, 0.02, 1.0)) * 1.4
    return img + n


def impulse_noise(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Salt and pepper: a fraction `amount` of pixels (or of channel values) stuck at black or white."""
    shape = img.shape[:2] + (1,) if rng.random() < 0.5 else img.shape
    hit = rng.random(shape) < amount * rng.uniform(0.9, 1.1)
    return np.where(hit, (rng.random(shape) < 0.5).astype(np.float32), img).astype(np.float32)


def speckle_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Multiplicative (speckle) noise: each value scaled by 1 + sigma * N(0, 1)."""
    return img * (1.0 + sigma * rng.standard_normal(img.shape).astype(np.float32))


def poisson_noise(img: np.ndarray, rng: np.random.Generator, photons: float) -> np.ndarray:
    """Photon shot noise of a sensor that collects `photons` at white: Poisson counts, rescaled."""
    peak = photons * rng.uniform(0.8, 1.25)
    return (rng.poisson(np.clip(img, 0, 1) * peak) / peak).astype(np.float32)


def correlated_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Blotchy, spatially correlated noise (white noise low-passed to grains of 1-2 px), std `sigma`."""
    shape = img.shape if rng.random() < 0.5 else img.shape[:2] + (1,)
    white = rng.standard_normal(shape).astype(np.float32)
    n = cv2.GaussianBlur(white, (0, 0), rng.uniform(0.8, 2.0), borderType=_REFLECT).reshape(shape)
    return img + sigma * n / (n.std() + 1e-6)


def dither_noise(img: np.ndarray, rng: np.random.Generator, levels: float) -> np.ndarray:
    """Quantisation to `levels` values per channel with random dither: grain instead of bands."""
    q = max(2, round(levels)) - 1
    return (np.floor(img * q + rng.random(img.shape, dtype=np.float32)) / q).astype(np.float32)


def denoise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """A denoiser's leftovers: noise of std `sigma`, then bilateral smoothing (waxy texture, blotches)."""
    noisy = _f32(img + sigma * rng.standard_normal(img.shape).astype(np.float32))
    return cv2.bilateralFilter(noisy, 7, 3.0 * sigma * rng.uniform(0.85, 1.15), 3.0, borderType=_REFLECT)


# ---------------------------------------------------------------------------------------- brightness


def exposure(img: np.ndarray, rng: np.random.Generator, stops: float) -> np.ndarray:
    """Over- or under-exposure by `stops` in linear light, clipped like a sensor."""
    linear = np.clip(img, 0, 1) ** 2.2 * 2.0 ** (_sign(rng) * stops)
    return np.clip(linear, 0, 1) ** (1 / 2.2)


def brighten(img: np.ndarray, rng: np.random.Generator, gamma: float) -> np.ndarray:
    """A tone curve lifted too far (gamma 1/`gamma`): shadows washed out, highlights compressed."""
    return np.clip(img, 0, 1) ** np.float32(1.0 / (gamma * rng.uniform(0.95, 1.05)))


def darken(img: np.ndarray, rng: np.random.Generator, gamma: float) -> np.ndarray:
    """A tone curve pushed down (gamma `gamma`): mid-tones and shadows sink into black."""
    return np.clip(img, 0, 1) ** np.float32(gamma * rng.uniform(0.95, 1.05))


def mean_shift(img: np.ndarray, rng: np.random.Generator, shift: float) -> np.ndarray:
    """A constant offset of every value, up or down (a wrong black level), clipped."""
    return img + np.float32(_sign(rng) * shift * rng.uniform(0.9, 1.1))


def low_contrast(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Contrast loss: a blend towards a veiling haze or towards the image's own mean."""
    if rng.random() < 0.5:
        target = rng.uniform(0.6, 0.9) * (1 + rng.uniform(-0.05, 0.05, 3)).astype(np.float32)
    else:
        target = img.mean(axis=(0, 1))
    return img + amount * rng.uniform(0.92, 1.08) * (target - img)


def vignetting(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Lens vignetting: brightness falling off towards the corners by up to `strength`."""
    h, w = img.shape[:2]
    cy, cx = rng.uniform(0.4, 0.6) * h, rng.uniform(0.4, 0.6) * w
    yy = (np.arange(h, dtype=np.float32) - cy)[:, None]
    xx = (np.arange(w, dtype=np.float32) - cx)[None, :]
    r = np.sqrt(yy**2 + xx**2) / np.float32(0.5 * np.hypot(h, w))
    return img * (1.0 - strength * np.clip(r, 0, 1.2) ** rng.uniform(1.2, 2.0))[..., None]


# ------------------------------------------------------------------------------------------- spatial


def pixelate(img: np.ndarray, rng: np.random.Generator, block: float) -> np.ndarray:
    """Pixelation: the mean of each `block` x `block` cell, repeated (grid phase random)."""
    h, w = img.shape[:2]
    b = max(2, round(block * rng.uniform(0.9, 1.1)))
    oy, ox = rng.integers(0, b, size=2)
    padded = np.pad(img, ((oy, b), (ox, b), (0, 0)), mode="reflect")
    hh, ww = (padded.shape[0] // b) * b, (padded.shape[1] // b) * b
    cells = padded[:hh, :ww].reshape(hh // b, b, ww // b, b, -1).mean(axis=(1, 3))
    return np.repeat(np.repeat(cells, b, axis=0), b, axis=1)[oy : oy + h, ox : ox + w].astype(np.float32)


def resample(img: np.ndarray, rng: np.random.Generator, factor: float) -> np.ndarray:
    """Upscaling from a `factor` times smaller copy (area or aliased shrink, bilinear or bicubic growth)."""
    h, w = img.shape[:2]
    f = factor * rng.uniform(0.9, 1.1)
    down = cv2.INTER_AREA if rng.random() < 0.5 else cv2.INTER_LINEAR
    small = cv2.resize(_f32(img), (max(4, round(w / f)), max(4, round(h / f))), interpolation=down)
    grow = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(small, (w, h), interpolation=grow)


def jitter(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Pixel jitter: every pixel taken from a random neighbour (Gaussian offsets of `amount` px)."""
    h, w = img.shape[:2]
    dy, dx = rng.standard_normal((2, h, w)).astype(np.float32) * amount
    yy = np.arange(h, dtype=np.float32)[:, None] + dy
    xx = np.arange(w, dtype=np.float32)[None, :] + dx
    return cv2.remap(_f32(img), xx, yy, cv2.INTER_NEAREST, borderMode=_REFLECT)


def patch_swap(img: np.ndarray, rng: np.random.Generator, coverage: float) -> np.ndarray:
    """Non-eccentricity patches: small square patches (6 % of the short side) swapped with a neighbour."""
    h, w = img.shape[:2]
    s = max(4, round(0.06 * min(h, w) * rng.uniform(0.8, 1.2)))
    out = _f32(img).copy()
    for _ in range(max(1, round(coverage * h * w / s**2))):
        ay, ax = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        by = int(np.clip(ay + rng.integers(-s, s + 1), 0, h - s))
        bx = int(np.clip(ax + rng.integers(-s, s + 1), 0, w - s))
        a, b = (slice(ay, ay + s), slice(ax, ax + s)), (slice(by, by + s), slice(bx, bx + s))
        out[a], out[b] = img[b], img[a]
    return out


def colour_block(img: np.ndarray, rng: np.random.Generator, count: float) -> np.ndarray:
    """Colour blocks: `count` flat squares (about 6 % of the short side) of random colour."""
    h, w = img.shape[:2]
    out = _f32(img).copy()
    for _ in range(round(count)):
        s = max(3, round(0.06 * min(h, w) * rng.uniform(0.7, 1.3)))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        out[y : y + s, x : x + s] = rng.random(3).astype(np.float32)
    return out


def ringing(img: np.ndarray, rng: np.random.Generator, cutoff: float) -> np.ndarray:
    """Gibbs ringing: an ideal (brick-wall) low-pass at `cutoff` x Nyquist, echoing ripples along edges."""
    h, w = img.shape[:2]
    p = 16  # reflected margin, then up to sizes the FFT factorises well
    ph, pw = fft.next_fast_len(h + 2 * p, real=True), fft.next_fast_len(w + 2 * p, real=True)
    padded = np.pad(_f32(img), ((p, ph - h - p), (p, pw - w - p), (0, 0)), mode="reflect")
    spec = fft.rfft2(padded, axes=(0, 1), workers=1)
    fy = fft.fftfreq(padded.shape[0])[:, None]
    fx = fft.rfftfreq(padded.shape[1])[None, :]
    c = 0.5 * cutoff * rng.uniform(0.9, 1.1)
    keep = (np.hypot(fy, fx) <= c) if rng.random() < 0.5 else ((np.abs(fy) <= c) & (np.abs(fx) <= c))
    out = fft.irfft2(spec * keep[..., None], s=padded.shape[:2], axes=(0, 1), workers=1)
    return out[p : p + h, p : p + w].astype(np.float32)


# ----------------------------------------------------------------------------------------- sharpness


def oversharpen(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Over-sharpening: an unsharp mask of strength `amount` (halos, crunchy texture, amplified noise)."""
    blurred = cv2.GaussianBlur(_f32(img), (0, 0), rng.uniform(0.8, 1.6), borderType=_REFLECT)
    return img + amount * rng.uniform(0.9, 1.1) * (img - blurred)


def contrast_boost(img: np.ndarray, rng: np.random.Generator, gain: float) -> np.ndarray:
    """Excess contrast: values spread by `gain` about mid-grey or the mean, clipped at both ends."""
    pivot = np.float32(0.5 if rng.random() < 0.5 else float(img.mean()))
    return (img - pivot) * np.float32(gain * rng.uniform(0.95, 1.05)) + pivot


def posterise(img: np.ndarray, rng: np.random.Generator, levels: float) -> np.ndarray:
    """Posterisation: `levels` flat bands per channel (random threshold phase), no dither."""
    q = max(2, round(levels)) - 1
    phase = np.float32(rng.uniform(-0.4, 0.4))
    return (np.round(img * q + phase) - phase) / q


# ------------------------------------------------------------------------------------------ registry

QUALITY: dict[str, Degradation] = {name: globals()[name] for name in kinds.QUALITY}
AUTHENTICITY: dict[str, Degradation] = {name: getattr(artefacts, name) for name in kinds.AUTHENTICITY}
REGISTRY: dict[str, dict[str, Degradation]] = {"quality": QUALITY, "authenticity": AUTHENTICITY}


def apply(
    img: np.ndarray,
    family: str,
    name: str,
    level: float,
    ladders: dict[str, dict[str, list[float]]],
    rng: np.random.Generator,
) -> np.ndarray:
    """Apply distortion `name` of `family` at `level` (1-5; a fractional level interpolates its ladder's
    neighbouring values), clipped to [0, 1]."""
    fn = REGISTRY[family][name]
    steps = np.arange(1, len(next(iter(ladders[name].values()))) + 1)
    kwargs = {
        key: float(np.interp(level, steps, values)) if level != int(level) else values[int(level) - 1]
        for key, values in ladders[name].items()
    }
    return np.clip(fn(img, rng, **kwargs), 0.0, 1.0).astype(np.float32)
