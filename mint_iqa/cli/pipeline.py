"""`mint-iqa` pipeline commands: one per DVC stage (data, prepare, validate, train, evaluate, generalise,
register, promote) and the registry's show / rollback. Each parses options and calls one library function,
as the DVC stage and the Prefect task do."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mint_iqa.cli.common import (
    ParamsOpt,
    SetOpt,
    _fail,
    _params,
    _step,
    _tracked_step,
    app,
    console,
    data_app,
    registry_app,
)


@data_app.command("fetch")
def data_fetch(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Overwrite files whose content differs.")] = False,
) -> None:
    """Write the reference photographs and references.csv into data/ (same bytes on every machine)."""
    from mint_iqa.data.references import fetch

    p = _params(params, overrides)
    try:
        written = fetch(p.data.raw_dir, force=force)
    except (FileExistsError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(f"data fetch: {len(written)} file(s) written, {p.data.raw_dir}/ up to date")


@data_app.command("sheet")
def data_sheet(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    reference: Annotated[str, typer.Option(help="Reference id to show.")] = "astronaut",
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("plots/degradations.png"),
) -> None:
    """Contact sheet of every distortion type x level on one reference (PNG)."""
    from mint_iqa.data.sheet import contact_sheet

    try:
        path = contact_sheet(_params(params, overrides), reference, out)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(f"contact sheet written to {path}")


@data_app.command("calibrate")
def data_calibrate(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    samples: Annotated[int, typer.Option(min=1, help="Level-5 renders per distortion type.")] = 100,
) -> None:
    """Measure each distortion's level-5 damage and print `prepare.labels.damage_scale` for params.yaml."""
    import numpy as np
    import yaml

    from mint_iqa.data.references import load_references
    from mint_iqa.data.synth import Synthesiser

    p = _params(params, overrides)
    synth = Synthesiser(load_references(p.data.raw_dir), p.prepare)
    scales = synth.calibrate(np.random.default_rng([p.seed, 0xCA1]), samples)
    print(yaml.safe_dump({"damage_scale": scales}, default_flow_style=None, sort_keys=False).strip())


@data_app.command("lexicon")
def data_lexicon() -> None:
    """Rebuild mint_iqa/models/imagenet_lexicon.json (which ImageNet classes each word names) from WordNet."""
    from mint_iqa.data.lexicon import write_lexicon

    print(f"lexicon -> {write_lexicon()}")


@app.command()
def prepare(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Build artifacts/prepared: images, manifest, splits, instructions."""
    from mint_iqa.prepare import prepare as run

    try:
        out = run(_params(params, overrides))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    meta = json.loads((out / "dataset.json").read_text())
    console.print(
        f"prepare: {meta['images']} images, {meta['instructions']} instructions, "
        f"{meta['references']} content groups -> {out}/"
    )


@app.command()
def validate(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Validate the prepared dataset with great-expectations; exit 1 listing failed expectations."""
    from mint_iqa.validate import ValidationFailed
    from mint_iqa.validate import validate as run

    p = _params(params, overrides)
    try:
        report = run(p)
    except ValidationFailed as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        console.print(f"[red]validation failed[/red]; report: {p.validation.metrics}")
        raise typer.Exit(1) from None
    except FileNotFoundError as exc:
        _fail(str(exc))
    console.print(
        f"validate: {len(report.results)} expectations passed on {report.rows} rows -> {p.validation.metrics}"
    )


@app.command("train-scorer")
def train_scorer(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    protocol: Annotated[
        list[str] | None, typer.Option(help="Protocol(s) to train (default: train.protocols).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
) -> None:
    """Stage 1: train the multi-perspective scorer with DeepSpeed, one model per protocol."""
    from mint_iqa.train.launch import in_worker, relaunch
    from mint_iqa.train.scorer import train_scorer as run

    p = _params(params, overrides)
    protocols = protocol or list(p.train.protocols)
    if p.train.num_procs > 1 and not in_worker():
        argv = [a for a in sys.argv[1:] if a]
        raise typer.Exit(relaunch(p.train.num_procs, argv, p.train.threads))
    for name in protocols:
        try:
            best = run(p, name, resume=resume)
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        console.print(f"train-scorer[{name}]: best weights -> {best}/")


@app.command("train-explainer")
def train_explainer(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    protocol: Annotated[
        list[str] | None, typer.Option(help="Protocol(s) (default: train.protocols).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
) -> None:
    """Stage 2: instruction-tune the explainer over the protocol's trained scorer (DeepSpeed)."""
    from mint_iqa.train.explainer import train_explainer as run
    from mint_iqa.train.launch import in_worker, relaunch

    p = _params(params, overrides)
    if p.train.num_procs > 1 and not in_worker():
        raise typer.Exit(relaunch(p.train.num_procs, [a for a in sys.argv[1:] if a], p.train.threads))
    for name in protocol or list(p.train.protocols):
        try:
            best = run(p, name, resume=resume)
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        console.print(f"train-explainer[{name}]: assessor (scorer + explainer) -> {best}/")


@app.command("evaluate-explainer")
def evaluate_explainer(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Explain each protocol's test images; write metrics/explainer.json (level accuracy, consistency,
    ...)."""
    from mint_iqa.evaluate import evaluate_explainer as run

    p = _params(params, overrides)
    print(json.dumps(_step(run, p), indent=2))
    console.print(f"evaluate-explainer: metrics -> {p.explain.metrics}")


@app.command()
def evaluate(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Score each protocol's test split; write metrics/scorer.json and plots; log to MLflow."""
    from mint_iqa.evaluate import evaluate as run
    from mint_iqa.evaluate import table

    p = _params(params, overrides)
    print(table(_step(run, p)))
    console.print(f"evaluate: metrics -> {p.evaluate.metrics}, plots -> {p.evaluate.plots}/")


@app.command()
def generalise(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Leave-kinds-out: score unseen defect kinds on unseen photographs; write metrics/generalisation.json."""
    from mint_iqa.generalise import generalise as run

    p = _params(params, overrides)
    print(json.dumps(_step(run, p), indent=2))
    console.print(f"generalise: metrics -> {p.generalise.metrics}")


@app.command()
def register(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Log the trained assessor to MLflow, register a new version of the model, alias it `challenger`."""
    from mint_iqa.registry import register as run

    p = _params(params, overrides)
    version = _tracked_step("register", run, p)
    console.print(f"register: {p.registry.model_name} version {version.version} -> alias challenger")


@app.command()
def promote(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Gate the challenger against the champion on held-out images; move `champion` only if it passes."""
    from mint_iqa.registry import promote as run

    p = _params(params, overrides)
    decision = _tracked_step("promote", run, p)
    print(decision.markdown())
    console.print(f"promote: decision -> {p.registry.decision}")


@registry_app.command("show")
def registry_show(
    alias: Annotated[str, typer.Argument(help="champion | challenger | previous")] = "champion",
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Version, aliases, commit, data hash, params, metrics and promotion decision behind an alias."""
    from mint_iqa.registry import show

    try:
        print(show(_params(params, overrides), alias))
    except Exception as exc:
        _fail(f"{alias}: {str(exc).splitlines()[0]}")


@registry_app.command("rollback")
def registry_rollback(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Give `champion` back to the version holding `previous`."""
    from mint_iqa.registry import rollback

    try:
        version = rollback(_params(params, overrides))
    except Exception as exc:
        _fail(f"rollback: {str(exc).splitlines()[0]}")
    console.print(f"rollback: champion -> version {version}")


@app.command()
def summary(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """What the pipeline has produced so far, and where."""
    from mint_iqa.summary import summarise

    print(summarise(_params(params, overrides)))
