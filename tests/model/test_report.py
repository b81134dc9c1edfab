"""`mint-iqa rank | explain | report`, and the HTML report rendered by a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tool

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250"}  # rich tables: one line per row
    return subprocess.run([tool("mint-iqa"), *args], capture_output=True, text=True, timeout=600, env=env)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert found, (
        "headless Chromium is needed for the report test: apt-get install chromium (make test does this)"
    )
    return found


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rank_prints_best_first_and_explain_answers(assessor_dir: Path, folder: Path, tmp_path: Path) -> None:
    proc = _cli(
        "rank",
        "-p",
        "a photo of a cat",
        str(folder),
        "--model",
        str(assessor_dir),
        "--out",
        str(tmp_path / "ranked.csv"),
    )
    assert proc.returncode == 1, proc.stderr  # corrupt.png could not be scored
    lines = [line for line in proc.stdout.splitlines() if ".png" in line]
    assert len(lines) == 6 and "corrupt.png" in lines[-1] and lines[0].split("│")[1].strip() == "1"
    import pandas as pd

    ranked = pd.read_csv(tmp_path / "ranked.csv")
    assert np.all(np.diff(ranked["overall"].to_numpy()[:5]) <= 0)

    proc = _cli("explain", str(folder / "ok0.png"), "-p", "a photo of a cat", "--model", str(assessor_dir))
    import mint_iqa

    assert proc.returncode == 0, proc.stderr  # same words as the API (greedy decoding is deterministic)
    assert (
        proc.stdout.strip()
        == mint_iqa.load(assessor_dir).explain(folder / "ok0.png", "a photo of a cat").strip()
    )
    proc = _cli(
        "explain",
        str(folder / "ok0.png"),
        "-p",
        "a photo of a cat",
        "--model",
        str(assessor_dir),
        "--num-beams",
        "2",
    )
    beams = mint_iqa.load(assessor_dir, num_beams=2).explain(folder / "ok0.png", "a photo of a cat")
    assert proc.returncode == 0 and proc.stdout.strip() == beams.strip(), proc.stderr
    proc = _cli("explain", str(folder / "corrupt.png"), "-p", "a cat", "--model", str(assessor_dir))
    assert proc.returncode == 2 and "corrupt.png" in proc.stderr and "truncated" in proc.stderr


def test_report_renders_in_headless_chromium(assessor_dir: Path, folder: Path, tmp_path: Path) -> None:
    for i in range(3):  # a few more items, one with a prompt that needs escaping
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (90, 90, 3), dtype=np.uint8)).save(
            folder / f"more{i}.png"
        )
    scores = tmp_path / "scores.json"
    proc = _cli(
        "score",
        str(folder),
        "-p",
        "a <b>cat</b> & a 'dog'",
        "--explain",
        "--model",
        str(assessor_dir),
        "-o",
        str(scores),
    )
    assert proc.returncode == 1, proc.stderr
    report = tmp_path / "report.html"
    proc = _cli("report", str(scores), "--out", str(report))
    assert proc.returncode == 0, proc.stderr
    text = report.read_text()
    assert "<b>cat</b>" not in text and "&lt;b&gt;cat&lt;/b&gt;" in text  # user text is escaped
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched
    assert _cli("report", str(scores), "--out", str(report)).returncode == 2  # no silent overwrite

    dom = _browser(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-ready="1"' in html and 'data-shown="8"' in html  # the script ran over all 8 scored rows
    rows = re.findall(r'<tr class="item"[^>]*data-overall="([0-9.]+)"', html)
    assert len(rows) == 8
    overall = [float(v) for v in rows]
    assert overall == sorted(overall, reverse=True)  # the script sorted best first (input order is not)
    assert html.count('src="data:image/jpeg;base64,') == 8
    failed = html[html.index('id="failed"') :]
    assert "corrupt.png" in failed and "truncated or corrupt" in failed

    shot = tmp_path / "report.png"
    proc = _browser(
        tmp_path, f"--screenshot={shot}", "--window-size=1280,1400", "--hide-scrollbars", report.as_uri()
    )
    assert shot.exists(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1400, 1280) and pixels.std() > 10  # not a blank page
    artifacts = Path(__file__).parents[1] / "artifacts"  # kept where a person can look at it (gitignored)
    artifacts.mkdir(exist_ok=True)
    shutil.copy(shot, artifacts / "report.png")


@pytest.mark.parametrize("bad", ["missing.csv", "notes.txt"])
def test_report_rejects_bad_input(bad: str, tmp_path: Path) -> None:
    path = tmp_path / bad
    if bad.endswith(".txt"):
        path.write_text("image,prompt\n")
    proc = _cli("report", str(path), "--out", str(tmp_path / "r.html"))
    assert proc.returncode == 2 and bad in proc.stderr and not (tmp_path / "r.html").exists()
