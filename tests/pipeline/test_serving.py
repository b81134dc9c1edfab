"""REST serving for real: `mint-iqa serve` (MLflow's scoring server) of the champion, over HTTP on
loopback."""

from __future__ import annotations

import base64
import io
import json
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
    env = {
        k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    }
    env.update(MLFLOW_TRACKING_URI=store, MINT_IQA_MAX_PIXELS="1000000", MINT_IQA_MAX_REQUEST_BYTES="8000000")
    old_cwd, old_uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(home)
    os.environ["MLFLOW_TRACKING_URI"] = store
    try:
        params = Params.model_validate(
            {
                "prepare": {"out_dir": str(prepared)},
                "explain": {"out_dir": str(assessors["C"])},
                "register": {
                    "holdout_images": 20,
                    "decision": str(home / "d.md"),
                    "minimums": {"quality": -1, "authenticity": -1, "correspondence": -1},
                },
            }
        )
        register(params)
        assert promote(params).promoted
    finally:
        os.chdir(old_cwd)
        os.environ.pop("MLFLOW_TRACKING_URI") if old_uri is None else os.environ.update(
            MLFLOW_TRACKING_URI=old_uri
        )
    port = free_port()
    proc = subprocess.Popen(
        [tool("mint-iqa"), "serve", "--model", "models:/mint-iqa@champion", "--port", str(port)],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/ping", proc, "mint-iqa serve")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def _post(url: str, columns: list[str], rows: list[list[object]]) -> requests.Response:
    return requests.post(
        f"{url}/invocations", json={"dataframe_split": {"columns": columns, "data": rows}}, timeout=120
    )


def test_valid_request_scores_and_explains(server: str) -> None:
    response = _post(
        server, ["image", "prompt"], [[_png(), "a photo of a cat"], [_png(seed=1), "a red rocket"]]
    )
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
        return requests.post(
            f"{server}/invocations", json={**body, **({"params": params} if params else {})}, timeout=120
        )

    full, fast = post(None), post({"explain": False})
    assert full.status_code == fast.status_code == 200, fast.text
    for a, b in zip(full.json()["predictions"], fast.json()["predictions"]):
        assert b["status"] == "ok" and all(abs(a[d] - b[d]) < 1e-4 for d in DIMENSIONS)
        assert (
            b["explanation_quality"] == b["explanation_authenticity"] == b["explanation_correspondence"] == ""
        )
    wrong = post({"explain": [1, 2]})
    assert 400 <= wrong.status_code < 500, wrong.text[:300]


def test_maps_on_request(server: str) -> None:
    """`"params": {"maps": true}` adds each row's damage maps (JSON lists of cells in [0, 1], at most 32 a
    side, from the same pass: the scores do not change); they are off by default."""
    rows = [[_png((900, 600)), "a photo of a cat"], ["not base64!", "a red rocket"]]
    body = {"dataframe_split": {"columns": ["image", "prompt"], "data": rows}}
    plain = requests.post(f"{server}/invocations", json={**body, "params": {"explain": False}}, timeout=120)
    mapped = requests.post(
        f"{server}/invocations", json={**body, "params": {"explain": False, "maps": True}}, timeout=120
    )
    assert plain.status_code == mapped.status_code == 200, mapped.text[:300]
    assert "quality_map" not in plain.json()["predictions"][0]
    good, bad = mapped.json()["predictions"]
    assert abs(good["quality"] - plain.json()["predictions"][0]["quality"]) < 1e-4
    for column in ("quality_map", "authenticity_map"):
        grid = np.array(json.loads(good[column]))
        assert grid.ndim == 2 and max(grid.shape) <= 32 and 0 <= grid.min() <= grid.max() <= 1
        assert grid.shape[0] > grid.shape[1]  # a tall image (read in windows) has a tall map
        assert bad[column] in ("", None) and bad["status"] != "ok"
    # per-word support needs an ImageNet head, which this (tiny-tower) model has not: a short 400
    words = requests.post(f"{server}/invocations", json={**body, "params": {"words": True}}, timeout=120)
    assert words.status_code == 400 and "ImageNet classifier" in words.json()["message"], words.text[:300]


def test_bad_rows_get_a_status_and_the_others_are_scored(server: str) -> None:
    """Bad base64, text that is no image, a file that starts as a JPEG and goes on as garbage (a decoder error
    inside Pillow), a number, too many pixels, an empty prompt: each row gets its reason, naming the row; the
    good row in the same request is scored."""
    garbage = base64.b64encode(b"\xff\xd8\xff\xe0" + np.random.default_rng(3).bytes(5000)).decode()
    rows = [
        ["%%%not-base64%%%", "a cat"],
        [base64.b64encode(b"plain text, not an image").decode(), "a cat"],
        [garbage, "a cat"],
        [12345, "a cat"],
        [_png((1200, 1000)), "a cat"],
        [_png(), ""],
        [_png(), "a cat"],
    ]
    response = _post(server, ["image", "prompt"], rows)
    assert response.status_code == 200, response.text[:500]
    status = [row["status"] for row in response.json()["predictions"]]
    expected = [
        "not valid base64",
        "not a recognised image",
        "corrupt",
        "non-empty string",
        "too large",
        "non-empty string",
    ]
    for i, (got, want) in enumerate(zip(status, expected)):
        assert got.startswith(f"row {i}") and want in got and "\n" not in got, got
    assert status[-1] == "ok"


@pytest.mark.parametrize(
    "body, content_type, status, message",
    [
        (
            b'{"dataframe_split": {"columns": ["image"], "data": [["aGVsbG8="]]}}',
            "application/json",
            400,
            "prompt",
        ),
        (b"{not json", "application/json", 400, ""),
        (
            b'{"dataframe_split": {"columns": ["image", "prompt"], "data": [["x", "a cat"]]}, '
            b'"params": {"colour": 1}}',
            "application/json",
            400,
            "unknown params ['colour']",
        ),
        (b"x" * 3_000_000, "application/json", 400, ""),  # large, not JSON: never echoed back
        (b"y" * 9_000_000, "application/json", 413, "request body over"),
    ],
)
def test_malformed_requests_get_short_answers(
    server: str, body: bytes, content_type: str, status: int, message: str
) -> None:
    """Errors are one short JSON line: no Python traceback, no part of the request quoted back."""
    response = requests.post(
        f"{server}/invocations", data=body, headers={"Content-Type": content_type}, timeout=60
    )
    assert response.status_code == status, (response.status_code, response.text[:500])
    answer = response.json()
    assert set(answer) == {"error_code", "message"} and message in answer["message"], answer
    assert (
        len(response.content) < 600
        and "Traceback" not in response.text
        and body[:20].decode() not in response.text
    )
    assert requests.get(f"{server}/ping", timeout=5).status_code == 200  # the server is still alive
