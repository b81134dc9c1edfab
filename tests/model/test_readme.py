"""The README's commands and code, as written. The Quickstart (shell and Python) runs for real in a folder
laid out as `make demo` leaves it, with a tiny model in place of the trained one; every other command is
checked against what it names: mint-iqa commands through the CLI's own parser (a missing command or option
fails), make targets by a dry run, bench scripts by `--help`, other tools by being installed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).parents[2] / "README.md"
pytestmark = pytest.mark.slow


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """Each command of a shell block as words (comments dropped, `&` and `;` ends split off)."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and words[-1] in ("&", ";"):
            words.pop()
        if words:
            out.append(words)
    return out


QUICKSTART = next(b for b in blocks("bash") if "source .venv/bin/activate" in b)


@pytest.fixture
def demo_folder(assessor_dir: Path, tmp_path: Path) -> Path:
    """A project folder as `make demo` leaves it: the venv, the model and the prepared images the README
    uses."""
    root = tmp_path / "project"
    shutil.copytree(assessor_dir, root / "artifacts" / "explainer" / "paper" / "best")
    images = root / "artifacts" / "prepared" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(
            images / f"astronaut_{i:04d}.png"
        )
    (root / ".venv").symlink_to(Path(sys.prefix))
    return root


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MINT_IQA_MODEL"}
    return {**env, "XDG_CONFIG_HOME": str(tmp_path / "config")}  # no per-user default: the project's model


def test_quickstart_shell_block_runs_as_written(demo_folder: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", QUICKSTART],
        cwd=demo_folder,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (demo_folder / "scores.csv").is_file() and (demo_folder / "report.html").is_file()
    shown = len(list((demo_folder / "artifacts" / "prepared" / "images").glob("astronaut_00*.png")))
    assert len(list((demo_folder / "maps").glob("*.png"))) == shown  # one panel per image scored
    assert "ranked by overall" in run.stdout and "quality" in run.stdout


def test_python_block_runs_as_written(demo_folder: Path, tmp_path: Path) -> None:
    [code] = blocks("python")
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=demo_folder,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "authenticity" in run.stdout and "explanation_correspondence" in run.stdout


def _parse_mint_iqa(words: list[str]) -> None:
    """Resolve the (sub)command and parse its arguments with the real CLI; raises on anything it rejects."""
    import typer

    from mint_iqa.cli import app

    command, args, path = typer.main.get_command(app), words[1:], "mint-iqa"
    ctx = None
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        ctx = command.make_context(path, [args[0]], parent=ctx, resilient_parsing=True)
        name, command, args = args[0], command.get_command(ctx, args[0]), args[1:]
        assert command is not None, f"{' '.join(words)}: no command {name!r}"
        path = f"{path} {name}"
    command.make_context(path, args, parent=ctx)


def test_every_other_command_names_what_exists() -> None:
    checked = 0
    for block in blocks("bash"):
        if block == QUICKSTART:
            continue
        for words in commands(block):
            tool = words[0]
            if tool == "mint-iqa":
                _parse_mint_iqa(words)
            elif tool == "make":
                dry = subprocess.run(
                    ["make", "-n", *words[1:]], cwd=README.parent, capture_output=True, text=True, check=False
                )
                assert dry.returncode == 0, f"{' '.join(words)}: {dry.stderr.strip()}"
            elif tool == "python":
                script = README.parent / words[1]
                assert script.is_file(), f"{' '.join(words)}: no such script"
                helped = subprocess.run(
                    [sys.executable, str(script), "--help"], capture_output=True, text=True, check=False
                )
                assert helped.returncode == 0, f"{words[1]} --help: {helped.stderr[-500:]}"
            else:
                assert shutil.which(tool), f"{' '.join(words)}: {tool} is not installed"
            checked += 1
    assert checked >= 10
