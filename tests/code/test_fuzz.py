"""Property-based fuzzing (hypothesis) of where user bytes come in: image decoding and manifests.

* Image bytes: small valid PNG, JPEG (with EXIF orientation), WebP, GIF (animated), TIFF (raw and LZW) and
  BMP files, mutated (truncation, bit flips, header overwrites, inserted and deleted runs, appended garbage),
  go through `load_image` as bytes and as a file, and through the batch decoder (`inference._decode`): each
  is an RGB image, or an `ImageError` whose one-line message starts with the item's name; the same reason
  either way; no other exception.
* Path names: any text (NUL, newlines, unencodable surrogates, very long) as a file name: an `ImageError`.
* Manifests: generated CSV text (varying field counts, quoting styles, embedded commas, quotes, newlines,
  control characters, blank lines, line endings) in utf-8, utf-8-sig, latin-1, cp1252 or utf-16, or raw
  bytes: `read_manifest` returns rows whose status is `ok` or a one-line reason (and the `ok` rows decode
  or fail with a one-line reason), or raises ValueError / FileNotFoundError with one line naming the file.

Every run is deterministic (derandomized, no example database). The slow test runs FUZZ_CASES cases in all;
the quick one a few hundred, in every test run.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

from mint_iqa.inference.predict import read_manifest
from mint_iqa.io import DEFAULT_MAX_PIXELS, OK, ImageError, load_image

FUZZ_CASES = 10_000  # generated cases the slow test runs at least, over all properties
SHARES = {"image": 0.6, "manifest": 0.3, "path": 0.1}  # of FUZZ_CASES; the quick test runs QUICK_SHARE of it
QUICK_SHARE = 0.03
SIZE = 24  # the batch decoder's input size here (small: the point is decoding, not resizing)
WINDOWS = 4  # native-resolution windows, as `Scorer` asks for (images 1.5 x SIZE and larger)

# -- image bytes ----------------------------------------------------------------------------------------


@functools.cache
def originals() -> dict[str, bytes]:
    """One small valid file per format (16x12 RGB noise), keyed by the file name used for it."""
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the decoder's exif_transpose path is fuzzed too
    files = {
        "a.png": {"format": "PNG"},
        "a.jpg": {"format": "JPEG", "quality": 90, "exif": exif.tobytes()},
        "a.webp": {"format": "WEBP", "quality": 80},
        "a.gif": {
            "format": "GIF",
            "save_all": True,
            "append_images": [Image.fromarray(255 - pixels)],
            "duration": 50,
            "loop": 0,
        },
        "a.tif": {"format": "TIFF"},
        "lzw.tif": {"format": "TIFF", "compression": "tiff_lzw"},
        "a.bmp": {"format": "BMP"},
    }
    out = {}
    for name, options in files.items():
        buf = io.BytesIO()
        img.save(buf, **options)
        out[name] = buf.getvalue()
    return out


def mutations() -> st.SearchStrategy[tuple]:
    """One edit of a file's bytes; positions are taken modulo the current length."""
    at = st.integers(0, 1 << 16)
    return st.one_of(
        st.tuples(st.just("truncate"), at),
        st.tuples(st.just("flip"), at, st.integers(0, 7)),
        st.tuples(st.just("header"), st.integers(0, 63), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("insert"), at, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), at, st.integers(1, 64)),
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=256)),
    )


def mutate(data: bytes, edits: list[tuple]) -> bytes:
    """`data` with `edits` (see `mutations`) applied in order."""
    buf = bytearray(data)
    for kind, *args in edits:
        if kind == "truncate":
            del buf[args[0] % (len(buf) + 1) :]
        elif kind == "flip" and buf:
            buf[args[0] % len(buf)] ^= 1 << args[1]
        elif kind == "header":
            buf[args[0] : args[0] + len(args[1])] = args[1]
        elif kind == "insert":
            at = args[0] % (len(buf) + 1)
            buf[at:at] = args[1]
        elif kind == "delete" and buf:
            at = args[0] % len(buf)
            del buf[at : at + args[1]]
        elif kind == "append":
            buf += args[0]
    return bytes(buf)


def one_line(message: str, name: str) -> str:
    """The reason of a one-line message '<name>: <reason>' (asserting that form)."""
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{name}: "), (message, name)
    return message[len(name) + 2 :]


def load_outcome(item: bytes | Path | str, name: str) -> str:
    """OK for an RGB image, else the reason of the `ImageError`; any other exception propagates."""
    try:
        img = load_image(item)
    except ImageError as exc:
        return one_line(str(exc), name)
    assert isinstance(img, Image.Image) and img.mode == "RGB" and min(img.size) >= 1
    return OK


