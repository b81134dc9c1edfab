"""Steps `register` and `promote`: the MLflow model registry with aliases, a promotion gate and lineage.

* `register` logs the product assessor (scorer + explainer of `register.protocol`) as an MLflow 3
  LoggedModel with the pyfunc flavour from code (`serving/pyfunc_model.py`, weights as safetensors
  artifacts), registers a new version of `register.model_name`, tags it with its lineage (git commit,
  `data.dvc` hash, params hash, evaluation metrics) and gives it the alias `challenger`.
* `promote` runs challenger and champion on the same held-out images and moves `champion` only when
  the gate passes. Both stages are judged: the scores (SRCC per dimension against the labels) and the
  explanations (level accuracy per dimension: the level stated in words against the label's grade). No
  dimension may drop by more than `epsilon` on either, and the mean of one of them must improve by at
  least `delta` (so a better explainer ships even when the scorer is unchanged); the first model only
  needs the absolute SRCC `minimums` (so does a challenger whose champion this code cannot load, e.g. after
  an architecture change: that champion could not serve either). The replaced champion keeps the alias
  `previous`; `rollback` restores it. Every decision is a version tag and a markdown summary.

Registry stages are deprecated in MLflow 3; only aliases and tags are used here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mint_iqa.config import DIMENSIONS, Params
from mint_iqa.data import manifest
from mint_iqa.data.splits import split_rows
from mint_iqa.inference.serving import PARAMS
from mint_iqa.io import write_text
from mint_iqa.metrics import srcc

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
PYFUNC_CODE = Path(__file__).parent / "inference" / "serving" / "pyfunc_model.py"


def _client() -> Any:
    from mlflow import MlflowClient

    from mint_iqa import tracking

    tracking._setup(tracking.EXPERIMENT)
    return MlflowClient()


def lineage(params: Params, params_file: str | Path = "params.yaml") -> dict[str, str]:
    """Which code, data and parameters made a model: git commit, data.dvc hash, params hash."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    data_dvc = Path("data.dvc")
    data_hash = yaml.safe_load(data_dvc.read_text())["outs"][0]["md5"] if data_dvc.exists() else "unknown"
    canonical = json.dumps(params.model_dump(mode="json", by_alias=True), sort_keys=True)
    return {
        "git_commit": commit + ("-dirty" if dirty and dirty != "unknown" else ""),
        "data_dvc_md5": data_hash,
        "params_sha256": hashlib.sha256(canonical.encode()).hexdigest()[:16],
        "protocol": params.registry.protocol,
    }


def request_example(params: Params) -> pd.DataFrame:
    """One request row (a prepared image as base64, its prompt): the input example logged with the model."""
    prepared = Path(params.prepare.out_dir)
    df, meta = manifest.read(prepared)
    row = df.iloc[0]
    encoded = base64.b64encode((manifest.image_root(prepared, meta) / row["image"]).read_bytes()).decode()
    return pd.DataFrame({"image": [encoded], "prompt": [row["prompt"]]})


def register(params: Params) -> Any:
    """Log and register the assessor of `register.protocol`; returns the new model version (alias
    challenger), also recorded in `register.record`."""
    import mlflow
    from mlflow.models import infer_signature

    from mint_iqa import tracking

    cfg = params.registry
    folder = Path(params.explain.out_dir) / cfg.protocol / "best"
    if not (folder / "explainer").exists():
        raise FileNotFoundError(
            f"{folder}: no trained assessor; run `dvc repro train_explainer@{cfg.protocol}`"
        )
    metrics = {}
    for path in (params.evaluate.metrics, params.explain.metrics):
        if Path(path).exists():
            metrics[Path(path).stem] = json.loads(Path(path).read_text()).get(cfg.protocol, {})
    example = request_example(params)
    output = pd.DataFrame(
        {
            **{d: [0.5] for d in DIMENSIONS},
            "status": ["ok"],
            **{f"explanation_{d}": ["..."] for d in DIMENSIONS},
        }
    )
    tags = lineage(params)
    with tracking.run("register", tags={"stage": "register", **tags}):
        info = mlflow.pyfunc.log_model(
            name="assessor",
            python_model=str(PYFUNC_CODE),
            artifacts={"assessor": str(folder)},
            signature=infer_signature(example, output, params=PARAMS),
            input_example=example,
            code_paths=[str(Path(__file__).parent)],
            pip_requirements=_requirements(),
            registered_model_name=cfg.model_name,
        )
        mlflow.log_dict(metrics, "evaluation_metrics.json")
    client = _client()
    version = info.registered_model_version
    flat = {
        f"metric.{stage}.{dim}.srcc": str(m["srcc"])
        for stage, dims in metrics.items()
        for dim, m in dims.items()
        if isinstance(m, dict) and "srcc" in m
    }
    for key, value in {**tags, **flat, "model_uri": info.model_uri}.items():
        client.set_model_version_tag(cfg.model_name, str(version), key, value)
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, str(version))
    current = client.get_model_version(cfg.model_name, str(version))
    record = {"model": cfg.model_name, "version": current.version, "run_id": current.run_id}
    write_text(cfg.record, json.dumps(record, indent=2) + "\n")  # the DVC stage's output, written whole
    return current


