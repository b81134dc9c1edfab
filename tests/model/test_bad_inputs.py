"""Every kind of bad input a user may hand `mint-iqa score`, generated here: each gets a clear per-item status
(or, for a bad manifest/output, a one-line error and nothing written), the batch goes on, the exit code
reports partial failure, and existing files are never overwritten."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import tool

COLS = ["quality", "authenticity", "correspondence"]
RNG = np.random.default_rng(7)
PIXELS = RNG.integers(0, 255, (72, 96, 3), dtype=np.uint8)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png() -> bytes:
    return _save(Image.fromarray(PIXELS), "PNG")


def _jpeg() -> bytes:
    return _save(Image.fromarray(PIXELS), "JPEG", quality=90)


def _bomb() -> bytes:  # 12,000 x 12,000 1-bit PNG: a few KB on disk, 144 M pixels when decoded
    return _save(Image.new("1", (12_000, 12_000)), "PNG")


def _animated() -> bytes:
    frames = [Image.fromarray(PIXELS).convert("P"), Image.fromarray(255 - PIXELS).convert("P")]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated() -> (
    bytes
):  # stored sideways, EXIF orientation 6 says "rotate 90 degrees clockwise to view"
    img = Image.fromarray(np.ascontiguousarray(np.rot90(PIXELS, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(img, "JPEG", quality=95, exif=exif.tobytes())


def _palette_transparent() -> bytes:
    img = Image.fromarray(PIXELS).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _save(img, "PNG", transparency=0)


def _float_tiff() -> bytes:
    return _save(Image.fromarray(PIXELS[..., 0].astype(np.float32) / 255.0), "TIFF")


# name in the manifest -> (bytes maker, prompt, expected status: "ok" or a substring of the reason)
CASES: dict[str, tuple[Callable[[], bytes] | None, str, str]] = {
    "zero-bytes.png": (lambda: b"", "a cat", "empty file (0 bytes)"),
    "truncated.png": (lambda: _png()[:300], "a cat", "truncated or corrupt"),
    "truncated.jpg": (lambda: _jpeg()[: len(_jpeg()) // 2], "a cat", "truncated or corrupt"),
    "text-named.png": (lambda: b"this is not an image\n" * 10, "a cat", "not a recognised image format"),
    "html-named.jpg": (lambda: b"<html><body>hi</body></html>", "a cat", "not a recognised image format"),
    "bomb.png": (_bomb, "a cat", "image too large"),
    "cmyk.jpg": (lambda: _save(Image.fromarray(PIXELS).convert("CMYK"), "JPEG"), "a cat", "ok"),
    "sixteen-bit.png": (
        lambda: _save(Image.fromarray(PIXELS[..., 0].astype(np.uint16) * 257), "PNG"),
        "a cat",
        "ok",
    ),
    "palette-alpha.png": (_palette_transparent, "a cat", "ok"),
    "animated.gif": (_animated, "a cat", "ok"),
    "exif-rotated.jpg": (_exif_rotated, "a cat", "ok"),
    "one-pixel.png": (lambda: _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "a cat", "ok"),
    "grey-alpha.png": (lambda: _save(Image.fromarray(PIXELS).convert("LA"), "PNG"), "a cat", "ok"),
    "rgba.png": (lambda: _save(Image.fromarray(PIXELS).convert("RGBA"), "PNG"), "a cat", "ok"),
    "float.tif": (_float_tiff, "a cat", "ok"),
    "png-named.jpg": (_png, "a cat", "ok"),
    "wide.png": (lambda: _save(Image.new("RGB", (4000, 3), (9, 90, 200)), "PNG"), "a cat", "ok"),
    "webp.webp": (lambda: _save(Image.fromarray(PIXELS), "WEBP"), "a cat", "ok"),
    "empty-prompt.png": (_png, "", "prompt is empty"),
    "blank-prompt.png": (_png, "   \t", "prompt is empty"),
    "long-prompt.png": (_png, "a cat " * 1667, "the limit is 2000"),
    "missing.png": (None, "a cat", "no such file"),
    "a-folder": (None, "a cat", "is a directory"),
    "a-pipe.png": (None, "a cat", "not a regular file"),
    "../outside.png": (None, "a cat", "escapes the dataset root"),
    "link-out.png": (None, "a cat", "escapes the dataset root"),
    "/etc/hostname": (None, "a cat", "must be relative"),
    "good.png": (_png, "a cat", "ok"),
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    for name, (make, _, _) in CASES.items():
        if make is not None:
            (root / name).write_bytes(make())
    (root / "a-folder").mkdir()
    os.mkfifo(root / "a-pipe.png")
    (tmp_path / "outside.png").write_bytes(_png())
    (root / "link-out.png").symlink_to(tmp_path / "outside.png")
    rows = [(name, prompt) for name, (_, prompt, _) in CASES.items()]
    rows.append(("good.png", "a cat"))  # a duplicate row
    pd.DataFrame(rows, columns=["image", "prompt"]).to_csv(root / "manifest.csv", index=False)
    return root


def _score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("mint-iqa"), "score", *args], capture_output=True, text=True, timeout=600)


def test_every_bad_item_gets_a_status_and_the_batch_goes_on(
    corpus: Path, scorer_dir: Path, tmp_path: Path
) -> None:
    assert len(CASES) >= 25
    out = tmp_path / "scores.csv"
    proc = _score("--manifest", str(corpus / "manifest.csv"), "--out", str(out), "--model", str(scorer_dir))
    assert proc.returncode == 1, proc.stderr  # partial failure
    result = pd.read_csv(out, keep_default_na=False)
    assert len(result) == len(CASES) + 1 and list(result["image"][: len(CASES)]) == list(CASES)
    for (name, (_, _, expected)), status in zip(CASES.items(), result["status"]):
        if expected == "ok":
            assert status == "ok", (name, status)
        else:
            assert expected in status, (name, status)
            assert "\n" not in status
    assert "duplicate of row" in result["status"].iloc[-1]
    ok = result["status"] == "ok"
    assert result.loc[ok, COLS].astype(float).notna().all().all()
    assert (result.loc[~ok, COLS] == "").all().all()
    assert "failed" in proc.stderr and "bomb.png" in proc.stderr


def test_animated_gif_uses_first_frame_and_exif_is_applied(corpus: Path, scorer_dir: Path) -> None:
    import mint_iqa

    m = mint_iqa.load(scorer_dir)
    first_frame = np.asarray(Image.open(corpus / "animated.gif").convert("RGB"))
    upright = np.ascontiguousarray(
        np.rot90(np.asarray(Image.open(corpus / "exif-rotated.jpg").convert("RGB")), -1)
    )
    # raw head outputs: an untrained model's calibrated scores may all clip to the same end of the scale
    table = m.score(
        [corpus / "animated.gif", first_frame, corpus / "exif-rotated.jpg", upright], "a cat", scale="raw"
    )
    np.testing.assert_allclose(table[COLS].to_numpy()[0], table[COLS].to_numpy()[1], atol=1e-5)
    np.testing.assert_allclose(table[COLS].to_numpy()[2], table[COLS].to_numpy()[3], atol=1e-5)
    sideways = m.score(
        [np.asarray(Image.open(corpus / "exif-rotated.jpg").convert("RGB"))], "a cat", scale="raw"
    )
    assert Image.open(corpus / "exif-rotated.jpg").size == (72, 96)  # stored sideways on disk
    assert table[COLS].to_numpy()[2].tolist() != sideways[COLS].to_numpy()[0].tolist()


def test_decoder_errors_and_non_images_are_rows_not_batch_failures(scorer_dir: Path, tmp_path: Path) -> None:
    """A file that starts like a JPEG and goes on as garbage (the decoder raises OSError inside Pillow), and
    items that are no image at all (None, a number, a dict), get their reason in `status`; the good image in
    the same batch is scored, through the API and the CLI alike."""
    import mint_iqa

    garbage = tmp_path / "g.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    good = tmp_path / "good.png"
    good.write_bytes(_png())
    table = mint_iqa.load(scorer_dir).score([garbage, good, None, 3, {"a": 1}], "a cat")
    assert list(table["status"] == "ok") == [False, True, False, False, False]
    assert str(garbage) in table["status"][0] and all("not an image" in s for s in table["status"][2:])
    run = subprocess.run(
        [
            tool("mint-iqa"),
            "score",
            str(garbage),
            str(good),
            "-p",
            "a cat",
            "-o",
            str(tmp_path / "o.csv"),
            "--model",
            str(scorer_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert list(pd.read_csv(tmp_path / "o.csv")["status"] == "ok") == [False, True]


def test_arrays_that_are_not_images_get_a_status(scorer_dir: Path) -> None:
    import mint_iqa

    bad = [
        np.zeros((4, 4, 2), np.uint8),
        np.full((8, 8, 3), np.nan, np.float32),
        np.zeros((0, 5, 3), np.uint8),
        np.zeros((8, 8, 3), np.int64),
    ]
    table = mint_iqa.load(scorer_dir).score(bad, "a cat")
    assert "array must be" in table["status"][0] and "NaN" in table["status"][1]
    assert table["status"][2] != "ok" and "unsupported array dtype" in table["status"][3]


def test_bad_manifests_and_outputs_fail_whole_with_one_line(
    corpus: Path, scorer_dir: Path, tmp_path: Path
) -> None:
    model = ["--model", str(scorer_dir)]
    cases = {
        "missing columns": (b"path,text\na.png,x\n", "missing column(s) ['image', 'prompt']"),
        "not UTF-8": ("image,prompt\ngood.png,caf\xe9 au lait\n".encode("latin-1"), "not UTF-8"),
        "empty file": (b"", "not a readable CSV"),
    }
    for label, (content, message) in cases.items():
        manifest = corpus / f"{label.replace(' ', '-')}.csv"
        manifest.write_bytes(content)
        out = tmp_path / f"{label.replace(' ', '-')}.csv"
        proc = _score("-m", str(manifest), "-o", str(out), *model)
        assert proc.returncode == 2 and message in proc.stderr and not out.exists(), (label, proc.stderr)
        assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, (label, proc.stderr)

    manifest = str(corpus / "manifest.csv")
    proc = _score("-m", manifest, "-o", str(tmp_path / "no" / "such" / "folder.csv"), *model)
    assert proc.returncode == 2 and "output folder does not exist" in proc.stderr
    proc = _score("-m", manifest, "-o", str(tmp_path / "scores.txt"), *model)
    assert proc.returncode == 2 and "must end in .csv, .json, .parquet" in proc.stderr
    existing = tmp_path / "existing.csv"
    existing.write_text("precious user data\n")
    proc = _score("-m", manifest, "-o", str(existing), *model)
    assert (
        proc.returncode == 2
        and "pass --force" in proc.stderr
        and existing.read_text() == "precious user data\n"
    )
    proc = _score(str(corpus / "good.png"), "-o", str(tmp_path / "x.csv"), *model)
    assert proc.returncode == 2 and "--prompt is required" in proc.stderr
    proc = _score(str(corpus / "good.png"), "-m", manifest, "-p", "x", "-o", str(tmp_path / "x.csv"), *model)
    assert proc.returncode == 2 and "not both" in proc.stderr
    proc = _score(
        str(corpus / "good.png"),
        "-p",
        "a cat",
        "-o",
        str(tmp_path / "x.csv"),
        "--model",
        str(tmp_path / "no-model"),
    )
    assert (
        proc.returncode == 2 and "no such model folder" in proc.stderr and not (tmp_path / "x.csv").exists()
    )
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))  # no half-written leftovers


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_images_and_folders_in_every_output_format(
    corpus: Path, scorer_dir: Path, tmp_path: Path, suffix: str
) -> None:
    from mint_iqa.inference.predict import read_table

    empty = tmp_path / "empty-folder"
    empty.mkdir()
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(_png())
    out = tmp_path / f"scores{suffix}"
    proc = _score(
        str(corpus / "good.png"),
        str(folder),
        str(empty),
        str(corpus / "zero-bytes.png"),
        "-p",
        "a cat",
        "-o",
        str(out),
        "--model",
        str(scorer_dir),
    )
    assert proc.returncode == 1, proc.stderr
    table = read_table(out)
    assert len(table) == 6 and list(table["status"][:4]) == ["ok"] * 4
    assert "folder has no image files" in table["status"][4] and "empty file" in table["status"][5]
    assert table["image"][1].endswith("0.png") and table["image"][3].endswith("2.png")
    all_ok = _score(
        str(folder), "-p", "a cat", "-o", str(tmp_path / f"ok{suffix}"), "--model", str(scorer_dir)
    )
    assert all_ok.returncode == 0, all_ok.stderr
