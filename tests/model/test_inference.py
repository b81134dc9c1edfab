"""Batch scoring: `Scorer.score` and `mint-iqa score --manifest` keep order and record per-row failures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mint_iqa.inference.scoring import Scorer
from tests.conftest import tool


def test_scorer_api_batches_and_keeps_order(scorer_dir: Path, folder: Path) -> None:
    scorer = Scorer.load(scorer_dir, input_size=64)
    files = [folder / f"ok{i}.png" for i in range(5)]
    batched = scorer.score(files, "a photo of a cat", batch_size=2)
    single = pd.concat(
        [scorer.score([f], "a photo of a cat", batch_size=1) for f in files], ignore_index=True
    )
    assert list(batched["status"]) == ["ok"] * 5
    np.testing.assert_allclose(
        batched[["quality", "authenticity", "correspondence"]].to_numpy(),
        single[["quality", "authenticity", "correspondence"]].to_numpy(),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="2 images but 3 prompts"):
        scorer.score(files[:2], ["a", "b", "c"])


def test_workers_share_the_cpu_and_give_the_same_scores(scorer_dir: Path, folder: Path) -> None:
    """Two workers (each decoding and scoring its own batches on one torch thread) give the scores one worker
    gives, in input order with failures in place; concurrent calls leave torch's thread count as it was."""
    import threading

    import torch

    files = [folder / "ok0.png", folder / "corrupt.png", *(folder / f"ok{i}.png" for i in range(1, 5))]
    one = Scorer.load(scorer_dir, input_size=64)
    one.workers = 1
    two = Scorer.load(scorer_dir, input_size=64)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        expected = one.score(files, "a photo of a cat", batch_size=2)
        results: list[pd.DataFrame] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(two.score(files, "a photo of a cat", batch_size=2))
            )
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(results) == 3
    for got in results:
        assert list(got["status"]) == list(expected["status"]) and "truncated" in got["status"][1]
        np.testing.assert_allclose(
            got[["quality", "authenticity", "correspondence"]].to_numpy(),
            expected[["quality", "authenticity", "correspondence"]].to_numpy(),
            atol=1e-5,
        )


def test_tower_micro_batches_give_the_scores_of_one_pass_per_image(scorer_dir: Path, folder: Path) -> None:
    """`forward_batch` runs the tower a few images at a time and the Q-Former once over the whole batch
    (prompts of different lengths padded together): each row equals a plain model call on that image alone."""
    import torch

    from mint_iqa.models.tensors import to_batch

    scorer = Scorer.load(scorer_dir, input_size=64)
    scorer.micro_batch = 2
    images = scorer.decode([folder / f"ok{i}.png" for i in range(5)])
    prompts = [
        "a cat",
        "a red rocket on a launch pad at dusk, oil painting, wide shot",
        "fog",
        "a dog",
        "a tree",
    ]
    got = scorer.forward_batch(images, prompts)
    assert got.shape == (5, 3)
    with torch.no_grad():
        for image, prompt, row in zip(images, prompts, got):
            enc = scorer.tokenizer([scorer.segment(prompt)])
            alone = scorer.model(to_batch([image]), enc["input_ids"], enc["attention_mask"]).scores[0].numpy()
            np.testing.assert_allclose(row, alone, atol=1e-5)