def _requirements() -> list[str]:
    lock = Path("requirements.lock")
    wanted = {
        "torch",
        "torchvision",
        "transformers",
        "open-clip-torch",
        "open_clip_torch",
        "mlflow",
        "pandas",
        "numpy",
        "scipy",
        "pillow",
        "opencv-python",
        "safetensors",
        "tokenizers",
        "pydantic",
        "pyyaml",
    }
    if not lock.exists():
        return sorted(wanted)
    return [
        line.strip()
        for line in lock.read_text().splitlines()
        if line.split("==")[0].strip().lower() in wanted
    ]


@dataclass
class Holdout:
    """How a registered model does on the held-out images: SRCC of its scores and level accuracy of its
    explanations, per dimension."""

    srcc: dict[str, float]
    levels: dict[str, float]

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"srcc": self.srcc, "level_accuracy": self.levels}


def holdout_scores(params: Params, model: Any) -> Holdout:
    """A registered model (loaded pyfunc) judged on the held-out images (a sample of the protocol's test
    split)."""
    from mint_iqa.data.answers import grade, parse_grades

    prepared = Path(params.prepare.out_dir)
    df, meta = manifest.read(prepared)
    root = manifest.image_root(prepared, meta)
    df = split_rows(df, params.registry.protocol, "test")
    df = df.sample(n=min(len(df), params.registry.holdout_images), random_state=params.seed)
    batch = pd.DataFrame(
        {
            "image": [base64.b64encode((root / p).read_bytes()).decode() for p in df["image"]],
            "prompt": list(df["prompt"]),
        }
    )
    pred = model.predict(batch)
    levels = {
        d: round(
            float(
                np.mean(
                    [
                        parse_grades(text)[d] == grade(label)
                        for text, label in zip(pred[f"explanation_{d}"], df[d])
                    ]
                )
            ),
            4,
        )
        for d in DIMENSIONS
    }
    return Holdout({d: round(srcc(pred[d].to_numpy(), df[d].to_numpy()), 4) for d in DIMENSIONS}, levels)


@dataclass
class Decision:
    promoted: bool
    challenger: str
    champion: str | None
    challenger_scores: Holdout
    champion_scores: Holdout | None
    reasons: list[str]

    def markdown(self) -> str:
        verdict = "PROMOTED" if self.promoted else "NOT promoted"
        new, old = self.challenger_scores, self.champion_scores
        lines = [
            f"# Promotion: version {self.challenger} {verdict}",
            "",
            f"Champion before: {self.champion or 'none'}",
            "",
            "| dimension | challenger SRCC | champion SRCC | challenger level acc. | champion level acc. |",
            "|---|---|---|---|---|",
        ]
        for d in DIMENSIONS:
            lines.append(
                f"| {d} | {new.srcc[d]:.4f} | {f'{old.srcc[d]:.4f}' if old else '-'} "
                f"| {new.levels[d]:.4f} | {f'{old.levels[d]:.4f}' if old else '-'} |"
            )
        return "\n".join(lines + ["", *[f"- {r}" for r in self.reasons]]) + "\n"


