"""Static checks of infra/: compose stack, Dockerfiles, Helm values, DeepSpeed configs and launcher."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = INFRA / "compose" / "docker-compose.yml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_every_service_pinned_and_healthy() -> None:
    services = _compose()["services"]
    assert {"postgres", "s3", "create-buckets", "mlflow", "prefect-server", "prefect-worker"} <= set(services)
    for name, svc in services.items():
        image = svc.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), (
            f"{name}: image {image!r} is not pinned"
        )
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            wanted = "service_completed_successfully" if dep == "create-buckets" else "service_healthy"
            assert cond == {"condition": wanted}, (name, dep, cond)
            if wanted == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} is waited on but has no healthcheck"
    assert not any("minio" in svc.get("image", "") for svc in services.values())  # discontinued images


def test_mlflow_server_uses_postgres_s3_and_allowed_hosts() -> None:
    command = " ".join(_compose()["services"]["mlflow"]["command"])
    assert (
        "--backend-store-uri=postgresql+psycopg2://" in command and "--artifacts-destination=s3://" in command
    )
    assert re.search(r"--allowed-hosts=\S*mlflow", command)


def test_no_secret_is_committed() -> None:
    text = COMPOSE.read_text()
    for variable in ("POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
        assert f"${{{variable}" in text  # always from the environment / .env
    example = (INFRA / "compose" / ".env.example").read_text()
    assert all(
        line.split("=", 1)[1] in ("mlflow", "dvc", "change-me", "change-me-too")
        for line in example.splitlines()
        if "=" in line and not line.startswith("#")
    )
    ignored = (INFRA.parent / ".gitignore").read_text().split()
    assert ".env" in ignored


def test_dockerfiles_pin_their_base_images() -> None:
    for name in ("Dockerfile.train", "Dockerfile.serve"):
        text = (INFRA / "docker" / name).read_text()
        bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
        assert bases and all(":" in b and not b.endswith(":latest") for b in bases), (name, bases)
        assert "requirements.lock" in text  # the same pins as the project


def test_helm_values_use_secret_refs() -> None:
    for path in sorted((INFRA / "helm").glob("*.yaml")):
        text = path.read_text()
        yaml.safe_load(text)
        assert "secretKeyRef" in text or "secret:" in text, path.name
        assert not re.search(r"(?i)password:\s*['\"]?[^'\"\s{]+", text), f"{path.name}: a literal password"


def test_docker_compose_config_when_the_client_runs_offline() -> None:
    docker = shutil.which("docker")
    probe = None
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if probe is None or probe.returncode != 0:
        pytest.skip("the docker compose client is not installed here; the YAML checks above still ran")
    env_file = INFRA / "compose" / ".env.example"
    proc = subprocess.run(
        [docker, "compose", "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_launch_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(INFRA / "deepspeed" / "launch.sh")], check=False).returncode == 0
    hosts = [
        line
        for line in (INFRA / "deepspeed" / "hostfile.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert hosts and all(re.fullmatch(r"\S+ slots=\d+", line) for line in hosts)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero2_bf16.json", "zero3_bf16.json"])
def test_deepspeed_configs_build_a_real_engine(name: str) -> None:
    """Each multi-node config, merged over params.yaml's, initialises a DeepSpeed engine that steps."""
    import deepspeed
    import torch

    from mint_iqa.config import TrainConfig
    from mint_iqa.train.engine import deepspeed_config, setup_distributed_env

    cfg = TrainConfig(batch_size=4, deepspeed_extra=INFRA / "deepspeed" / name)
    config = deepspeed_config(cfg)
    stage = json.loads((INFRA / "deepspeed" / name).read_text())["zero_optimization"]["stage"]
    assert config["zero_optimization"]["stage"] == stage and config["bf16"]["enabled"]
    assert config["train_micro_batch_size_per_gpu"] == 4  # batch sizes stay params.yaml's
    setup_distributed_env()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 1))
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2), config=config
    )
    x, y = torch.randn(4, 8), torch.randn(4, 1)
    losses = []
    for _ in range(5):
        out = engine(x.to(engine.device, torch.bfloat16))
        loss = torch.nn.functional.mse_loss(out.float(), y.to(engine.device))
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_deepspeed_extra_may_not_override_params(tmp_path: Path) -> None:
    from mint_iqa.config import TrainConfig
    from mint_iqa.train.engine import deepspeed_config

    bad = tmp_path / "bad_ds.json"
    bad.write_text(json.dumps({"train_micro_batch_size_per_gpu": 64, "zero_optimization": {"stage": 3}}))
    with pytest.raises(ValueError, match="set by params.yaml"):
        deepspeed_config(TrainConfig(deepspeed_extra=bad))


def _make_rules(text: str) -> dict[str, tuple[list[str], str]]:
    """Makefile targets -> (prerequisites, recipe text)."""
    rules: dict[str, tuple[list[str], str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("\t") and current:
            rules[current][1].append(line[1:])
        elif m := re.match(r"^([\w./$()-]+)\s*:(?!=)(.*)$", line):
            current = m.group(1)
            rules[current] = (m.group(2).split(), [])
        elif line.strip() and not line.startswith("#"):
            current = None
    return {target: (prereqs, "\n".join(recipe)) for target, (prereqs, recipe) in rules.items()}


def test_make_test_installs_the_system_packages_and_ci_only_calls_it() -> None:
    """`make test` (the README's command) installs what the report and stack tests drive, so it passes on a
    fresh Debian machine by itself; .ci/run installs nothing of its own, so the two cannot drift apart."""
    root = INFRA.parent
    makefile = (root / "Makefile").read_text()
    rules = _make_rules(makefile)
    steps = [rules[p] for p in rules["test"][0] if p in rules and "apt-get" in rules[p][1]]
    assert len(steps) == 1, "the test target should depend on one system-package step (apt-get)"
    recipe = steps[0][1]
    assert re.search(r"\bmissing\+=\(chromium\)", recipe) and re.search(r"\bmissing\+=\(postgresql\)", recipe)
    assert "command -v chromium" in recipe and "sudo" in recipe
    # it looks where the tests look: test_stack.py globs initdb, test_report.py asks PATH for chromium
    assert '"/usr/lib/postgresql/*/bin/initdb"' in (root / "tests" / "infra" / "test_stack.py").read_text()
    assert "/usr/lib/postgresql/*/bin/initdb" in recipe
    assert 'shutil.which("chromium")' in (root / "tests" / "model" / "test_report.py").read_text()
    phony = " ".join(line for line in makefile.splitlines() if line.startswith(".PHONY:")).split()
    assert next(p for p in rules["test"][0] if p in rules and rules[p][1] == recipe) in phony

    commands = [
        line.strip()
        for line in (root / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
    # shell set-up, the lint checks (ruff, lint-imports: tools of the venv), then the README's test command
    assert all(re.match(r"(set|cd|export) ", c) or c == "make lint" for c in commands[:-1]), commands
    assert rules["lint"][0] == ["$(STAMP)"] and "ruff check" in rules["lint"][1], rules["lint"]
    installs = re.compile(r"\b(apt|apt-get|dpkg|pip3?|install|sudo|chromium|postgres\w*)\b")
    assert not installs.search("\n".join(commands)), commands
