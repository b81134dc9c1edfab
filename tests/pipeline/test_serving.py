"""REST serving for real: `mlflow models serve` of the champion, spoken to over HTTP on loopback."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from mint_iqa.config import DIMENSIONS
from tests.conftest import free_port, tool, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _png(size: tuple[int, int] = (96, 96), seed: int = 0) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def server(assessors: dict[str, Path], prepared: Path, tmp_path_factory: pytest.TempPathFactory):
    from mint_iqa.config import Params
    from mint_iqa.registry import promote, register

    home = tmp_path_factory.mktemp("serve")
    store = f"sqlite:///{home / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}}
    env.update(MLFLOW_TRACKING_URI=store, MINT_IQA_MAX_PIXELS="1000000")
    old_cwd, old_uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(home)
    os.environ["MLFLOW_TRACKING_URI"] = store
    try:
        params = Params.model_validate({
            "prepare": {"out_dir": str(prepared)}, "explain": {"out_dir": str(assessors["C"])},
            "register": {"holdout_images": 20, "decision": str(home / "d.md"),
                         "minimums": {"quality": -1, "authenticity": -1, "correspondence": -1}}})
        register(params)
        assert promote(params).promoted
    finally:
        os.chdir(old_cwd)
        os.environ.pop("MLFLOW_TRACKING_URI") if old_uri is None else os.environ.update(MLFLOW_TRACKING_URI=old_uri)
    port = free_port()
    proc = subprocess.Popen([tool("mlflow"), "models", "serve", "-m", "models:/mint-iqa@champion", "--env-manager",
                             "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/ping", proc, "mlflow models serve")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def _post(url: str, columns: list[str], rows: list[list[object]]) -> requests.Response:
    return requests.post(f"{url}/invocations", json={"dataframe_split": {"columns": columns, "data": rows}},
                         timeout=120)


def test_valid_request_scores_and_explains(server: str) -> None:
    response = _post(server, ["image", "prompt"], [[_png(), "a photo of a cat"], [_png(seed=1), "a red rocket"]])
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    assert len(rows) == 2 and all(row["status"] == "ok" for row in rows)
    assert all(isinstance(row["quality"], float) and "explanation_quality" in row for row in rows)


def test_scores_only_request(server: str) -> None:
    """`"params": {"explain": false}` answers the same scores with empty explanation columns; the parameter is
    part of the model's signature, so a value of the wrong type is a 4xx. (That no text is generated is
    checked in-process, in test_registry.)"""
    rows = [[_png(), "a photo of a cat"], [_png(seed=1), "a red rocket"]]

    def post(params: dict | None) -> requests.Response:
        body = {"dataframe_split": {"columns": ["image", "prompt"], "data": rows}}
        return requests.post(f"{server}/invocations", json={**body, **({"params": params} if params else {})},
                             timeout=120)

    full, fast = post(None), post({"explain": False})
    assert full.status_code == fast.status_code == 200, fast.text
    for a, b in zip(full.json()["predictions"], fast.json()["predictions"]):
        assert b["status"] == "ok" and all(abs(a[d] - b[d]) < 1e-4 for d in DIMENSIONS)
        assert b["explanation_quality"] == b["explanation_authenticity"] == b["explanation_correspondence"] == ""
    wrong = post({"explain": [1, 2]})
    assert 400 <= wrong.status_code < 500, wrong.text[:300]


@pytest.mark.parametrize("columns, rows, message", [
    (["image", "prompt"], [["%%%not-base64%%%", "a cat"]], "not valid base64"),
    (["image"], [["aGVsbG8="]], "prompt"),
    (["image", "prompt"], [[base64.b64encode(b"plain text, not an image").decode(), "a cat"]], "not a recognised image"),
    (["image", "prompt"], [[_png(), ""]], "non-empty string"),
    (["image", "prompt"], [[12345, "a cat"]], ""),
    (["image", "prompt"], [[_png((1200, 1000)), "a cat"]], "too large"),
])
def test_invalid_payloads_get_4xx(server: str, columns: list[str], rows: list[list[object]], message: str) -> None:
    response = _post(server, columns, rows)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert message in response.text
    assert requests.get(f"{server}/ping", timeout=5).status_code == 200  # the server is still alive


def test_garbage_body_is_4xx(server: str) -> None:
    response = requests.post(f"{server}/invocations", data=b"{not json", headers={"Content-Type": "application/json"},
                             timeout=30)
    assert 400 <= response.status_code < 500
