"""Safe image loading, atomic writes and path confinement."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mint_iqa.io import ImageError, atomic_dir, atomic_write, confined, load_image


def _png(path: Path, img: Image.Image) -> Path:
    img.save(path)
    return path


def test_rgb_png_roundtrip(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    img = load_image(_png(tmp_path / "a.png", Image.fromarray(arr)))
    assert img.mode == "RGB" and img.size == (30, 20)
    assert np.array_equal(np.asarray(img), arr)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    src = Image.new("RGB", (8, 6), (200, 100, 50))
    img = src.convert(mode) if mode != "I;16" else Image.fromarray(np.full((6, 8), 40000, np.uint16))
    ext = "jpg" if mode == "CMYK" else "png"
    out = load_image(_png(tmp_path / f"x.{ext}", img))
    assert out.mode == "RGB" and out.size == (8, 6)
    if mode == "I;16":  # 16-bit scaled to 8 bits, not clipped to white
        assert abs(int(np.asarray(out)[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1


def test_transparency_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(load_image(_png(tmp_path / "t.png", img))).min() == 255


def test_exif_orientation_applied(tmp_path: Path) -> None:
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :5] = 255  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = np.asarray(load_image(tmp_path / "r.jpg"))
    assert out.shape[:2] == (20, 10)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # stripe now on top


@pytest.mark.parametrize(
    "case, reason",
    [
        ("empty", "empty file"),
        ("text", "not a recognised image format"),
        ("truncated", "truncated or corrupt"),
        ("missing", "no such file"),
        ("directory", "is a directory"),
    ],
)
def test_bad_files_name_item_and_reason(tmp_path: Path, case: str, reason: str) -> None:
    path = tmp_path / f"{case}.png"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello, not a png")
    elif case == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            buf, "PNG"
        )
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif case == "directory":
        path.mkdir()
    with pytest.raises(ImageError) as err:
        load_image(path)
    message = str(err.value)
    assert message.startswith(str(path)) and reason in message and "\n" not in message


def test_decompression_bomb_rejected_before_decoding(tmp_path: Path) -> None:
    path = _png(tmp_path / "big.png", Image.new("L", (3000, 3000)))
    with pytest.raises(ImageError, match="too large"):
        load_image(path, max_pixels=1_000_000)


def test_arrays_and_bytes(tmp_path: Path) -> None:
    assert load_image(np.zeros((4, 5), np.float32)).size == (5, 4)
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 7), np.uint8))
    buf = io.BytesIO()
    Image.new("RGB", (3, 3)).save(buf, "PNG")
    assert load_image(buf.getvalue()).size == (3, 3)


def test_atomic_write_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"


def test_atomic_dir_replaces_whole_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "keep").write_text("1")
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "half").write_text("x")
        raise ValueError
    assert [p.name for p in target.iterdir()] == ["keep"]
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("x")
    assert [p.name for p in target.iterdir()] == ["new"]


def test_confined(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(b"")
    assert confined(tmp_path, "ok.png") == (tmp_path / "ok.png").resolve()
    for bad in ("../x.png", "/etc/passwd", "a/../../x.png", ""):
        with pytest.raises(ValueError):
            confined(tmp_path, bad)
    (tmp_path / "link.png").symlink_to("/etc/hostname")
    with pytest.raises(ValueError, match="escapes"):
        confined(tmp_path, "link.png")


@pytest.mark.parametrize(
    "magic",
    [
        b"\xff\xd8\xff\xe0",
        b"BM",
        b"RIFF\x00\x10\x00\x00WEBPVP8 ",
        b"GIF89a",
        b"II*\x00",
        b"\x89PNG\r\n\x1a\n",
    ],
)
def test_valid_magic_then_garbage_is_one_items_error(tmp_path: Path, magic: bytes) -> None:
    """Whatever a decoder raises on a file that starts like an image (a JPEG, BMP, WebP, GIF, TIFF or PNG
    header, then random bytes), loading ends in one `ImageError` line naming the file, never another error."""
    path = tmp_path / "g.img"
    path.write_bytes(magic + np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


@pytest.mark.parametrize("item", [None, 3, 2.5, {"path": "a.png"}, ["a.png"]])
def test_non_image_items_are_errors_with_a_reason(item: object) -> None:
    with pytest.raises(ImageError, match="not an image"):
        load_image(item)  # type: ignore[arg-type]
