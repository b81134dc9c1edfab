"""The MLflow registry for real (sqlite store): register, gate, aliases, rollback, lineage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mint_iqa.config import DIMENSIONS, Params
from mint_iqa.registry import Holdout, gate, request_example

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _params(**register: object) -> Params:
    return Params.model_validate({"register": {"epsilon": 0.02, "delta": 0.005, **register}})


def _holdout(
    srcc: tuple[float, float, float], levels: tuple[float, float, float] = (0.7, 0.6, 0.5)
) -> Holdout:
    return Holdout(dict(zip(DIMENSIONS, srcc)), dict(zip(DIMENSIONS, levels)))


def test_gate_first_model_needs_minimums() -> None:
    params = _params(minimums={"quality": 0.5, "authenticity": 0.3, "correspondence": 0.3})
    ok, _ = gate(_holdout((0.6, 0.4, 0.35)), None, params)
    low, reasons = gate(_holdout((0.6, 0.2, 0.35)), None, params)
    assert ok and not low and "authenticity SRCC 0.2000 < minimum 0.3" in reasons[0]


def test_gate_against_champion() -> None:
    params = _params()
    old = _holdout((0.70, 0.50, 0.60))
    better = _holdout((0.75, 0.49, 0.62))  # small drop, mean up
    dropped = _holdout((0.90, 0.45, 0.70))  # one dimension drops 0.05
    flat = _holdout((0.70, 0.50, 0.604))  # mean up 0.0013 < delta
    assert gate(better, old, params)[0]
    passed, reasons = gate(dropped, old, params)
    assert not passed and "authenticity SRCC drops by 0.0500 > epsilon 0.02" in reasons[0]
    passed, reasons = gate(flat, old, params)
    assert not passed and "neither mean improves by delta 0.005" in reasons[0]


def test_gate_counts_constant_scores_as_no_ranking() -> None:
    """A model with constant outputs has no SRCC (NaN): it must neither pass nor block the gate by
    accident."""
    params = _params()
    constant = _holdout((float("nan"), float("nan"), float("nan")), levels=(0.0, 0.0, 0.0))
    reversed_ = _holdout((-0.19, -0.1, -0.05), levels=(0.0, 0.0, 0.0))
    assert not gate(reversed_, constant, params)[0]
    assert gate(_holdout((0.19, 0.1, 0.05), levels=(0.0, 0.0, 0.0)), constant, params)[0]


def test_gate_judges_the_explanations_too() -> None:
    params = _params()
    old = _holdout((0.70, 0.50, 0.60), levels=(0.70, 0.60, 0.50))
    clearer = _holdout((0.70, 0.50, 0.60), levels=(0.75, 0.62, 0.55))  # same scorer, better words
    assert gate(clearer, old, params)[0]
    vaguer = _holdout((0.75, 0.55, 0.65), levels=(0.70, 0.50, 0.50))  # better scores, worse words
    passed, reasons = gate(vaguer, old, params)
    assert not passed and reasons == ["authenticity level accuracy drops by 0.1000 > epsilon 0.02"]


# long: one registry history (register, gate, aliases, rollback), each step building on the last
def test_register_gate_aliases_rollback(
    assessors: dict[str, Path], prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from mint_iqa.registry import promote, register, rollback, show

    monkeypatch.chdir(tmp_path)
    shutil.copy(Path(__file__).parents[2] / "data.dvc", tmp_path / "data.dvc")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def params(name: str) -> Params:
        return Params.model_validate(
            {
                "prepare": {"out_dir": str(prepared)},
                "explain": {"out_dir": str(assessors[name])},
                "register": {
                    "epsilon": 0.5,
                    "delta": 0.005,
                    "holdout_images": 10_000,
                    "decision": str(tmp_path / "d.md"),
                    "minimums": {"quality": -1, "authenticity": -1, "correspondence": -1},
                },
            }
        )

    version_a = register(params("A")).version
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    alias = lambda a: client.get_model_version_by_alias("mint-iqa", a).version  # noqa: E731
    assert alias("challenger") == version_a
    first = promote(params("A"))
    assert first.promoted and alias("champion") == version_a

    version_b = register(params("B")).version
    worse = promote(params("B"))
    assert not worse.promoted, (worse.reasons, worse.challenger_scores, worse.champion_scores)
    assert alias("champion") == version_a and alias("challenger") == version_b
    assert client.get_model_version("mint-iqa", version_b).tags["promotion.decision"] == "rejected"
    assert "NOT promoted" in (tmp_path / "d.md").read_text()

    version_c = register(params("C")).version
    better = promote(params("C"))
    assert better.promoted, better.reasons
    assert alias("champion") == version_c and alias("previous") == version_a
    mean = lambda scores: sum(scores.values()) / len(scores)  # noqa: E731
    assert mean(better.challenger_scores.srcc) > 0 > mean(worse.challenger_scores.srcc)

    # the served model generates text only when asked: count the language model's forward passes
    import mlflow

    served = mlflow.pyfunc.load_model(f"models:/mint-iqa/{version_c}")
    calls = []
    served.unwrap_python_model().assessor.explainer.language_model.register_forward_hook(
        lambda *_: calls.append(1)
    )
    batch = request_example(params("C"))
    quiet = served.predict(batch, params={"explain": False})
    assert not calls and quiet["status"].tolist() == ["ok"] and (quiet["explanation_quality"] == "").all()
    loud = served.predict(batch)
    assert calls and abs(float(loud["quality"].iloc[0]) - float(quiet["quality"].iloc[0])) < 1e-4

    assert rollback(params("C")) == version_a
    assert alias("champion") == version_a
    lineage = show(params("C"), "champion")
    assert f"version {version_a}" in lineage and "git commit" in lineage and "data.dvc md5" in lineage
    tags = client.get_model_version("mint-iqa", version_a).tags
    assert tags["data_dvc_md5"] != "unknown" and len(tags["params_sha256"]) == 16


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real `mlflow server` on loopback (sqlite backend, proxied artifact store), stopped afterwards."""
    import os
    import signal
    import subprocess

    from tests.conftest import free_port, tool, wait_http

    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [
            tool("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc, "mlflow server", timeout=120)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_register_and_promote_against_a_real_mlflow_server(
    assessors: dict[str, Path],
    prepared: Path,
    mlflow_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    from mint_iqa.registry import promote, register

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    params = Params.model_validate(
        {
            "prepare": {"out_dir": str(prepared)},
            "explain": {"out_dir": str(assessors["C"])},
            "register": {
                "holdout_images": 20,
                "decision": str(tmp_path / "d.md"),
                "minimums": {"quality": -1, "authenticity": -1, "correspondence": -1},
            },
        }
    )
    version = register(params).version
    assert promote(params).promoted
    model = mlflow.pyfunc.load_model("models:/mint-iqa@champion")
    assert model.metadata.run_id and version == "1"
    assert not any((tmp_path / "mlruns").glob("*"))  # artifacts went to the server, not to a local folder


def test_a_champion_this_code_cannot_load_is_judged_as_absent(
    assessors: dict[str, Path], prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an architecture change the registered champion's weights no longer fit the code: promotion
    says so and judges the challenger by the first model's minimums, instead of failing the pipeline."""
    from mint_iqa.registry import promote, register

    monkeypatch.chdir(tmp_path)
    shutil.copy(Path(__file__).parents[2] / "data.dvc", tmp_path / "data.dvc")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = {
        name: Params.model_validate(
            {
                "prepare": {"out_dir": str(prepared)},
                "explain": {"out_dir": str(assessors[name])},
                "register": {
                    "holdout_images": 40,
                    "decision": str(tmp_path / "d.md"),
                    "minimums": {"quality": -1, "authenticity": -1, "correspondence": -1},
                },
            }
        )
        for name in ("A", "C")
    }
    register(params["A"])
    assert promote(params["A"]).promoted
    weights = sorted(tmp_path.rglob("*.safetensors"))
    assert weights  # the champion's stored weights, now of a shape this code does not build
    for path in weights:
        path.write_bytes(path.read_bytes()[:64])
    version_c = register(params["C"]).version
    decision = promote(params["C"])
    assert decision.promoted and decision.champion_scores is None
    assert decision.reasons[0].startswith("champion version 1 cannot be loaded by this code (")
    assert f"version {version_c} PROMOTED" in (tmp_path / "d.md").read_text()
