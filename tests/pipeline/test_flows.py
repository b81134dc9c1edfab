"""Prefect for real: the pipeline flow under `prefect_test_harness`, batch scoring on threads and Dask,
and the scheduled deployment on a real `prefect server` executed by a real worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import free_port, tool, wait_http
from tests.pipeline.conftest import DIST, Reproduced, build_repo, copy_project

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in DIST:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    return tmp_path


def test_pipeline_flow_reproduces_dvc_metrics(
    clean_env: Path, reproduced: Reproduced, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import pipeline

    by_dvc = reproduced.path  # the same project, reproduced by `dvc repro`
    by_flow = build_repo(clean_env / "by-flow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{by_flow / 'mlflow.db'}")
    with prefect_test_harness(server_startup_timeout=90):
        result = pipeline(project=str(by_flow))
    assert result.promoted and result.champion_version == result.challenger_version == "1"
    for name in ("scorer.json", "explainer.json"):
        flow_metrics = json.loads((by_flow / "metrics" / name).read_text())
        dvc_metrics = json.loads((by_dvc / "metrics" / name).read_text())
        for protocol in ("paper", "strict"):
            a, b = flow_metrics[protocol], dvc_metrics[protocol]
            if name == "scorer.json":
                for dim in a:
                    assert abs(a[dim]["srcc"] - b[dim]["srcc"]) <= 0.005, (protocol, dim)
            else:
                for dim in a["level_accuracy"]:
                    assert abs(a["level_accuracy"][dim] - b["level_accuracy"][dim]) <= 0.005
    assert result.metrics["scorer"] == json.loads((by_flow / "metrics" / "scorer.json").read_text())
    general = json.loads((by_dvc / "metrics" / "generalisation.json").read_text())
    assert (
        result.metrics["generalisation"]["held_out"] == general["held_out"]
    )  # the flow runs leave-kinds-out too
    assert abs(result.metrics["generalisation"]["quality"]["srcc"] - general["quality"]["srcc"]) <= 0.005


@pytest.fixture(scope="module")
def full_images(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full-size proxy set (the project's params.yaml: ~2,000 images), images only."""
    from mint_iqa.config import Params
    from mint_iqa.prepare import prepare
    from tests.conftest import _project_prepare

    out = tmp_path_factory.mktemp("full") / "prepared"
    prepare(
        Params.model_validate(
            {"data": {"raw_dir": str(raw_dir)}, "prepare": {**_project_prepare(), "out_dir": str(out)}}
        )
    )
    return out / "images"


def test_batch_scoring_threads_and_dask_agree_and_resume(
    clean_env: Path, full_images: Path, assessors: dict[str, Path]
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.score import score

    model = str(assessors["C"] / "paper" / "best")
    n_images = len(list(full_images.glob("*.png")))
    assert n_images >= 2000
    with prefect_test_harness(server_startup_timeout=90):
        threads = score(
            str(full_images),
            str(clean_env / "threads.parquet"),
            runner="threads",
            prompt="a photo",
            model=model,
            chunk_size=256,
        )
        dask = score(
            str(full_images),
            str(clean_env / "dask.parquet"),
            runner="dask",
            workers=2,
            prompt="a photo",
            model=model,
            chunk_size=256,
        )
        print(
            f"{n_images} images: threads {threads.images_per_second} images/s, "
            f"Dask LocalCluster {dask.images_per_second} images/s"
        )
        a, b = pd.read_parquet(threads.out), pd.read_parquet(dask.out)
        assert len(a) == n_images and (a["status"] == "ok").all()
        assert list(a["image"]) == list(b["image"])
        pd.testing.assert_frame_equal(
            a[["quality", "authenticity", "correspondence"]],
            b[["quality", "authenticity", "correspondence"]],
            atol=1e-5,
        )
        assert threads.images_per_second > 0 and dask.images_per_second > 0

        # an interrupted run: two chunk parts survive, the final file does not; the rerun scores only the rest
        parts = Path(threads.out + ".parts")
        for part in sorted(parts.glob("chunk-*.parquet"))[2:]:
            part.unlink()
        Path(threads.out).unlink()
        again = score(
            str(full_images), threads.out, runner="threads", prompt="a photo", model=model, chunk_size=256
        )
        assert again.skipped_chunks == 2 and again.chunks == threads.chunks
        pd.testing.assert_frame_equal(pd.read_parquet(again.out), a)


def test_scheduled_deployment_on_a_real_prefect_server(clean_env: Path, reproduced: Reproduced) -> None:
    # a reproduced project: the retrain run's DVC stages are up to date; it registers and promotes anew
    project = copy_project(reproduced.path, clean_env / "project")
    for name in ("decision.md", "registered.json"):
        (project / "artifacts" / "registry" / name).unlink()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in DIST}
    env.update(
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        MINT_IQA_PROJECT=str(project),
        COLUMNS="250",
        MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}",
        PREFECT_HOME=str(clean_env / "ph"),
    )
    server = subprocess.Popen(
        [tool("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", server, "prefect server", timeout=120)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [tool("prefect"), *args],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )

        created = run("work-pool", "create", "mint-iqa", "--type", "process")
        assert created.returncode == 0, created.stdout + created.stderr
        deployed = run("deploy", "--all", "--no-prompt")
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        listed = run("deployment", "ls")
        assert "retrain/weekly" in listed.stdout and "on-demand" in listed.stdout, listed.stdout
        inspected = run("deployment", "inspect", "retrain/weekly")
        assert "0 3 * * 1" in inspected.stdout
        triggered = run("deployment", "run", "retrain/weekly")
        assert triggered.returncode == 0, triggered.stdout + triggered.stderr
        worker = run("worker", "start", "--pool", "mint-iqa", "--run-once")
        assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
        assert json.loads((project / "metrics" / "scorer.json").read_text())["paper"]
        assert "version 1 PROMOTED" in (project / "artifacts" / "registry" / "decision.md").read_text()
        registered = json.loads((project / "artifacts" / "registry" / "registered.json").read_text())
        assert str(registered["version"]) == "1"
        runs = run("flow-run", "ls", "--flow-name", "retrain")
        assert "COMPLETED" in runs.stdout, runs.stdout
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
