"""The DVC pipeline on a real repository: reproduce, no-op rerun, targeted rerun after a param change."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tool
from tests.model.conftest import TINY
from tests.model.test_explainer import SMALL

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def build_repo(repo: Path) -> Path:
    """A git + DVC repository with the project's pipeline files, flows and a tiny configuration."""
    repo.mkdir(parents=True)
    for name in ("dvc.yaml", "data.dvc", ".dvcignore", "prefect.yaml"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("mint_iqa", "flows"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"]["images_per_reference"] = 6
    params["model"]["overrides"] = TINY
    params["train"].update(epochs=1, steps_per_epoch=3, batch_size=8, crop=64, workers=0, threads=1)
    params["evaluate"]["bootstrap"] = 50
    params["model"]["explainer"] = SMALL
    params["explain"].update(epochs=1, steps_per_epoch=3, val_images=8, test_images=8)
    params["register"].update(holdout_images=20, minimums={"quality": -1, "authenticity": -1, "correspondence": -1})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = _env(repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([tool("dvc"), "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run([tool("dvc"), "config", "core.analytics", "false"], cwd=repo, check=True, env=env)
    subprocess.run([tool("mint-iqa"), "data", "fetch"], cwd=repo, check=True, env=env)
    return repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repo(tmp_path_factory.mktemp("dvc") / "repo")


def _env(repo: Path) -> dict[str, str]:
    bin_dir = str(Path(tool("dvc")).parent)
    clean = {k: v for k, v in os.environ.items()
             if k not in {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_SIZE"}}
    return {**clean, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DVC_SITE_CACHE_DIR": str(repo / ".site"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}


def _repro(repo: Path, *args: str) -> str:
    proc = subprocess.run([tool("dvc"), "repro", *args], cwd=repo, env=_env(repo), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


STAGES = {"prepare", "validate", "train_scorer@paper", "train_scorer@strict", "evaluate",
          "train_explainer@paper", "train_explainer@strict", "evaluate_explainer", "register", "promote"}


def test_repro_runs_the_whole_pipeline_then_is_a_noop(repo: Path) -> None:
    data_dvc = (repo / "data.dvc").read_text()
    first = _repro(repo)
    assert _ran(first) == STAGES
    assert (repo / "artifacts/prepared/manifest.parquet").exists()
    assert yaml.safe_load((repo / "metrics/validation.json").read_text())["success"] is True
    metrics = yaml.safe_load((repo / "metrics/scorer.json").read_text())
    assert set(metrics) == {"paper", "strict"}
    for protocol in metrics.values():
        assert set(protocol) == {"quality", "authenticity", "correspondence"}
        for m in protocol.values():
            assert set(m) == {"srcc", "plcc", "krcc", "rmse", "srcc_ci95"} and len(m["srcc_ci95"]) == 2
    assert (repo / "artifacts/scorer/paper/best/model.safetensors").exists()
    assert (repo / "plots/scorer/strict.png").exists()
    explained = yaml.safe_load((repo / "metrics/explainer.json").read_text())
    assert set(explained) == {"paper", "strict"}
    for m in explained.values():
        assert set(m) == {"level_accuracy", "defect_mention_accuracy", "rouge_l", "bleu4", "consistency"}
        assert set(m["level_accuracy"]) == {"quality", "authenticity", "correspondence"}
    assert (repo / "artifacts/explainer/paper/best/explainer/model.safetensors").exists()
    epochs = json.loads((repo / "artifacts/explainer/paper/history.json").read_text())
    for e in epochs:  # the best epoch is picked on levels and wording (ROUGE-L), not on levels alone
        levels = [e[f"val_level_acc_{d}"] for d in ("quality", "authenticity", "correspondence")]
        assert 0 <= e["val_rouge_l"] <= 1
        assert e["val_score"] == pytest.approx((sum(levels) + e["val_rouge_l"]) / 4)
    assert "version 1 PROMOTED" in (repo / "artifacts/registry/decision.md").read_text()
    shown = subprocess.run([tool("mint-iqa"), "registry", "show", "champion"], cwd=repo, env=_env(repo),
                           capture_output=True, text=True)
    assert shown.returncode == 0 and "mint-iqa version 1" in shown.stdout, shown.stderr
    assert (repo / "data.dvc").read_text() == data_dvc  # the materialised data hash as committed
    second = _repro(repo)
    assert _ran(second) == set()
    assert "Data and pipelines are up to date" in second


def test_param_change_reruns_prepare_and_validate_only(repo: Path) -> None:
    _repro(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"]["labels"]["floor"] = 0.15
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = subprocess.run([tool("dvc"), "status", "prepare"], cwd=repo, env=_env(repo), capture_output=True,
                            text=True).stdout
    assert re.search(r"params.yaml:\s+modified:\s+prepare", status), status
    assert _ran(_repro(repo, "validate")) == {"prepare", "validate"}
    after = subprocess.run([tool("dvc"), "status", "validate"], cwd=repo, env=_env(repo), capture_output=True,
                           text=True).stdout
    assert "up to date" in after
