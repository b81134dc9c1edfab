"""Damage maps for users: `Scorer.score(maps=True)`, `Model.assess(maps=True)`, `mint-iqa score --maps DIR`
and the report's overlay buttons (in a real headless Chromium)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mint_iqa
from mint_iqa.inference.scoring import NO_MAPS, Scorer, Views, stitch
from mint_iqa.models.scorer import damage_grid
from tests.model.conftest import CORPUS, TINY
from tests.model.test_report import _browser, _cli

PROMPT = "content: a cat"


@pytest.fixture
def located():
    """A tiny scorer with its per-patch damage head."""
    from mint_iqa.models.factory import build_scorer, build_tokenizer, preset_config

    torch.manual_seed(0)
    config = preset_config("tiny", TINY)
    config.locate = True
    tokenizer = build_tokenizer(config.text, corpus=CORPUS)
    return build_scorer(config, tokenizer=tokenizer)


@pytest.fixture
def located_dir(located, tmp_path: Path) -> Path:
    from mint_iqa.models.factory import save_scorer

    return save_scorer(*located, tmp_path / "located")


def test_maps_come_from_the_scoring_pass(located_dir: Path) -> None:
    scorer = Scorer.load(located_dir)
    rng = np.random.default_rng(0)
    small, big = rng.integers(0, 255, (90, 120, 3), np.uint8), rng.integers(0, 255, (700, 520, 3), np.uint8)
    got = scorer.score([small, big, b"not an image"], PROMPT, scale="raw", maps=True)
    plain = scorer.score([small, big, b"not an image"], PROMPT, scale="raw")
    assert np.allclose(got[["quality", "authenticity", "correspondence"]], plain.iloc[:, :3], equal_nan=True)

    resized = np.asarray(Image.fromarray(small).resize((256, 256), 3))
    x = torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float() / 255
    enc = scorer.tokenizer([scorer.segment(PROMPT)])
    with torch.no_grad():
        where = scorer.model(x, enc["input_ids"], enc["attention_mask"]).where_logits
    expected = damage_grid(where)[0].numpy()
    assert np.allclose(got["quality_map"][0], expected[..., 0], atol=1e-5)
    assert np.allclose(got["authenticity_map"][0], expected[..., 1], atol=1e-5)
    assert got["quality_map"][0].dtype == np.float32 and got["quality_map"][0].min() >= 0

    # a large image: its map is stitched from its native-resolution windows, at their cell size
    g = expected.shape[0]
    cell = 256 / g
    assert got["quality_map"][1].shape == (round(700 / cell), round(520 / cell))
    window_maps = scorer.read([np.ascontiguousarray(big[:256, :256])], [PROMPT]).maps
    assert np.allclose(got["authenticity_map"][1][:g, :g], window_maps[0][..., 1], atol=1e-5)
    assert got["quality_map"][2] is None and got["status"][2] != "ok"


def test_stitch_puts_window_maps_where_they_read_and_the_whole_elsewhere() -> None:
    window = np.zeros((256, 256, 3), np.uint8)
    views = Views(window, [window, window], [(0, 0), (256, 512)], (600, 800))
    out = stitch(views, np.zeros((8, 8, 2), np.float32), [np.ones((8, 8, 2), np.float32)] * 2)
    assert out.shape == (19, 25, 2)  # 600 / 32 and 800 / 32 cells
    assert out[:8, :8].min() == 1 and out[8:16, 16:24].min() == 1  # the windows
    assert out[10:, :8].max() == 0 and out[:8, 9:16].max() == 0  # the whole image's map


def test_a_model_without_the_damage_head_refuses_maps_before_any_work(scorer_dir: Path) -> None:
    with pytest.raises(ValueError, match="no damage-map head"):
        Scorer.load(scorer_dir).score([b"never decoded"], PROMPT, maps=True)
    assert "locate" in NO_MAPS


def test_api_score_and_assess_return_maps(located, tmp_path: Path) -> None:
    from mint_iqa.models.factory import build_explainer, explainer_config, save_assessor
    from tests.model.test_explainer import SMALL

    scorer, tok = located
    explainer, _ = build_explainer(scorer, tok, explainer_config("tiny", SMALL))
    m = mint_iqa.load(save_assessor(explainer, tok, tmp_path / "assessor"))
    image = np.random.default_rng(1).integers(0, 255, (100, 100, 3), np.uint8)
    scored = m.score([image], "a cat", maps=True, scale="raw")
    assessed = m.assess([image, b"junk"], "a cat", maps=True, scale="raw")
    assert list(assessed.columns[-2:]) == ["quality_map", "authenticity_map"]
    assert np.allclose(assessed["quality_map"][0], scored["quality_map"][0], atol=1e-5)  # the same stage 1
    assert assessed["authenticity_map"][1] is None and "explanation_quality" in assessed
    assert "quality_map" not in m.assess([image], "a cat").columns  # off by default


def test_cli_writes_maps_and_the_report_lays_them_over_the_images(
    located_dir: Path, folder: Path, tmp_path: Path
) -> None:
    maps, out = tmp_path / "maps", tmp_path / "scores.csv"
    proc = _cli(
        "score", str(folder), "-p", "a cat", "--model", str(located_dir), "-o", str(out), "--maps", str(maps)
    )
    assert proc.returncode == 1, proc.stderr  # the truncated image fails; the five others are scored
    pngs = sorted(p.name for p in maps.glob("*.png"))
    assert len(pngs) == 5 and len(list(maps.glob("*.npz"))) == 5 and pngs[0] == "0002_ok0.png"
    with np.load(maps / "0002_ok0.npz", allow_pickle=False) as arrays:
        saved = {k: arrays[k] for k in arrays.files}
    api = mint_iqa.load(located_dir).score([folder / "ok0.png"], "a cat", maps=True)
    assert np.allclose(saved["quality"], api["quality_map"][0]) and set(saved) == {"quality", "authenticity"}
    panel = Image.open(maps / "0002_ok0.png")
    assert panel.height > 300 and panel.width > 3 * 300  # image, quality, authenticity side by side
    table = out.read_text().splitlines()
    assert table[0].endswith(",maps") and str(maps / "0002_ok0.png") in table[2]

    again = tmp_path / "again.csv"  # the same folder again: nothing is overwritten, nothing is written
    proc = _cli(
        "score",
        str(folder),
        "-p",
        "a cat",
        "--model",
        str(located_dir),
        "-o",
        str(again),
        "--maps",
        str(maps),
    )
    assert proc.returncode == 2 and "0002_ok0.png exists" in proc.stderr and not again.exists()
    proc = _cli(
        "score", str(folder), "-p", "a cat", "--model", str(located_dir), "-o", str(again), "--maps", str(out)
    )
    assert proc.returncode == 2 and "is not a folder" in proc.stderr and not again.exists()

    report = tmp_path / "report.html"
    assert _cli("report", str(out), "--out", str(report)).returncode == 0
    dom = _browser(tmp_path, "--dump-dom", report.as_uri() + "#view=authenticity")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = re.findall(r'<tr class="item"[^>]*data-view="authenticity"', dom.stdout)
    assert len(shown) == 5  # every row switched to its authenticity overlay by the page's script
    images = re.findall(r'<img src="([^"]+)"[^>]*data-authenticity="([^"]+)"', dom.stdout)
    assert len(images) == 5 and all(src == overlay for src, overlay in images)
    assert dom.stdout.count('data-view="quality"') >= 5  # the buttons


def test_cli_refuses_maps_from_a_model_without_the_head(
    scorer_dir: Path, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s.csv"
    proc = _cli(
        "score",
        str(folder),
        "-p",
        "a cat",
        "--model",
        str(scorer_dir),
        "-o",
        str(out),
        "--maps",
        str(tmp_path / "m"),
    )
    assert proc.returncode == 2 and "no damage-map head" in proc.stderr and not out.exists()
