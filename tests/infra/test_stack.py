"""What infra/compose describes, started natively on 127.0.0.1 and used for real: PostgreSQL (Debian package),
an S3 server (moto's server mode), `mlflow server` on Postgres + S3 artifacts, `prefect server start` on
Postgres. The pipeline flow runs against them: DVC push/pull through S3, runs and registry rows in Postgres,
the champion promoted and served. Fault case: the MLflow server dies during registration."""

from __future__ import annotations

import base64
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import free_port, tool, wait_http
from tests.pipeline.conftest import build_repo

pytestmark = [pytest.mark.slow, pytest.mark.integration]
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
DIST = {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "LOCAL_SIZE"}


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temp folder on 127.0.0.1 (as user `postgres` when the tests run as root)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL server binaries are needed: apt-get install postgresql (make test does this)"
    bin_dir = Path(found[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="mint-iqa-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *as_user,
            str(bin_dir / "postgres"),
            "-D",
            str(data / "db"),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}"
    deadline = time.time() + 60
    while (
        subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode
        != 0
    ):
        assert time.time() < deadline and proc.poll() is None, "PostgreSQL did not start"
        time.sleep(0.3)
    for db in ("mlflow", "prefect"):
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", db], check=True
        )
    yield url
    _stop(proc, signal.SIGINT)  # fast shutdown
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import boto3

    port = free_port()
    proc = _start(
        [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        {**os.environ, **KEYS},
        tmp_path_factory.mktemp("s3") / "moto.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/moto-api/", proc, "moto S3 server")
    client = boto3.client(
        "s3",
        endpoint_url=url,
        **{k.lower(): v for k, v in KEYS.items() if k != "AWS_DEFAULT_REGION"},
        region_name="us-east-1",
    )
    for bucket in ("mlflow", "dvc"):
        client.create_bucket(Bucket=bucket)
    yield url
    _stop(proc)


class MlflowServer:
    def __init__(self, postgres: str, s3: str, home: Path):
        self.port, self.home = free_port(), home
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **KEYS,
            "MLFLOW_S3_ENDPOINT_URL": s3,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        self.cmd = [
            tool("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            postgres.replace("postgresql://", "postgresql+psycopg2://") + "/mlflow",
            "--artifacts-destination",
            "s3://mlflow/artifacts",
        ]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = _start(self.cmd, self.env, self.home / f"mlflow-{time.time():.0f}.log")
        wait_http(f"{self.url}/health", self.proc, "mlflow server")

    def kill(self) -> None:
        assert self.proc is not None
        _stop(self.proc, signal.SIGKILL)


@pytest.fixture(scope="module")
def stack(postgres: str, s3: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("stack")
    mlflow = MlflowServer(postgres, s3, home)
    mlflow.start()
    prefect_port = free_port()
    prefect_env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres.replace("postgresql://", "postgresql+asyncpg://")
        + "/prefect",
    }
    prefect = _start(
        [tool("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
        prefect_env,
        home / "prefect.log",
    )
    wait_http(f"http://127.0.0.1:{prefect_port}/api/health", prefect, "prefect server")
    yield {
        "mlflow": mlflow,
        "s3": s3,
        "postgres": postgres,
        "prefect": f"http://127.0.0.1:{prefect_port}/api",
        "home": home,
    }
    _stop(prefect)
    if mlflow.proc is not None:
        _stop(mlflow.proc)


def _client_env(stack: dict, project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST}
    env.update(
        KEYS,
        MLFLOW_TRACKING_URI=stack["mlflow"].url,
        PREFECT_API_URL=stack["prefect"],
        AWS_ENDPOINT_URL=stack["s3"],
        DVC_SITE_CACHE_DIR=str(project / ".site"),
        PREFECT_HOME=str(stack["home"] / "prefect-client"),
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="20",
    )
    return env


def _sql(postgres: str, query: str) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(f"{postgres}/mlflow") as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def _digest(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


# long: one end-to-end run against the real service stack, which starts once
def test_pipeline_on_postgres_s3_mlflow_and_prefect(stack: dict, tmp_path: Path) -> None:
    project = build_repo(tmp_path / "project")
    env = _client_env(stack, project)
    dvc = lambda *a: subprocess.run([tool("dvc"), *a], cwd=project, env=env, capture_output=True, text=True)  # noqa: E731
    assert dvc("remote", "add", "-d", "storage", "s3://dvc/store").returncode == 0
    assert dvc("remote", "modify", "storage", "endpointurl", stack["s3"]).returncode == 0
    for key, value in (
        ("access_key_id", KEYS["AWS_ACCESS_KEY_ID"]),
        ("secret_access_key", KEYS["AWS_SECRET_ACCESS_KEY"]),
    ):
        assert dvc("remote", "modify", "--local", "storage", key, value).returncode == 0
    assert "secret_access_key" not in (project / ".dvc" / "config").read_text()  # credentials stay local

    # the pipeline flow, as a Prefect flow run on the real server, pushing its DVC outputs to S3
    code = (
        "import json, sys; sys.path.insert(0, '.'); from flows.pipeline import pipeline; "
        "print('RESULT' + pipeline(project='.', push=True).model_dump_json())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["promoted"] and result["champion_version"] == "1"

    # runs, registered model, versions and aliases are rows in PostgreSQL; artifacts are objects in S3
    assert _sql(stack["postgres"], "select count(*) from runs")[0][0] >= 4
    assert ("mint-iqa", "champion", 1) in _sql(
        stack["postgres"], "select name, alias, version from registered_model_aliases"
    )
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=stack["s3"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert s3.list_objects_v2(Bucket="mlflow").get("KeyCount", 0) > 0
    assert s3.list_objects_v2(Bucket="dvc").get("KeyCount", 0) > 0
    flows = requests.post(f"{stack['prefect']}/flow_runs/filter", json={}, timeout=10).json()
    assert any(f["state_type"] == "COMPLETED" for f in flows)

    # DVC round trip through S3: lose the cache and the outputs, pull them back
    before = _digest(project / "artifacts" / "prepared")
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "artifacts" / "prepared")
    pulled = dvc("pull")
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    assert _digest(project / "artifacts" / "prepared") == before

    # the champion, served from the registry on the tracking server
    port = free_port()
    serve = _start(
        [tool("mint-iqa"), "serve", "--model", "models:/mint-iqa@champion", "--port", str(port)],
        env,
        tmp_path / "serve.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", serve, "mint-iqa serve")
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            buf, "PNG"
        )
        body = {
            "dataframe_split": {
                "columns": ["image", "prompt"],
                "data": [[base64.b64encode(buf.getvalue()).decode(), "a photo of a cat"]],
            }
        }
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["status"] == "ok"
    finally:
        _stop(serve)

    # fault: the tracking server dies while a registration is under way
    keep = {name: _digest(project / name) for name in ("artifacts/explainer", "artifacts/scorer", "metrics")}
    runs = _sql(stack["postgres"], "select count(*) from runs")[0][0]
    register = subprocess.Popen(
        [tool("mint-iqa"), "register"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while _sql(stack["postgres"], "select count(*) from runs")[0][0] == runs and time.time() < deadline:
        time.sleep(0.1)  # registration has begun once its run exists
    stack["mlflow"].kill()
    _, stderr = register.communicate(timeout=300)
    assert register.returncode != 0
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert "error:" in last and "tracking server" in last and stack["mlflow"].url in last, stderr[-2000:]
    assert {name: _digest(project / name) for name in keep} == keep  # nothing local was lost
    stack["mlflow"].start()
    again = subprocess.run(
        [tool("mint-iqa"), "register"], cwd=project, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr[-2000:]
    versions = [
        v for (v,) in _sql(stack["postgres"], "select version from model_versions where name = 'mint-iqa'")
    ]
    assert max(versions) >= 2
