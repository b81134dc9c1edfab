"""Shared fixtures. Tests run on CPU, offline, with every tool's state kept in temp folders."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Nobody's own default model (`mint-iqa use-model`, under ~/.config) leaks into a test; MINT_IQA_MODEL
# neither.
os.environ["XDG_CONFIG_HOME"] = str(
    Path(os.environ.get("TMPDIR", "/tmp")) / f"mint-iqa-tests-{os.getpid()}-config"
)
os.environ.pop("MINT_IQA_MODEL", None)
# Services started by tests (mlflow models serve -> uvicorn, prefect worker -> python) find the venv's tools.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


PIPELINE = "tests/pipeline/"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The pipeline tests and the service stack are the longest units: queued first, so that with two xdist
    workers both finish at about the same time."""
    items.sort(key=lambda item: not item.nodeid.startswith((PIPELINE, "tests/infra/test_stack.py")))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`make test` runs two xdist workers. The pipeline tests share session fixtures (a reproduced project,
    trained assessors), so they go to one worker as one unit; every other test is a unit of its own. (Done
    here rather than with `xdist_group` marks: pytest 9.2's node ids no longer carry xdist's group suffix.)"""
    from xdist.scheduler import LoadScopeScheduling

    class PipelineTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return PIPELINE if nodeid.startswith(PIPELINE) else nodeid

    return PipelineTogether(config, log) if config.getvalue("dist") == "load" else None


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference photographs, materialised once per session."""
    from mint_iqa.data.references import fetch

    path = tmp_path_factory.mktemp("raw") / "data"
    fetch(path)
    return path


PER_REFERENCE = 4  # images per reference photograph in the small proxy set


def small_params(raw_dir: Path, out_dir: Path, **prepare: object):
    from mint_iqa.config import Params

    return Params.model_validate(
        {
            "data": {"raw_dir": str(raw_dir)},
            "prepare": {
                **_project_prepare(),
                "out_dir": str(out_dir),
                "images_per_reference": PER_REFERENCE,
                "workers": 1,
                **prepare,
            },
            "validate": {
                "out_dir": str(out_dir.parent / "validation"),
                "metrics": str(out_dir.parent / "metrics" / "validation.json"),
            },
        }
    )


def _project_prepare() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text())["prepare"]


@pytest.fixture(scope="session")
def prepared(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small proxy set (`PER_REFERENCE` images per reference) built with the project's degradation
    ladders."""
    from mint_iqa.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / "prepared"
    prepare(small_params(raw_dir, out))
    return out


@pytest.fixture
def prepared_copy(prepared: Path, tmp_path: Path) -> Path:
    """A private copy of the small proxy set that a test may corrupt."""
    dst = tmp_path / "prepared"
    shutil.copytree(prepared, dst)
    return dst


def tool(name: str) -> str:
    """A console script from the running interpreter's environment (dvc, mlflow, prefect, mint-iqa)."""
    import sys

    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc, what: str, timeout: float = 180) -> None:
    """Wait until `url` answers 200 while the service process `proc` is alive; fail (and stop it)
    otherwise."""
    import signal
    import time

    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode()[-3000:] if proc.stdout else ""
            pytest.fail(f"{what} exited with {proc.returncode}: {output}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"{what} did not answer {url} within {timeout:.0f} s")
