"""Damage maps for people: where an image is damaged, as a picture and as the arrays behind it.

A scorer with its locate head (`Scorer.score(..., maps=True)`) gives, per image, a quality map and an
authenticity map: per cell of the image, how visibly it is damaged, in [0, 1] (0 untouched, 1 damaged
as much as the label floor). `overlay` colours one over the image; `panel` puts the image and both
overlays side by side; `write_maps` saves the panel (PNG) and the arrays (`.npz`, keys `quality` and
`authenticity`) atomically, never over an existing file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mint_iqa.io import ImageInput, atomic_write, load_image

PANEL_SIDE = 320  # px: the height of each of the panel's three pictures
MAP_SUFFIXES = (".png", ".npz")


def heat(grid: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A map (rows, cols) in [0, 1] resized smoothly to `size` (w, h): the colour (h, w, 3; yellow through
    red as damage grows) and its opacity (h, w, 1)."""
    cells = Image.fromarray(np.clip(grid, 0.0, 1.0).astype(np.float32), mode="F")
    g = np.asarray(cells.resize(size, resample=Image.Resampling.BILINEAR), np.float32)[..., None]
    colour = np.concatenate([np.full_like(g, 255.0), 230.0 * (1.0 - g), np.zeros_like(g)], axis=-1)
    return colour, 0.8 * g


def overlay(image: ImageInput, grid: np.ndarray) -> Image.Image:
    """`image` with `grid` coloured over it: clear where undamaged, red where damaged most."""
    rgb = np.asarray(load_image(image), np.float32)
    colour, alpha = heat(grid, (rgb.shape[1], rgb.shape[0]))
    return Image.fromarray((rgb * (1.0 - alpha) + colour * alpha + 0.5).astype(np.uint8))


def panel(image: ImageInput, quality: np.ndarray, authenticity: np.ndarray) -> Image.Image:
    """The image, its quality overlay and its authenticity overlay side by side, each titled."""
    base = load_image(image)
    w = max(1, round(base.width * PANEL_SIDE / base.height))
    small = base.resize((w, PANEL_SIDE), resample=Image.Resampling.BICUBIC)
    parts = [("image", small), ("quality damage", overlay(small, quality))]
    parts.append(("authenticity damage", overlay(small, authenticity)))
    out = Image.new("RGB", (3 * w + 8, PANEL_SIDE + 18), "white")
    draw = ImageDraw.Draw(out)
    for k, (title, picture) in enumerate(parts):
        out.paste(picture, (k * (w + 4), 18))
        draw.text((k * (w + 4) + 2, 3), title, fill="black")
    return out


def map_names(images: list[str]) -> list[str]:
    """A file stem per row, unique within one run: its 1-based row number and the image's own stem."""
    return [f"{n:04d}_{Path(str(image)).stem or 'image'}" for n, image in enumerate(images, start=1)]


def check_maps_dir(folder: Path, names: list[str]) -> None:
    """Before any work: `folder` must be (or become) a writable folder none of whose map files exist."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--maps {folder}: exists and is not a folder")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--maps {folder}: {existing} is not writable")
    taken = [folder / f"{n}{s}" for n in names for s in MAP_SUFFIXES if (folder / f"{n}{s}").exists()]
    if taken:
        raise FileExistsError(f"--maps {folder}: {taken[0].name} exists; maps never replace files")


def write_maps(
    folder: Path, name: str, image: ImageInput, quality: np.ndarray, authenticity: np.ndarray
) -> Path:
    """`folder/name.png` (the panel) and `folder/name.npz` (the arrays), each written whole or not at all;
    returns the PNG's path."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = io.BytesIO()
    np.savez_compressed(
        arrays, quality=quality.astype(np.float32), authenticity=authenticity.astype(np.float32)
    )
    with atomic_write(folder / f"{name}.npz", "wb") as fh:
        fh.write(arrays.getvalue())
    png = folder / f"{name}.png"
    with atomic_write(png, "wb") as fh:
        panel(image, quality, authenticity).save(fh, format="PNG")
    return png
