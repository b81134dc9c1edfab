"""How the CLI and the API meet a user who gets something wrong: bad option values are one line and exit 2
before any work; the default model is found from any folder and, when absent, the error names every place
looked at; arguments the wrong way round are an error that says so; the failure list is not cut short
silently and never names an item twice."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tool


def _cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("mint-iqa"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["score", "x.png", "-p", "a cat", "-o", "o.csv", "--batch-size", "0"],
        ["score", "x.png", "-p", "a cat", "-o", "o.csv", "--batch-size", "-1"],
        ["score", "x.png", "-p", "a cat", "-o", "o.csv", "--batch-size", "many"],
        ["score", "x.png", "-p", "a cat", "-o", "o.csv", "--num-beams", "0"],
        ["score", "x.png", "-p", "a cat"],
        ["score", "x.png", "-p", "a cat", "-o", "o.csv", "--no-such-option"],
        ["serve", "--port", "70000"],
        ["frobnicate"],
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    run = _cli(*args, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "o.csv").exists()


def _image(path: Path, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_the_default_model_is_found_from_any_folder(scorer_dir: Path, tmp_path: Path) -> None:
    """`make demo` records its model with `use-model`; `score` without --model then works from any folder.
    Without any model, the error names each place looked at."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    image = _image(elsewhere / "a.png")
    missing = _cli("score", str(image), "-p", "a cat", "-o", "o.csv", cwd=elsewhere, env=env)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    for place in (
        "$MINT_IQA_MODEL",
        str(tmp_path / "config" / "mint-iqa" / "model"),
        str(elsewhere / "artifacts" / "explainer" / "paper" / "best"),
    ):
        assert place in missing.stderr, missing.stderr
    recorded = _cli("use-model", str(scorer_dir), cwd=tmp_path, env=env)
    assert recorded.returncode == 0, recorded.stderr
    assert (tmp_path / "config" / "mint-iqa" / "model").read_text().strip() == str(scorer_dir.resolve())
    run = _cli("score", str(image), "-p", "a cat", "-o", "o.csv", cwd=elsewhere, env=env)
    assert run.returncode == 0, run.stderr
    assert (elsewhere / "o.csv").is_file()
    assert _cli("use-model", cwd=elsewhere, env=env).stdout.strip() == str(scorer_dir.resolve())
    assert _cli("use-model", str(elsewhere), cwd=tmp_path, env=env).returncode == 2  # not a model folder


def test_arguments_the_wrong_way_round_say_so(scorer_dir: Path, tmp_path: Path) -> None:
    import mint_iqa

    m = mint_iqa.load(scorer_dir)
    image = _image(tmp_path / "a.png")
    assert m.score([image, str(image)], "a cat")["status"].eq("ok").all()
    with pytest.raises(TypeError, match="images come first"):
        m.score("a cat", [image])  # a list of images where the prompt belongs
    with pytest.raises(ValueError, match="images come first"):
        m.score("a photo of a cat", str(image))  # an image file where the prompt belongs
    with pytest.raises(ValueError, match="reads like a prompt"):
        m.rank("a photo of a cat", "a photo of a dog")
    with pytest.raises(TypeError, match="images come first"):
        m.explain("a photo of a cat", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        m.score([image], "a cat", batch_size=0)


def test_failure_list_names_each_item_once_and_counts_the_rest(scorer_dir: Path, tmp_path: Path) -> None:
    missing = [str(tmp_path / f"missing{i:02d}.png") for i in range(13)]
    run = _cli(
        "score",
        *missing,
        str(_image(tmp_path / "good.png")),
        "-p",
        "a cat",
        "-o",
        str(tmp_path / "o.csv"),
        "--model",
        str(scorer_dir),
    )
    assert run.returncode == 1, run.stderr
    failed = [line for line in run.stderr.splitlines() if line.strip().startswith("failed")]
    assert len(failed) == 10 and all(line.count("missing") == 1 for line in failed), run.stderr
    assert "and 3 more" in run.stderr and "o.csv" in run.stderr
