"""The one place where images are decoded and files are written.

* `load_image` turns anything a user may hand us (path, bytes, PIL image, numpy array) into an upright
  8-bit RGB PIL image, or raises `ImageError` with a one-line message naming the item and the reason.
* `atomic_write` / `atomic_dir` make outputs appear whole or not at all (temp file + rename).
* `confined` keeps manifest paths inside their dataset root.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
# Pillow's own decompression-bomb guard stays on; we also check the header size against our limit
# before decoding any pixel, so the guard never depends on global state someone else may have changed.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

_UMASK = os.umask(0)
os.umask(_UMASK)

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray
OK = "ok"  # the status of an item that was scored; any other status says why it was not
IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
)  # what a folder's images end in


class ImageError(ValueError):
    """An input image that cannot be used; the message is one line: '<item>: <reason>'."""


def _describe(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, bytes):
        return f"<{len(item)} bytes>"
    if isinstance(item, np.ndarray):
        return f"<array {item.shape} {item.dtype}>"
    return f"<{type(item).__name__}>"


def _one_line(name: str) -> str:
    """`name` as it is when printable, else with its escapes (a newline in a file name must not split the
    one-line message)."""
    return name if name.isprintable() else repr(name)[1:-1]


def _array_to_pil(arr: np.ndarray, name: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageError(f"{name}: array must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.size == 0:
        raise ImageError(f"{name}: empty array")
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{name}: array contains NaN or infinite values")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    else:
        raise ImageError(
            f"{name}: unsupported array dtype {arr.dtype} (use uint8, uint16 or float in [0, 1])"
        )
    return Image.fromarray(arr)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: 16-bit scaled to 8, transparency composited on white, CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top, 0, 1) * 255.0 + 0.5
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img


def cache_dir() -> Path:
    """The user's cache of mint-iqa (converted weights, downloaded packages): $MINT_IQA_CACHE, else
    $XDG_CACHE_HOME/mint-iqa, else ~/.cache/mint-iqa."""
    if os.environ.get("MINT_IQA_CACHE"):
        return Path(os.environ["MINT_IQA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mint-iqa"


def load_image(
    item: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> Image.Image:
    """Decode `item` into an upright RGB image (EXIF orientation applied; animations: first frame).

    Raises `ImageError` naming the item for: missing file, directory, empty file, non-image data,
    truncated data, more than `max_pixels` pixels, unsupported arrays.
    """
    name = _one_line(name or _describe(item))
    if not isinstance(item, (str, os.PathLike, bytes, Image.Image, np.ndarray)):
        raise ImageError(f"{name}: not an image (expected a path, bytes, a PIL image or an array)")
    if isinstance(item, np.ndarray):
        img = _array_to_pil(item, name)
    elif isinstance(item, Image.Image):
        img = item
    else:
        data = item if isinstance(item, bytes) else _read_file(Path(item), name)
        if not data:
            raise ImageError(f"{name}: empty file (0 bytes)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise ImageError(f"{name}: image too large (decompression-bomb limit)") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not a recognised image format") from None
        except Exception as exc:  # a decoder that fails on the header: the item's failure, never the batch's
            raise ImageError(f"{name}: corrupt image header ({_reason(exc)})") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image too large ({width}x{height} = {width * height} pixels > {max_pixels})"
        )
    if width == 0 or height == 0:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)
        img.load()
        if img is item:  # the caller's image: turned upright in a copy, never in place
            img = ImageOps.exif_transpose(img)
        else:  # decoded here: in place (no copy of the pixels)
            ImageOps.exif_transpose(img, in_place=True)
        return _to_rgb(img)
    except ImageError:
        raise
    except Exception as exc:  # whatever a decoder raises on bad data becomes this item's reason
        raise ImageError(f"{name}: truncated or corrupt image data ({_reason(exc)})") from None


def _read_file(path: Path, name: str) -> bytes:
    """The bytes of a regular file; `ImageError` for a missing, unreadable or non-regular file and for a path
    the OS cannot be asked about (a NUL, an unencodable character, a name too long)."""
    try:
        kind = path.stat().st_mode
        if stat.S_ISDIR(kind):
            raise ImageError(f"{name}: is a directory, not an image file")
        if not stat.S_ISREG(kind):
            raise ImageError(f"{name}: not a regular file (device, socket or pipe)")
        return path.read_bytes()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL or an unencodable character: the OS cannot even be asked
        raise ImageError(f"{name}: not a usable path ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temp file beside `path`; on success rename it over `path`, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory in a temp sibling; on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def confined(root: str | Path, relative: str) -> Path:
    """Resolve `relative` under `root`; raise if it is absolute or escapes the root (`..`, symlinks)."""
    root = Path(root).resolve()
    if not relative or Path(relative).is_absolute():
        raise ValueError(f"{relative!r}: manifest paths must be relative to the dataset root")
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"{relative!r}: path escapes the dataset root {root}")
    return target
