"""docs/architecture.md describes the import layers that `lint-imports` enforces (pyproject.toml)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contract_layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [[m.strip() for m in line.split(":")] for line in layers]


def _documented_layers() -> list[list[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("| layer | modules |") :].split("\n\n")[0]
    rows = [line.split("|")[2] for line in table.splitlines()[2:]]
    return [re.findall(r"`(mint_iqa(?:\.\w+)*)`", row) for row in rows]


def test_architecture_page_lists_the_enforced_layers_in_order() -> None:
    assert _documented_layers() == _contract_layers()


def _modules(folder: Path, prefix: str) -> list[str]:
    """The modules and subpackages directly inside a package folder, by dotted name."""
    names = [f"{prefix}.{p.stem}" for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__")]
    return names + [f"{prefix}.{p.parent.name}" for p in folder.glob("*/__init__.py")]


def test_every_package_module_belongs_to_a_layer() -> None:
    """Each top-level module or package is in a layer; a package laid out module by module across layers
    (`mint_iqa.inference`) has each of its own modules in one."""
    layered = {m for line in _contract_layers() for m in line}
    missing = []
    for name in _modules(ROOT / "mint_iqa", "mint_iqa"):
        if name in layered:
            continue
        if any(m.startswith(name + ".") for m in layered):
            folder = ROOT / name.replace(".", "/")
            missing += [m for m in _modules(folder, name) if m not in layered]
        else:
            missing.append(name)
    assert missing == []
