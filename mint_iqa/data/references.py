"""Reference photographs of the proxy dataset, materialised from files that package installs provide.

No dataset hub is reachable, so the raw data are real photographs shipped inside packages: wheels
(scikit-image, scikit-learn, matplotlib; found where pip installed them) and Debian packages of desktop
backgrounds (`debian:<name>=<version>`; the pinned `.deb` is downloaded once with `apt-get download` into
the user cache and read with `dpkg-deb`, nothing is installed). `fetch` decodes them, box-reduces large
photographs by the smallest integer factor that brings the long side to at most `MAX_SIDE`, and writes `data/`
byte-for-byte the same on every machine (pinned Pillow, fixed PNG settings), so `data.dvc` never changes
on a fresh clone.

The catalogue (`catalogue.csv` beside this module) gives each photograph its source, licence and a
caption split into slots (style, attribute, subject, scene, detail, atmosphere): the prompt generator
fills them and the correspondence ladder swaps them.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import math
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from mint_iqa.io import atomic_write, cache_dir, load_image

REFERENCES_TABLE = "references.csv"
IMAGES_DIR = "references"
CATALOGUE = Path(__file__).with_name("catalogue.csv")
MAX_SIDE = 1024  # long side of a stored reference; larger photographs are box-reduced
DEBIAN = "debian:"


@dataclass(frozen=True)
class Reference:
    id: str
    package: str  # pip distribution that ships the file, or debian:<package>=<version>
    resource: str  # path inside that package
    licence: str
    attribution: str
    subject: str
    plural: bool  # "coins" takes no article
    attribute: str
    scene: str
    detail: str  # a secondary thing the photograph really shows
    styles: str  # '|'-separated choices for the style slot
    atmospheres: str  # '|'-separated choices for the atmosphere slot

    @property
    def file(self) -> str:
        return f"{IMAGES_DIR}/{self.id}.png"


def _read_table(path: Path) -> list[Reference]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        Reference(**{k: v for k, v in row.items() if k != "file"} | {"plural": row["plural"] == "True"})
        for row in rows
    ]


REFERENCES: tuple[Reference, ...] = tuple(_read_table(CATALOGUE))
BY_ID = {ref.id: ref for ref in REFERENCES}


@functools.lru_cache(maxsize=8)
def _debian_files(package: str, resources: frozenset[str]) -> dict[str, bytes]:
    """The named files of a pinned Debian package, read from its `.deb` (downloaded once, cached)."""
    name, _, version = package.removeprefix(DEBIAN).partition("=")
    cache = cache_dir() / "debs"
    debs = sorted(cache.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))
    if not debs:
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise FileNotFoundError(
                f"{package}: needs apt-get and dpkg-deb (Debian/Ubuntu) to download, or the "
                f".deb placed in {cache}"
            )
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            proc = subprocess.run(
                ["apt-get", "download", f"{name}={version}"],
                cwd=tmp,
                capture_output=True,
                text=True,
                check=False,
            )
            got = sorted(Path(tmp).glob("*.deb"))
            if proc.returncode or not got:
                lines = proc.stderr.strip().splitlines() or ["no .deb"]
                reason = next((line for line in lines if line.startswith("E:")), lines[-1])
                raise FileNotFoundError(f"{package}: apt-get download failed: {reason}")
            debs = [got[0].replace(cache / got[0].name)]
    found = {}
    with subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        try:
            with tarfile.open(
                fileobj=proc.stdout, mode="r|"
            ) as tar:  # streamed: the package is never unpacked
                for member in tar:
                    path = member.name.removeprefix("./")
                    if path in resources and member.isfile():
                        found[path] = tar.extractfile(member).read()
        except tarfile.TarError:
            proc.stdout.close()  # dpkg-deb's own message is reported below
        error = proc.stderr.read().decode(errors="replace").strip()
    if proc.returncode:
        raise FileNotFoundError(f"{debs[0]}: not a readable .deb: {error}")
    missing = sorted(resources - set(found))
    if missing:
        raise FileNotFoundError(f"{package}: has no file {missing[0]}")
    return found


def _package_file(ref: Reference) -> Path:
    top = ref.resource.split("/")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{ref.id}: package {ref.package!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0]).parent / ref.resource


def _sources(refs: tuple[Reference, ...]) -> dict[str, Path | bytes]:
    """Each reference's packaged file: a path (wheels) or its bytes (Debian packages)."""
    out: dict[str, Path | bytes] = {r.id: _package_file(r) for r in refs if not r.package.startswith(DEBIAN)}
    for package in sorted({r.package for r in refs if r.package.startswith(DEBIAN)}):
        mine = [r for r in refs if r.package == package]
        files = _debian_files(package, frozenset(r.resource for r in mine))
        out |= {r.id: files[r.resource] for r in mine}
    return out


def _png_bytes(ref: Reference, source: Path | bytes) -> bytes:
    """Decode the packaged file, box-reduce it to at most MAX_SIDE on the long side (an integer factor:
    exact, no resampler version to drift) and re-encode it as PNG with fixed settings (no metadata)."""
    img = load_image(source, name=ref.id)
    factor = math.ceil(max(img.size) / MAX_SIDE)
    if factor > 1:
        img = img.reduce(factor)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def fetch(raw_dir: str | Path = "data", force: bool = False) -> list[Path]:
    """Materialise the reference photographs and `references.csv` under `raw_dir`.

    Files already present with identical bytes are left alone; a different existing file is never
    overwritten unless `force` is set (it may be someone's data).
    """
    raw_dir = Path(raw_dir)
    sources = _sources(REFERENCES)
    outputs: dict[Path, bytes] = {raw_dir / ref.file: _png_bytes(ref, sources[ref.id]) for ref in REFERENCES}
    table = io.StringIO()
    columns = [f.name for f in fields(Reference)] + ["file"]
    writer = csv.DictWriter(table, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for ref in REFERENCES:
        writer.writerow({**asdict(ref), "file": ref.file})
    outputs[raw_dir / REFERENCES_TABLE] = table.getvalue().encode()

    conflicts = [p for p, data in outputs.items() if p.exists() and p.read_bytes() != data]
    if conflicts and not force:
        raise FileExistsError(
            f"{conflicts[0]}: exists with different content ({len(conflicts)} file(s) differ); "
            "move it away or pass --force to overwrite"
        )
    written = []
    for path, data in outputs.items():
        if path.exists() and path.read_bytes() == data:
            continue
        with atomic_write(path, "wb") as fh:
            fh.write(data)
        written.append(path)
    return written


def load_references(raw_dir: str | Path = "data") -> list[tuple[Reference, np.ndarray]]:
    """The reference table with decoded RGB pixels (uint8 HxWx3), in table order."""
    raw_dir = Path(raw_dir)
    table = raw_dir / REFERENCES_TABLE
    if not table.exists():
        raise FileNotFoundError(f"{table}: missing; run `mint-iqa data fetch` first")
    return [(ref, np.asarray(load_image(raw_dir / ref.file, name=ref.file))) for ref in _read_table(table)]
