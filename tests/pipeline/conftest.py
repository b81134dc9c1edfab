"""Fixtures for the pipeline tests: a project repository reproduced once by `dvc repro` (shared, copied by
tests that change it) and assessors of known quality order for the registry and serving tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from mint_iqa.config import Params
from tests.conftest import ROOT, tool
from tests.model.conftest import TINY
from tests.model.test_explainer import SMALL

DIST = {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_SIZE"}


def build_repo(repo: Path) -> Path:
    """A git + DVC repository with the project's pipeline files, flows and a tiny configuration."""
    repo.mkdir(parents=True)
    for name in ("dvc.yaml", "data.dvc", ".dvcignore", "prefect.yaml"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("mint_iqa", "flows"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"]["images_per_reference"] = 2
    params["model"].update(preset="tiny", overrides=TINY)
    params["generalise"]["images"] = 12
    params["train"].update(epochs=1, steps_per_epoch=3, batch_size=8, crop=64, workers=0, threads=1)
    params["evaluate"]["bootstrap"] = 50
    params["model"]["explainer"] = SMALL
    params["explain"].update(epochs=1, steps_per_epoch=3, val_images=8, test_images=8)
    params["register"].update(
        holdout_images=20, minimums={"quality": -1, "authenticity": -1, "correspondence": -1}
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dvc_env(repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([tool("dvc"), "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run([tool("dvc"), "config", "core.analytics", "false"], cwd=repo, check=True, env=env)
    subprocess.run([tool("mint-iqa"), "data", "fetch"], cwd=repo, check=True, env=env)
    return repo


def dvc_env(repo: Path) -> dict[str, str]:
    """The environment of a tool run in `repo`: no distributed variables, the repo's own MLflow store."""
    bin_dir = str(Path(tool("dvc")).parent)
    clean = {k: v for k, v in os.environ.items() if k not in DIST}
    return {
        **clean,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DVC_SITE_CACHE_DIR": str(repo / ".site"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
    }


def dvc_repro(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        [tool("dvc"), "repro", *args], cwd=repo, env=dvc_env(repo), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@dataclass(frozen=True)
class Reproduced:
    path: Path
    output: str  # what the first `dvc repro` printed


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Reproduced:
    """The tiny project after one `dvc repro` of the whole pipeline. Tests may rerun DVC in it (a no-op) but
    change only a `copy_project` of it."""
    repo = build_repo(tmp_path_factory.mktemp("reproduced") / "repo")
    return Reproduced(repo, dvc_repro(repo))


def copy_project(project: Path, dst: Path) -> Path:
    """A copy of a reproduced project (git, DVC cache, outputs, lock) with an empty MLflow store: the store's
    artifact locations are absolute paths into the original, so the copy starts its own."""
    shutil.copytree(
        project, dst, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db", "mlruns", ".site")
    )
    return dst


@pytest.fixture(scope="session")
def assessors(raw_dir: Path, prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three assessors of known order on the held-out images (the paper test split), each in its own
    `<explain.out_dir>/paper/best` folder: C (trained briefly, each head's sign oriented so that its SRCC on
    the held-out images is >= 0), A (constant scores: SRCC 0) and B (1 - C's head outputs: SRCC -C)."""
    from mint_iqa.models.factory import build_explainer, explainer_config, load_scorer, save_assessor
    from mint_iqa.models.scorer import Locator
    from mint_iqa.train.scorer import train_scorer
    from tests.conftest import _project_prepare

    root = tmp_path_factory.mktemp("assessors")
    params = Params.model_validate(
        {
            "data": {"raw_dir": str(raw_dir)},
            "prepare": {**_project_prepare(), "out_dir": str(prepared)},
            "model": {"preset": "tiny", "overrides": TINY},
            # no damage-map target: with it, these 50 steps gave near-constant scores (0.900 +- 0.001), and
            # the gate could not tell C from A
            "train": {
                "out_dir": str(root / "scorer"),
                "checkpoint_dir": str(root / "ckpt"),
                "epochs": 2,
                "steps_per_epoch": 25,
                "batch_size": 16,
                "warmup_steps": 5,
                "workers": 0,
                "crop": 128,
                "loss": {"locate": 0.0},
            },
        }
    )
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'train.db'}"
    try:
        best = train_scorer(params, "paper")
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    orientation = _orientation(best, prepared)
    folders = {}
    for name in ("C", "A", "B"):
        scorer, tok = load_scorer(best)
        with torch.no_grad():
            for dim, head in scorer.heads.items():
                if orientation[dim] < 0:
                    head[-1].weight.neg_()
                    head[-1].bias.neg_()
                if name == "A":
                    head[-1].weight.zero_()
                elif name == "B":  # 1 - C's output: the reverse order, still inside the [0, 1] scale
                    head[-1].weight.neg_()
                    head[-1].bias.neg_().add_(1.0)
        if name == "B":  # C's calibration would map the reversed outputs onto one end of the scale
            scorer.config.calibration = {}
        scorer.config.locate = True  # an untrained damage-map head: serving's maps are checked for form
        with torch.random.fork_rng():  # the explainer below starts from the same random weights as before
            scorer.locate = Locator(scorer.vision.dim)
        explainer, _ = build_explainer(scorer, tok, explainer_config("tiny", SMALL))
        folders[name] = root / name
        save_assessor(explainer, tok, folders[name] / "paper" / "best")
    return folders


def _orientation(model: Path, prepared: Path) -> dict[str, float]:
    """Per dimension, the sign of the trained scorer's SRCC on the paper test split."""
    from mint_iqa.data import manifest
    from mint_iqa.inference.scoring import Scorer
    from mint_iqa.metrics import srcc

    df, meta = manifest.read(prepared)
    root = manifest.image_root(prepared, meta)
    df = df[df["split_paper"] == "test"]
    scores = Scorer.load(model).score([str(root / p) for p in df["image"]], list(df["prompt"]), scale="raw")
    return {
        d: 1.0 if srcc(scores[d].to_numpy(), df[d].to_numpy()) >= 0 else -1.0
        for d in scores.columns
        if d in ("quality", "authenticity", "correspondence")
    }
