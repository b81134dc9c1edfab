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
    return [re.findall(r"`(mint_iqa(?:\.\w+)?)`", row) for row in rows]


def test_architecture_page_lists_the_enforced_layers_in_order() -> None:
    assert _documented_layers() == _contract_layers()


def test_every_package_module_belongs_to_a_layer() -> None:
    layered = {m for line in _contract_layers() for m in line}
    package = ROOT / "mint_iqa"
    top = {f"mint_iqa.{p.stem}" for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    top |= {f"mint_iqa.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert top - layered == set()
