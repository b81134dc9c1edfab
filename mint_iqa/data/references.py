"""Reference photographs of the proxy dataset, materialised from files that pip installs.

No dataset hub is reachable, so the raw data are real photographs shipped inside scikit-image,
scikit-learn and matplotlib wheels. `fetch` decodes them and writes `data/` byte-for-byte the same on
every machine (pinned Pillow, fixed PNG settings), so `data.dvc` never changes on a fresh clone.

Each reference carries a caption split into slots (style, attribute, subject, scene, detail,
atmosphere): the prompt generator fills them and the correspondence ladder swaps them.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from mint_iqa.io import atomic_write, load_image

REFERENCES_TABLE = "references.csv"
IMAGES_DIR = "references"


@dataclass(frozen=True)
class Reference:
    id: str
    package: str          # pip distribution that ships the file
    resource: str         # path inside that package
    licence: str
    attribution: str
    subject: str
    plural: bool          # "coins" takes no article
    attribute: str
    scene: str
    detail: str           # a secondary thing the photograph really shows
    styles: str           # '|'-separated choices for the style slot
    atmospheres: str      # '|'-separated choices for the atmosphere slot

    @property
    def file(self) -> str:
        return f"{IMAGES_DIR}/{self.id}.png"


def _ref(id, package, resource, licence, attribution, subject, attribute, scene, detail, styles,
         atmospheres, plural=False) -> Reference:
    return Reference(id, package, resource, licence, attribution, subject, plural, attribute, scene, detail,
                     "|".join(styles), "|".join(atmospheres))


PHOTO = ("a photo", "a high-resolution photograph")
BW = ("a black and white photo", "a monochrome photograph")
SCI = ("a scientific image", "a detailed capture")

REFERENCES: tuple[Reference, ...] = (
    _ref("astronaut", "scikit-image", "skimage/data/astronaut.png", "public domain", "NASA",
         "astronaut", "smiling", "posing in front of an american flag", "a model space shuttle",
         ("a portrait photo", "an official photograph"), ("studio lighting", "bright and formal mood")),
    _ref("brick", "scikit-image", "skimage/data/brick.png", "CC0", "CC0Textures / scikit-image",
         "brick wall", "weathered", "seen at a slight angle", "thick mortar joints", BW,
         ("flat overcast light", "even daylight")),
    _ref("camera", "scikit-image", "skimage/data/camera.png", "CC0", "Lav Varshney",
         "photographer", "dark-coated", "filming on a tripod in an open field", "buildings on the horizon", BW,
         ("clear daylight", "calm afternoon")),
    _ref("chelsea", "scikit-image", "skimage/data/chelsea.png", "CC0", "Stefan van der Walt",
         "cat", "tabby", "looking straight at the camera", "long white whiskers", PHOTO,
         ("soft indoor light", "warm and cosy mood")),
    _ref("coffee", "scikit-image", "skimage/data/coffee.png", "CC0", "Rachel Michetti",
         "cup of coffee", "white porcelain", "on a wooden table", "a saucer and a spoon", PHOTO,
         ("morning light", "warm cafe atmosphere")),
    _ref("coins", "scikit-image", "skimage/data/coins.png", "no known copyright restrictions",
         "Brooklyn Museum", "coins", "ancient greek", "laid out in rows on a dark cloth", "engraved profiles",
         BW, ("museum lighting", "quiet archival mood"), plural=True),
    _ref("gravel", "scikit-image", "skimage/data/gravel.png", "CC0", "CC0Textures / scikit-image",
         "gravel", "coarse grey", "covering the ground", "scattered round pebbles", BW,
         ("harsh midday light", "flat daylight"), plural=True),
    _ref("grass", "scikit-image", "skimage/data/grass.png", "CC0", "linolafett / scikit-image",
         "grass", "dense", "growing in a meadow", "thin overlapping blades", BW,
         ("summer daylight", "fresh morning mood"), plural=True),
    _ref("hubble", "scikit-image", "skimage/data/hubble_deep_field.jpg", "public domain", "NASA / HubbleSite",
         "galaxies", "distant", "scattered across deep space", "a few bright foreground stars",
         ("a telescope image", "a deep-field astronomy photo"), ("dark and vast", "cold cosmic mood"),
         plural=True),
    _ref("ihc", "scikit-image", "skimage/data/ihc.png", "no known copyright restrictions", "CMMI",
         "tissue sample", "brown-stained", "under a microscope", "blue cell nuclei", SCI,
         ("bright-field illumination", "clinical mood")),
    _ref("moon", "scikit-image", "skimage/data/moon.png", "public domain", "scikit-image",
         "lunar surface", "cratered", "seen from orbit", "a small round crater", BW,
         ("low-contrast light", "silent and barren mood")),
    _ref("motorcycle", "scikit-image", "skimage/data/motorcycle_left.png", "research use",
         "Middlebury 2014 stereo dataset", "motorcycle", "red", "parked in a cluttered garage",
         "shelves stacked with boxes", PHOTO, ("fluorescent light", "workshop atmosphere")),
    _ref("retina", "scikit-image", "skimage/data/retina.jpg", "CC0", "Mikael Häggström",
         "retina", "healthy", "seen through an ophthalmoscope", "branching blood vessels", SCI,
         ("orange glow", "clinical mood")),
    _ref("rocket", "scikit-image", "skimage/data/rocket.jpg", "public domain", "SpaceX",
         "rocket", "white", "lifting off from a launch pad", "a cloud of exhaust smoke", PHOTO,
         ("clear blue sky", "dramatic mood")),
    _ref("china", "scikit-learn", "sklearn/datasets/images/china.jpg", "CC BY 2.0", "danielbuechele (Flickr)",
         "pagoda", "traditional chinese", "on a hill above a lake", "green pine trees", PHOTO,
         ("hazy daylight", "peaceful mood")),
    _ref("flower", "scikit-learn", "sklearn/datasets/images/flower.jpg", "CC BY 2.0", "vultilion (Flickr)",
         "dahlia", "orange", "blooming in a garden", "dark green leaves", ("a close-up photo", "a macro photograph"),
         ("soft diffuse light", "fresh summer mood")),
    _ref("hopper", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "public domain",
         "U.S. Navy", "naval officer", "elderly", "posing before a starred flag", "round glasses",
         ("a portrait photo", "an official photograph"), ("formal studio light", "dignified mood")),
)

BY_ID = {ref.id: ref for ref in REFERENCES}


def _package_file(ref: Reference) -> Path:
    top = ref.resource.split("/")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{ref.id}: package {ref.package!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0]).parent / ref.resource


def _png_bytes(ref: Reference) -> bytes:
    """Decode the packaged file and re-encode it as PNG with fixed settings (no metadata, no timestamp)."""
    img = load_image(_package_file(ref), name=ref.id)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def fetch(raw_dir: str | Path = "data", force: bool = False) -> list[Path]:
    """Materialise the reference photographs and `references.csv` under `raw_dir`.

    Files already present with identical bytes are left alone; a different existing file is never
    overwritten unless `force` is set (it may be someone's data).
    """
    raw_dir = Path(raw_dir)
    outputs: dict[Path, bytes] = {raw_dir / ref.file: _png_bytes(ref) for ref in REFERENCES}
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
            "move it away or pass --force to overwrite")
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
    out = []
    with open(table, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            row.pop("file")
            ref = Reference(**{**row, "plural": row["plural"] == "True"})
            out.append((ref, np.asarray(load_image(raw_dir / ref.file, name=ref.file))))
    return out
