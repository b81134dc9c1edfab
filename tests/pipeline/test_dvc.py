"""The DVC pipeline on a real repository: reproduce, no-op rerun, targeted rerun after a param change."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tool
from tests.pipeline.conftest import Reproduced, copy_project, dvc_env, dvc_repro, stages_run

pytestmark = [pytest.mark.slow, pytest.mark.integration]


STAGES = {
    "prepare",
    "validate",
    "train_scorer@paper",
    "train_scorer@strict",
    "train_scorer_lko",
    "generalise",
    "evaluate",
    "train_explainer@paper",
    "train_explainer@strict",
    "evaluate_explainer",
    "register",
    "promote",
}


def test_repro_runs_the_whole_pipeline_then_is_a_noop(reproduced: Reproduced) -> None:
    repo = reproduced.path
    assert stages_run(reproduced.output) == STAGES
    assert (repo / "artifacts/prepared/manifest.parquet").exists()
    assert yaml.safe_load((repo / "metrics/validation.json").read_text())["success"] is True
    metrics = yaml.safe_load((repo / "metrics/scorer.json").read_text())
    assert set(metrics) == {"paper", "strict"}
    for protocol in metrics.values():
        assert set(protocol) == {"quality", "authenticity", "correspondence"}
        for m in protocol.values():
            assert set(m) == {"srcc", "plcc", "krcc", "rmse", "srcc_ci95"} and len(m["srcc_ci95"]) == 2
    assert (repo / "artifacts/scorer/paper/best/model.safetensors").exists()
    general = json.loads((repo / "metrics/generalisation.json").read_text())
    assert general["images"] == 12 and general["held_out"]
    for dim in ("quality", "authenticity"):
        assert -1 <= general[dim]["srcc"] <= 1 and set(general[dim]["per_kind"]) <= set(general["held_out"])
        assert -1 <= general["seen_by_strict_model"][dim]["srcc"] <= 1
    assert (repo / "plots/scorer/strict.png").exists()
    explained = yaml.safe_load((repo / "metrics/explainer.json").read_text())
    assert set(explained) == {"paper", "strict"}
    for m in explained.values():
        assert set(m) == {
            "level_accuracy",
            "defect_mention_accuracy",
            "defect_kind_accuracy",
            "rouge_l",
            "bleu4",
            "consistency",
        }
        assert set(m["level_accuracy"]) == {"quality", "authenticity", "correspondence"}
    assert (repo / "artifacts/explainer/paper/best/explainer/model.safetensors").exists()
    epochs = json.loads((repo / "artifacts/explainer/paper/history.json").read_text())
    for e in epochs:  # the best epoch is picked on levels and wording (ROUGE-L), not on levels alone
        levels = [e[f"val_level_acc_{d}"] for d in ("quality", "authenticity", "correspondence")]
        assert 0 <= e["val_rouge_l"] <= 1
        assert e["val_score"] == pytest.approx((sum(levels) + e["val_rouge_l"]) / 4)
    assert "version 1 PROMOTED" in (repo / "artifacts/registry/decision.md").read_text()
    shown = subprocess.run(
        [tool("mint-iqa"), "registry", "show", "champion"],
        cwd=repo,
        env=dvc_env(repo),
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and "mint-iqa version 1" in shown.stdout, shown.stderr
    assert (repo / "data.dvc").read_text() == (ROOT / "data.dvc").read_text()  # the data hash as committed
    second = dvc_repro(repo)
    assert stages_run(second) == set()
    assert "Data and pipelines are up to date" in second


@pytest.mark.parametrize("module", ["mint_iqa/models/explaining.py", "mint_iqa/validate.py"])
def test_a_code_change_marks_exactly_the_stages_that_import_it(
    reproduced: Reproduced, tmp_path: Path, module: str
) -> None:
    from tests.code.test_dvc_deps import expected

    repo = copy_project(reproduced.path, tmp_path / "repo")
    with (repo / module).open("a") as f:
        f.write("# edited\n")
    proc = subprocess.run(
        [tool("dvc"), "status", "--json"], cwd=repo, env=dvc_env(repo), capture_output=True, text=True
    )
    marked = {stage.split("@")[0] for stage in json.loads(proc.stdout)}
    users = {stage for stage in {s.split("@")[0] for s in STAGES} if module in expected(stage)}
    assert marked == users and users, proc.stdout


def test_param_change_reruns_prepare_and_validate_only(reproduced: Reproduced, tmp_path: Path) -> None:
    repo = copy_project(reproduced.path, tmp_path / "repo")
    assert stages_run(dvc_repro(repo)) == set()  # a copied project is up to date as it is
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"]["labels"]["floor"] = 0.15
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = subprocess.run(
        [tool("dvc"), "status", "prepare"], cwd=repo, env=dvc_env(repo), capture_output=True, text=True
    ).stdout
    assert re.search(r"params.yaml:\s+modified:\s+prepare", status), status
    assert stages_run(dvc_repro(repo, "validate")) == {"prepare", "validate"}
    after = subprocess.run(
        [tool("dvc"), "status", "validate"], cwd=repo, env=dvc_env(repo), capture_output=True, text=True
    ).stdout
    assert "up to date" in after
