"""The DVC pipeline on a real repository: reproduce, no-op rerun, targeted rerun after a param change."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tool

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repository with the project's pipeline files and a small prepare budget."""
    repo = tmp_path_factory.mktemp("dvc") / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "data.dvc", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "mint_iqa", repo / "mint_iqa", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"]["images_per_reference"] = 6
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = _env(repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([tool("dvc"), "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run([tool("dvc"), "config", "core.analytics", "false"], cwd=repo, check=True, env=env)
    subprocess.run([tool("mint-iqa"), "data", "fetch"], cwd=repo, check=True, env=env)
    return repo


def _env(repo: Path) -> dict[str, str]:
    bin_dir = str(Path(tool("dvc")).parent)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DVC_SITE_CACHE_DIR": str(repo / ".site")}


def _repro(repo: Path, *args: str) -> str:
    proc = subprocess.run([tool("dvc"), "repro", *args], cwd=repo, env=_env(repo), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_repro_builds_validates_then_is_a_noop(repo: Path) -> None:
    data_dvc = (repo / "data.dvc").read_text()
    first = _repro(repo)
    assert _ran(first) == {"prepare", "validate"}
    assert (repo / "artifacts/prepared/manifest.parquet").exists()
    assert yaml.safe_load((repo / "metrics/validation.json").read_text())["success"] is True
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