def gate(new: Holdout, old: Holdout | None, params: Params) -> tuple[bool, list[str]]:
    """The promotion rule of `register` in params.yaml; returns (passed, reasons)."""
    cfg = params.registry
    if old is None:
        low = [
            f"{d} SRCC {new.srcc[d]:.4f} < minimum {cfg.minimums[d]}"
            for d in DIMENSIONS
            if new.srcc[d] < cfg.minimums[d]
        ]
        return not low, low or ["first model: every dimension meets its minimum"]
    drops, gains = [], {}
    # constant scores have no SRCC (NaN): they rank nothing, so they count as 0, never as a free pass
    ranked = lambda scores: {d: 0.0 if np.isnan(v) else v for d, v in scores.items()}  # noqa: E731
    for name, a, b in (
        ("SRCC", ranked(new.srcc), ranked(old.srcc)),
        ("level accuracy", new.levels, old.levels),
    ):
        drops += [
            f"{d} {name} drops by {b[d] - a[d]:.4f} > epsilon {cfg.epsilon}"
            for d in DIMENSIONS
            if b[d] - a[d] > cfg.epsilon
        ]
        gains[name] = float(np.mean([a[d] for d in DIMENSIONS]) - np.mean([b[d] for d in DIMENSIONS]))
    summary = ", ".join(f"mean {name} {gain:+.4f}" for name, gain in gains.items())
    if drops:
        return False, drops
    if max(gains.values()) < cfg.delta:
        return False, [f"neither mean improves by delta {cfg.delta} ({summary})"]
    return True, [f"{summary}; no dimension drops more than {cfg.epsilon}"]


def promote(params: Params) -> Decision:
    """Apply the gate to the current challenger; move the aliases only if it passes."""
    cfg, client = params.registry, _client()
    challenger = client.get_model_version_by_alias(cfg.model_name, CHALLENGER)
    try:
        champion = client.get_model_version_by_alias(cfg.model_name, CHAMPION)
    except Exception:
        champion = None
    if champion is not None and champion.version == challenger.version:
        raise ValueError(
            f"version {challenger.version} is already the champion; register a new challenger first"
        )
    import mlflow

    new = holdout_scores(params, mlflow.pyfunc.load_model(f"models:/{cfg.model_name}/{challenger.version}"))
    old, unloadable = None, []
    if champion is not None:
        try:
            model = mlflow.pyfunc.load_model(f"models:/{cfg.model_name}/{champion.version}")
        except Exception as exc:  # e.g. weights of an architecture this code no longer builds
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            unloadable = [
                f"champion version {champion.version} cannot be loaded by this code ({why}): it could not "
                "serve either, so the challenger is judged as a first model"
            ]
        else:
            old = holdout_scores(params, model)
    passed, reasons = gate(new, old, params)
    reasons = unloadable + reasons
    decision = Decision(
        passed, str(challenger.version), str(champion.version) if champion else None, new, old, reasons
    )
    if passed:
        if champion is not None:
            client.set_registered_model_alias(cfg.model_name, PREVIOUS, champion.version)
        client.set_registered_model_alias(cfg.model_name, CHAMPION, challenger.version)
    for key, value in {
        "promotion.decision": "promoted" if passed else "rejected",
        "promotion.reasons": "; ".join(reasons),
        "promotion.holdout": json.dumps(new.to_dict()),
        "promotion.compared_with": decision.champion or "none",
    }.items():
        client.set_model_version_tag(cfg.model_name, challenger.version, key, value)
    write_text(Path(cfg.decision), decision.markdown())
    return decision


def rollback(params: Params) -> str:
    """Give `champion` back to the version holding `previous`; returns that version."""
    cfg, client = params.registry, _client()
    previous = client.get_model_version_by_alias(cfg.model_name, PREVIOUS)
    current = client.get_model_version_by_alias(cfg.model_name, CHAMPION)
    client.set_registered_model_alias(cfg.model_name, CHAMPION, previous.version)
    client.delete_registered_model_alias(cfg.model_name, PREVIOUS)
    client.set_model_version_tag(cfg.model_name, current.version, "promotion.rolled_back", "true")
    return previous.version


def show(params: Params, alias: str = CHAMPION) -> str:
    """Lineage of the version behind `alias`: version, aliases, commit, data hash, params, metrics,
    decision."""
    cfg, client = params.registry, _client()
    version = client.get_model_version_by_alias(cfg.model_name, alias)
    model = client.get_registered_model(cfg.model_name)
    aliases = sorted(a for a, v in model.aliases.items() if v == version.version)
    tags = version.tags
    lines = [
        f"{cfg.model_name} version {version.version}  (aliases: {', '.join(aliases) or '-'})",
        f"  source run        {version.run_id}",
        f"  git commit        {tags.get('git_commit', '?')}",
        f"  data.dvc md5      {tags.get('data_dvc_md5', '?')}",
        f"  params sha256     {tags.get('params_sha256', '?')}  (protocol {tags.get('protocol', '?')})",
        "  metrics           "
        + ", ".join(
            f"{k.removeprefix('metric.')}={v}" for k, v in sorted(tags.items()) if k.startswith("metric.")
        ),
        f"  promotion         {tags.get('promotion.decision', 'not evaluated')}: "
        f"{tags.get('promotion.reasons', '')}",
    ]
    return "\n".join(lines)
