"""Each DVC stage depends on exactly the code it runs: the modules its step imports (statically, imports
inside functions included, with their packages' `__init__`), plus the files those modules read beside them.
A change to any module then marks exactly the stages that use it. On failure the message gives the deps to
write; `python -m tests.code.test_dvc_deps` writes them into dvc.yaml."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import grimp
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mint_iqa"

# What `python -m mint_iqa <step>` runs for each stage: the CLI with what it imports at module level (it
# imports each step inside that step's command), and the step's own modules with all they import.
ENTRY = ["mint_iqa.__main__", "mint_iqa.cli"]
STEPS = {
    "prepare": ["mint_iqa.prepare"],
    "validate": ["mint_iqa.validate"],
    "train_scorer": ["mint_iqa.train.scorer", "mint_iqa.train.launch"],
    "train_scorer_lko": ["mint_iqa.train.scorer", "mint_iqa.train.launch"],
    "generalise": ["mint_iqa.generalise"],
    "train_explainer": ["mint_iqa.train.explainer", "mint_iqa.train.launch"],
    "evaluate": ["mint_iqa.evaluate"],
    "evaluate_explainer": ["mint_iqa.evaluate"],
    "register": ["mint_iqa.registry"],
    "promote": ["mint_iqa.registry"],
}
# Files a module reads from beside itself, and (register) the whole package logged with the MLflow model.
RESOURCES = {
    "mint_iqa.models.factory": ["mint_iqa/models/presets"],
    "mint_iqa.data.references": ["mint_iqa/data/catalogue.csv"],
    "mint_iqa.models.words": ["mint_iqa/models/imagenet_lexicon.json"],
}
WHOLE_PACKAGE = {"register"}


def _files(path: str) -> set[str]:
    """The files a dvc dep path stands for (a folder: every file under it, caches aside)."""
    full = ROOT / path
    if full.is_file():
        return {path}
    found = {p for p in full.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return {str(p.relative_to(ROOT)) for p in found}


def _module_file(module: str) -> str:
    path = Path(*module.split("."))
    return str(path / "__init__.py") if (ROOT / path).is_dir() else f"{path}.py"


@cache
def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("mint_iqa", cache_dir=None)


def _module_level_imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / _module_file(module)).read_text())
    found = {n.name for s in tree.body if isinstance(s, ast.Import) for n in s.names}
    found |= {s.module for s in tree.body if isinstance(s, ast.ImportFrom) and s.module}
    return {m for m in found if m.startswith("mint_iqa")}


def expected(stage: str) -> set[str]:
    if stage in WHOLE_PACKAGE:
        return _files("mint_iqa")
    graph, modules = _graph(), set(ENTRY)
    for step in [m for e in ENTRY for m in _module_level_imports(e) - set(ENTRY)] + STEPS[stage]:
        modules |= {step, *graph.find_upstream_modules(step)}
    modules = {m for m in modules if m.startswith("mint_iqa")}
    packages = {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 1)}
    files = {_module_file(m) for m in modules | packages}
    for module, paths in RESOURCES.items():
        if module in modules:
            files |= {f for p in paths for f in _files(p)}
    return files


def declared(stage: str) -> set[str]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    deps = spec.get("do", spec)["deps"]
    return {f for d in deps if d.split("/")[0] == "mint_iqa" for f in _files(d)}


def suggestion(files: set[str]) -> list[str]:
    """The shortest dep list for `files`: a folder wherever every file under it is needed."""
    out: list[str] = []
    for path in sorted(files):
        parts = Path(path).parts
        covering = next(
            (str(Path(*parts[:i])) for i in range(1, len(parts)) if _files(str(Path(*parts[:i]))) <= files),
            path,
        )
        if covering not in out:
            out.append(covering)
    return out


@pytest.mark.parametrize("stage", sorted(STEPS))
def test_stage_code_deps_are_what_the_stage_imports(stage: str) -> None:
    want, have = expected(stage), declared(stage)
    assert have == want, (
        f"dvc.yaml stage {stage}: missing {sorted(want - have)}, not used {sorted(have - want)}; "
        f"write: {suggestion(want)}"
    )


def test_every_stage_is_mapped() -> None:
    assert set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]) == set(STEPS)


def rewrite(dvc_yaml: Path = ROOT / "dvc.yaml") -> None:
    """Write each stage's code deps (the `mint_iqa/...` entries) as `expected` says, comments and the other
    deps kept: `python -m tests.code.test_dvc_deps`."""
    lines, out, stage, i = dvc_yaml.read_text().splitlines(), [], None, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip().rstrip(":")
        out.append(line)
        i += 1
        if line.strip() == "deps:" and stage in STEPS:
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            while i < len(lines) and lines[i].startswith(indent + "- "):
                if not lines[i].strip()[2:].startswith("mint_iqa"):
                    out.append(lines[i])
                i += 1
            out += [f"{indent}- {dep}" for dep in suggestion(expected(stage))]
    dvc_yaml.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    rewrite()