def test_cli_score_manifest_with_bad_rows(scorer_dir: Path, folder: Path, tmp_path: Path) -> None:
    rows = [
        ("images/ok0.png", "a cat"),
        ("images/corrupt.png", "a cat"),
        ("images/ok1.png", "a rocket"),
        ("images/missing.png", "x"),
        ("../outside.png", "y"),
        ("images/ok2.png", ""),
    ]
    manifest = tmp_path / "M.csv"
    pd.DataFrame(rows, columns=["image", "prompt"]).to_csv(manifest, index=False)
    out = tmp_path / "P.csv"
    cmd = [
        tool("mint-iqa"),
        "score",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--model",
        str(scorer_dir),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # partial failure
    result = pd.read_csv(out, keep_default_na=False)
    assert list(result.columns) == ["image", "prompt", "quality", "authenticity", "correspondence", "status"]
    assert list(result["image"]) == [r[0] for r in rows]
    status = list(result["status"])
    assert status[0] == status[2] == "ok" and "prompt is empty" in status[5]
    assert "truncated or corrupt" in status[1] and "no such file" in status[3] and "escapes" in status[4]
    assert result.loc[[0, 2], "quality"].astype(float).notna().all()
    assert (result.loc[[1, 3, 4, 5], "quality"] == "").all()

    before = out.read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr and out.read_bytes() == before
    forced = subprocess.run([*cmd, "--force"], capture_output=True, text=True)
    assert forced.returncode == 1


def test_cli_score_rejects_bad_manifest(scorer_dir: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "M.csv"
    manifest.write_text("path,text\na.png,x\n")
    proc = subprocess.run(
        [
            tool("mint-iqa"),
            "score",
            "-m",
            str(manifest),
            "-o",
            str(tmp_path / "P.csv"),
            "--model",
            str(scorer_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "missing column(s) ['image', 'prompt']" in proc.stderr
    assert not (tmp_path / "P.csv").exists()


def test_cli_score_explain_adds_columns(tiny_scorer, folder: Path, tmp_path: Path) -> None:
    from mint_iqa.models.factory import build_explainer, explainer_config, save_assessor
    from tests.model.test_explainer import SMALL

    scorer, tok = tiny_scorer
    explainer, _ = build_explainer(scorer, tok, explainer_config("tiny", SMALL))
    assessor = save_assessor(explainer, tok, tmp_path / "assessor")
    manifest = tmp_path / "M.csv"
    pd.DataFrame(
        [("images/ok0.png", "a cat"), ("images/corrupt.png", "a cat")], columns=["image", "prompt"]
    ).to_csv(manifest, index=False)
    out = tmp_path / "P.csv"
    proc = subprocess.run(
        [
            tool("mint-iqa"),
            "score",
            "-m",
            str(manifest),
            "-o",
            str(out),
            "--explain",
            "--model",
            str(assessor),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    result = pd.read_csv(out, keep_default_na=False)
    assert list(result.columns) == [
        "image",
        "prompt",
        "quality",
        "authenticity",
        "correspondence",
        "status",
        "explanation_quality",
        "explanation_authenticity",
        "explanation_correspondence",
    ]
    assert result["status"][0] == "ok" and "corrupt" in result["status"][1]


def test_large_images_are_judged_in_native_resolution_windows(scorer_dir: Path) -> None:
    """An image well above the input size: quality and authenticity are the mean over native-resolution
    windows (a whole-image resize would hide pixel-level defects), correspondence reads the resized whole;
    small images are read whole as before."""
    from mint_iqa.inference.scoring import native_windows

    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (700, 520, 3), dtype=np.uint8)
    windows = native_windows(big, 256, 4)
    assert len(windows) == 4 and all(w.shape == (256, 256, 3) for w in windows)
    assert np.array_equal(windows[0], big[:256, :256]) and np.array_equal(windows[-1], big[-256:, -256:])
    scorer = Scorer.load(scorer_dir)
    got = scorer.score([big, big[:300, :300]], "content: a cat", scale="raw")
    whole = np.asarray(Image.fromarray(big).resize((256, 256), 3))
    parts = scorer.forward_batch(windows, ["content: a cat"] * 4)
    full = scorer.forward_batch([whole], ["content: a cat"])[0]
    assert np.allclose(
        got.loc[0, ["quality", "authenticity"]].to_numpy(float), parts[:, :2].mean(axis=0), atol=1e-5
    )
    assert np.isclose(got.loc[0, "correspondence"], full[2], atol=1e-5)
    small = scorer.forward_batch(
        [np.asarray(Image.fromarray(big[:300, :300]).resize((256, 256), 3))], ["content: a cat"]
    )[0]
    assert np.allclose(
        got.loc[1, ["quality", "authenticity", "correspondence"]].to_numpy(float), small, atol=1e-5
    )
    scorer.windows = 0
    assert np.isclose(
        scorer.score([big], "content: a cat", scale="raw").loc[0, "quality"], full[0], atol=1e-5
    )