def check_image(data: bytes, path: Path) -> str:
    """The image properties for one mutated file (written to `path`); returns its outcome."""
    from mint_iqa.inference.scoring import Views, _decode

    path.write_bytes(data)
    outcome = load_outcome(data, f"<{len(data)} bytes>")
    assert load_outcome(path, str(path)) == outcome  # a file and its bytes: the same result
    decoded = _decode(path, SIZE, DEFAULT_MAX_PIXELS, WINDOWS)  # what a batch makes of the file
    if outcome == OK:
        whole = decoded.whole if isinstance(decoded, Views) else decoded
        assert isinstance(whole, np.ndarray) and whole.shape == (SIZE, SIZE, 3) and whole.dtype == np.uint8
    else:
        assert isinstance(decoded, str) and one_line(decoded, str(path)) == outcome
    return outcome


# -- manifests ------------------------------------------------------------------------------------------

REAL = ["a.png", "b.jpg", "sub/c.webp"]  # image files beside the fuzzed manifest
SPECIAL = list(",\"\n\r\t ;'\\\x00\x1b\x07\x7f\x85\ufeff\u2028\xe9\U0001f600")
NAMES = [*REAL, "missing.png", "sub", "../outside.png", "/etc/hostname", "", " a.png", "a.png\n", "a.png\x00"]
COLUMNS = [
    "image",
    "prompt",
    "id",
    "notes",
    "quality",
    "status",
    "path",
    "explanation_quality",
    "input_quality",
    "",
]
CELL = st.one_of(
    st.sampled_from(NAMES),
    st.text(st.one_of(st.sampled_from(SPECIAL), st.characters(codec="utf-8")), max_size=12),
)
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"]  # UTF-8 is the valid one


@st.composite
def manifests(draw: st.DrawFn) -> bytes:
    """Manifest bytes: a header, rows (mostly of the header's width), a CSV style, blank lines, an
    encoding."""
    header = draw(
        st.one_of(
            st.lists(st.sampled_from(COLUMNS[2:]), max_size=2).map(lambda extra: ["image", "prompt", *extra]),
            st.permutations(COLUMNS[:4]),
            st.lists(st.one_of(st.sampled_from(COLUMNS), CELL), min_size=1, max_size=4),
        )
    )
    width = len(header)
    exact, ragged = st.lists(CELL, min_size=width, max_size=width), st.lists(CELL, max_size=width + 2)
    row = st.one_of(exact, exact, exact, ragged)  # mostly the header's width: enough manifests parse
    rows = draw(st.lists(row, max_size=6))
    style = draw(st.sampled_from(["minimal", "minimal", "minimal", "all", "nonnumeric", "none"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = render_csv([header, *rows], style, newline).split(newline)
    for at in draw(st.lists(st.integers(0, len(lines)), max_size=2)):  # blank lines between records
        lines.insert(at, draw(st.sampled_from(["", " ", "\t "])))
    text = newline.join(lines)
    if draw(st.integers(0, 9)) == 0:  # and now and then a line break anywhere
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "\n" + text[at:]
    return text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


def render_csv(rows: list[list[str]], style: str, newline: str) -> str:
    """`rows` as CSV: quoted by `csv` in a quoting style, or ('none') joined with commas as they are."""
    if style == "none":
        return "".join(",".join(row) + newline for row in rows)
    quoting = {"minimal": csv.QUOTE_MINIMAL, "all": csv.QUOTE_ALL, "nonnumeric": csv.QUOTE_NONNUMERIC}[style]
    buf = io.StringIO(newline="")
    csv.writer(buf, quoting=quoting, lineterminator=newline).writerows(rows)
    return buf.getvalue()


def check_manifest(data: bytes, path: Path) -> str:
    """The manifest properties for one generated file (written to `path`); returns 'error' or 'table'."""
    from mint_iqa.inference.scoring import _decode

    path.write_bytes(data)
    try:
        table = read_manifest(path)
    except (ValueError, FileNotFoundError) as exc:
        one_line(str(exc), str(path))
        return "error"
    root = path.resolve().parent
    assert list(table.columns[:2]) == ["image", "prompt"] and list(table.columns[-2:]) == ["path", "status"]
    for image, resolved, status in zip(table["image"], table["path"], table["status"]):
        assert isinstance(image, str) and isinstance(status, str)
        if status != OK:
            assert resolved is None or status.startswith("duplicate of row")
            assert len(status.splitlines()) == 1, status
            continue
        assert isinstance(resolved, Path) and resolved.is_relative_to(root)
        decoded = _decode(resolved, SIZE, DEFAULT_MAX_PIXELS, WINDOWS)
        assert not isinstance(decoded, str) or len(decoded.splitlines()) == 1, decoded
    return "table"


@pytest.fixture(scope="module", autouse=True)
def hypothesis_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis keeps its caches (constants, unicode tables) in a temp folder, not in the checkout."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a few real images (the fuzzed manifests' rows may name them) and one outside it."""
    root = tmp_path_factory.mktemp("fuzz") / "set"
    for name in REAL:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10, 14, 3), 90, np.uint8)).save(root / name)
    Image.new("RGB", (4, 4)).save(root.parent / "outside.png")
    return root


# -- the runs -------------------------------------------------------------------------------------------


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def fuzz_images(folder: Path, examples: int, seen: dict[str, int]) -> int:
    """Run the image property on `examples` generated cases; returns how many ran."""
    calls = 0

    @fuzz_settings(examples)
    @given(original=st.sampled_from(sorted(originals())), edits=st.lists(mutations(), min_size=1, max_size=6))
    def image_bytes(original: str, edits: list[tuple]) -> None:
        nonlocal calls
        calls += 1
        outcome = check_image(mutate(originals()[original], edits), folder / f"case-{original}")
        key = "image ok" if outcome == OK else "image error"
        seen[key] = seen.get(key, 0) + 1

    image_bytes()
    return calls


def fuzz_paths(folder: Path, examples: int) -> int:
    """Run the path-name property on `examples` generated names (one path component under `folder`)."""
    calls = 0
    letters = st.one_of(
        st.sampled_from([*SPECIAL, "\ud800", "\udcff", "."]), st.characters(exclude_characters="/")
    )

    @fuzz_settings(examples)
    @given(
        name=st.text(letters, min_size=1, max_size=40).map(lambda s: s.replace("/", "")) | st.just("x" * 300)
    )
    def path_names(name: str) -> None:
        nonlocal calls
        calls += 1
        item = f"{folder}/{name}"
        for candidate in (item, Path(item)):
            with pytest.raises(ImageError) as info:
                load_image(candidate)
            text = str(candidate)
            one_line(str(info.value), text if text.isprintable() else repr(text)[1:-1])

    path_names()
    return calls


def fuzz_manifests(root: Path, examples: int, seen: dict[str, int]) -> int:
    """Run the manifest property on `examples` generated manifests in `root`; returns how many ran."""
    calls = 0

    @fuzz_settings(examples)
    @given(data=st.one_of(manifests(), manifests(), manifests(), st.binary(max_size=300)))
    def manifest_text(data: bytes) -> None:
        nonlocal calls
        calls += 1
        key = f"manifest {check_manifest(data, root / 'm.csv')}"
        seen[key] = seen.get(key, 0) + 1

    manifest_text()
    return calls


def run_all(root: Path, total: int) -> tuple[int, dict[str, int]]:
    """Every property on its share of `total` cases; returns how many ran and the outcomes seen."""
    seen: dict[str, int] = {}
    images = root.parent / "images"
    images.mkdir(exist_ok=True)
    ran = fuzz_images(images, round(total * SHARES["image"]), seen)
    ran += fuzz_manifests(root, round(total * SHARES["manifest"]), seen)
    ran += fuzz_paths(images, round(total * SHARES["path"]))
    return ran, seen


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on corrupt data (EXIF, truncated reads)
def test_fuzz_quick(dataset: Path) -> None:
    """A few hundred cases, in every run."""
    ran, seen = run_all(dataset, round(FUZZ_CASES * QUICK_SHARE))
    assert ran >= FUZZ_CASES * QUICK_SHARE, ran
    assert all(seen.get(key) for key in ("image ok", "image error", "manifest table", "manifest error")), seen


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fuzz_ten_thousand_cases(dataset: Path) -> None:
    """FUZZ_CASES generated cases over the three properties; the mutations both keep some files decodable
    and break most, and the manifests both parse and fail."""
    ran, seen = run_all(dataset, FUZZ_CASES)
    assert ran >= FUZZ_CASES, ran
    assert seen["image ok"] >= 100 and seen["image error"] >= 1000, seen
    assert seen["manifest table"] >= 300 and seen["manifest error"] >= 300, seen


# -- what the fuzzing found -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, reason",
    [
        ("bad\x00name.png", "not a usable path (embedded null byte)"),
        ("surrogate\ud800.png", "not a usable path ('utf-8' codec can't encode"),
        ("x" * 300, "cannot read file (File name too long)"),
    ],
)
def test_unusable_path_is_an_image_error(tmp_path: Path, name: str, reason: str) -> None:
    """Found by fuzzing: a NUL or an unencodable character in a path made `open` raise a bare ValueError
    ('embedded null byte', naming no item), and a name longer than the file system allows an OSError
    from `Path.is_dir`; both escaped `load_image` instead of becoming the item's `ImageError`."""
    with pytest.raises(ImageError) as info:
        load_image(f"{tmp_path}/{name}")
    assert reason in str(info.value) and len(str(info.value).splitlines()) == 1


def test_name_with_a_newline_keeps_the_message_on_one_line(tmp_path: Path) -> None:
    """Found by fuzzing: a file name with a line break (newline, or a separator such as \\x1e) split the
    'name: reason' message over two lines."""
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "two\nlines.png")
    assert str(info.value) == f"{tmp_path}/two\\nlines.png: no such file"
