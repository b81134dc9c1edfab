"""`mint-iqa`: one command tree over the library. Each command parses options, calls one library
function and reports; DVC stages (`python -m mint_iqa <step>`) and Prefect tasks call the same functions.

Exit codes: 0 success; 1 the step ran and found a problem (failed validation, failed items);
2 bad usage or input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mint_iqa.config import DIMENSIONS, Params, load_params

app = typer.Typer(help="Explainable, multi-perspective quality assessment for AI-generated images.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Raw data: materialise, inspect.", no_args_is_help=True)
app.add_typer(data_app, name="data")
registry_app = typer.Typer(help="The MLflow model registry: show lineage, roll back.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
console = Console(stderr=True, soft_wrap=True)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Parameter file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-S", help="Override a parameter: key.path=value.")]


def _params(path: Path, overrides: list[str] | None) -> Params:
    try:
        return load_params(path, overrides or [])
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {path}: {str(exc).splitlines()[0]}")
        for line in str(exc).splitlines()[1:]:
            console.print(f"  {line}")
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _step(run: Any, p: Params) -> Any:
    """A pipeline step's result; a missing input (an earlier stage not run) is a one-line error."""
    try:
        return run(p)
    except FileNotFoundError as exc:
        _fail(str(exc))


def _tracking_failed(step: str, exc: BaseException) -> None:
    """One line for a registry step that the MLflow tracking server did not complete (exit 1)."""
    from mint_iqa.tracking import tracking_uri

    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    _fail(f"{step}: the tracking server {tracking_uri()} did not complete the request; nothing local was "
          f"changed, rerun when it is reachable ({type(exc).__name__}: {reason})", code=1)


@data_app.command("fetch")
def data_fetch(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None,
               force: Annotated[bool, typer.Option(help="Overwrite files whose content differs.")] = False) -> None:
    """Write the reference photographs and references.csv into data/ (same bytes on every machine)."""
    from mint_iqa.data.references import fetch

    p = _params(params, overrides)
    try:
        written = fetch(p.data.raw_dir, force=force)
    except (FileExistsError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(f"data fetch: {len(written)} file(s) written, {p.data.raw_dir}/ up to date")


@data_app.command("sheet")
def data_sheet(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None,
               reference: Annotated[str, typer.Option(help="Reference id to show.")] = "astronaut",
               out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("plots/degradations.png")) -> None:
    """Contact sheet of every distortion type x level on one reference (PNG)."""
    from mint_iqa.data.sheet import contact_sheet

    try:
        path = contact_sheet(_params(params, overrides), reference, out)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(f"contact sheet written to {path}")


@data_app.command("calibrate")
def data_calibrate(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None,
                   samples: Annotated[int, typer.Option(help="Level-5 renders per distortion type.")] = 100) -> None:
    """Measure each distortion's level-5 damage and print `prepare.labels.damage_scale` for params.yaml."""
    import numpy as np
    import yaml

    from mint_iqa.data.references import load_references
    from mint_iqa.data.synth import Synthesiser

    p = _params(params, overrides)
    synth = Synthesiser(load_references(p.data.raw_dir), p.prepare)
    scales = synth.calibrate(np.random.default_rng([p.seed, 0xCA1]), samples)
    print(yaml.safe_dump({"damage_scale": scales}, default_flow_style=None, sort_keys=False).strip())


@app.command()
def prepare(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Build artifacts/prepared: images, manifest, splits, instructions."""
    from mint_iqa.prepare import prepare as run

    try:
        out = run(_params(params, overrides))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    meta = json.loads((out / "dataset.json").read_text())
    console.print(f"prepare: {meta['images']} images, {meta['instructions']} instructions, "
                  f"{meta['references']} content groups -> {out}/")


@app.command()
def validate(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Validate the prepared dataset with great-expectations; exit 1 listing failed expectations."""
    from mint_iqa.validate import ValidationFailed, validate as run

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
    console.print(f"validate: {len(report.results)} expectations passed on {report.rows} rows "
                  f"-> {p.validation.metrics}")


@app.command("train-scorer")
def train_scorer(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None,
                 protocol: Annotated[list[str] | None, typer.Option(help="Protocol(s) to train (default: train.protocols).")] = None,
                 resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False) -> None:
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
def train_explainer(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None,
                    protocol: Annotated[list[str] | None, typer.Option(help="Protocol(s) (default: train.protocols).")] = None,
                    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False) -> None:
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
    """Explain each protocol's test images; write metrics/explainer.json (level accuracy, consistency, ...)."""
    from mint_iqa.evaluate import evaluate_explainer as run

    p = _params(params, overrides)
    print(json.dumps(_step(run, p), indent=2))
    console.print(f"evaluate-explainer: metrics -> {p.explain.metrics}")


@app.command()
def evaluate(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Score each protocol's test split; write metrics/scorer.json and plots; log to MLflow."""
    from mint_iqa.evaluate import evaluate as run, table

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


ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="Model folder, or an MLflow URI such as models:/mint-iqa@champion "
                    "(default: $MINT_IQA_MODEL, else this project's artifacts/explainer/paper/best).")]
DeviceOpt = Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1, mps, or auto (CUDA when present).")]
BeamsOpt = Annotated[int, typer.Option(min=1, help="Explanations: 1 greedy decoding, more: beam search (slower).")]


def _load(model: str | None, device: str = "cpu", num_beams: int = 1):
    from mint_iqa.api import load

    try:
        return load(model, device=device, num_beams=num_beams)
    except (ValueError, FileNotFoundError, OSError) as exc:
        _fail(str(exc).splitlines()[0])
    except Exception as exc:  # noqa: BLE001 - MLflow reports unknown models/aliases as a generic MlflowException
        _fail(f"{model}: {str(exc).splitlines()[0]}")


@app.command()
def score(images: Annotated[list[Path] | None, typer.Argument(help="Image files or folders (with --prompt).")] = None,
          out: Annotated[Path, typer.Option("--out", "-o", help="Output table: .csv, .json or .parquet.")] = ...,
          manifest: Annotated[Path | None, typer.Option("--manifest", "-m", help="CSV with columns image,prompt.")] = None,
          prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="The prompt of all IMAGES.")] = None,
          model: ModelOpt = None,
          explain: Annotated[bool, typer.Option("--explain", help="Add an explanation per dimension.")] = False,
          scale: Annotated[str, typer.Option(help="mos (calibrated 1-5) or raw (head outputs).")] = "mos",
          batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
          device: DeviceOpt = "cpu", num_beams: BeamsOpt = 1,
          force: Annotated[bool, typer.Option(help="Overwrite an existing output file.")] = False) -> None:
    """Score images against their prompts; one output row per input, in order.

    Either IMAGES with --prompt, or --manifest (image paths relative to the manifest's folder, never
    outside it). A bad item gets the reason in `status` and the others are still scored.
    Exit codes: 0 all rows scored, 1 some rows failed (output written), 2 bad usage or input (nothing written).
    """
    from mint_iqa.predict import check_output, images_table, read_manifest, score_table, write_table

    if bool(images) == bool(manifest):
        _fail("give either IMAGES (with --prompt) or --manifest, not both or neither")
    if images and prompt is None:
        _fail("--prompt is required with IMAGES (or use --manifest with a prompt per row)")
    if scale not in ("mos", "raw"):
        _fail(f"--scale must be mos or raw, got {scale!r}")
    try:
        check_output(out, force)
        table = read_manifest(manifest) if manifest else images_table(images or [], prompt or "")
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        _fail(str(exc))
    result = score_table(_load(model, device, num_beams), table, explain=explain, scale=scale, batch_size=batch_size)
    write_table(result, out)
    failed = result[result["status"] != "ok"]
    for _, row in failed.head(10).iterrows():
        console.print(f"  [yellow]failed[/yellow] {row['image']}: {row['status']}")
    console.print(f"score: {len(result)} rows -> {out} ({len(failed)} failed)")
    raise typer.Exit(1 if len(failed) else 0)


@app.command()
def rank(images: Annotated[list[Path], typer.Argument(help="Candidate images (files or folders).")],
         prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt all candidates were made from.")],
         by: Annotated[str, typer.Option(help="overall (mean of the three) or one dimension.")] = "overall",
         model: ModelOpt = None, device: DeviceOpt = "cpu",
         out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the ranking (.csv/.json/.parquet).")] = None,
         force: Annotated[bool, typer.Option(help="Overwrite an existing output file.")] = False) -> None:
    """Best-of-N: rank candidate images for one prompt, best first (exit 1 if some could not be scored)."""
    from rich.table import Table

    from mint_iqa.api import RANK_KEYS
    from mint_iqa.predict import check_output, images_table, write_table

    if by not in RANK_KEYS:
        _fail(f"--by must be one of {', '.join(RANK_KEYS)}, got {by!r}")
    try:
        if out is not None:
            check_output(out, force)
        table = images_table(images, prompt)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        _fail(str(exc))
    usable = table[table["status"] == "ok"]
    ranked = _load(model, device).rank(prompt, list(usable["path"]), by=by)
    ranked.insert(2, "image", [usable["image"].iloc[i] for i in ranked["index"]])
    view = Table(title=f"ranked by {by}: {prompt[:60]}")
    for column in ("rank", "image", "overall", "quality", "authenticity", "correspondence", "status"):
        view.add_column(column, justify="left" if column in ("image", "status") else "right",
                        no_wrap=column == "image")
    for _, row in ranked.iterrows():
        cells = ["-" if row["rank"] != row["rank"] else str(int(row["rank"])), Path(row["image"]).name,
                 *[f"{row[c]:.2f}" if row[c] == row[c] else "-" for c in ("overall", *DIMENSIONS)], row["status"]]
        view.add_row(*cells)
    Console().print(view)
    if out is not None:
        write_table(ranked.drop(columns=["index"]), out)
    failed = int((ranked["status"] != "ok").sum()) + int((table["status"] != "ok").sum())
    raise typer.Exit(1 if failed else 0)


@app.command()
def explain(image: Annotated[Path, typer.Argument(help="Image file.")],
            prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt the image was generated from.")],
            question: Annotated[str | None, typer.Option(help="Question (default: all three perspectives).")] = None,
            model: ModelOpt = None, device: DeviceOpt = "cpu", num_beams: BeamsOpt = 1) -> None:
    """Explain one image's quality, authenticity and correspondence in words."""
    loaded = _load(model, device, num_beams)
    try:
        print(loaded.explain(image, prompt, question))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))


@app.command()
def report(results: Annotated[Path, typer.Argument(help="A table written by `mint-iqa score`.")],
           out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
           images_root: Annotated[Path | None, typer.Option(help="Folder the `image` paths are relative to "
                                                                 "(default: the results file's folder, then .).")] = None,
           force: Annotated[bool, typer.Option(help="Overwrite an existing report.")] = False) -> None:
    """A self-contained HTML report: thumbnails, score bars, explanations, sorting, filters, histograms."""
    from mint_iqa.report import write_report

    try:
        info = write_report(results, out, images_root, force=force)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        _fail(str(exc))
    console.print(f"report: {info['rows']} rows ({info['failed']} failed) -> {out}")


@app.command()
def register(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Log the trained assessor to MLflow, register a new version of the model, alias it `challenger`."""
    from mint_iqa.registry import register as run

    p = _params(params, overrides)
    try:
        version = run(p)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - MLflow / HTTP errors from the tracking server
        _tracking_failed("register", exc)
    from mint_iqa.io import write_text

    write_text(p.registry.record, json.dumps({"model": p.registry.model_name, "version": version.version,
                                              "run_id": version.run_id}, indent=2) + "\n")
    console.print(f"register: {p.registry.model_name} version {version.version} -> alias challenger")


@app.command()
def promote(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Gate the challenger against the champion on held-out images; move `champion` only if it passes."""
    from mint_iqa.registry import promote as run

    p = _params(params, overrides)
    try:
        decision = run(p)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - MLflow / HTTP errors from the tracking server
        _tracking_failed("promote", exc)
    print(decision.markdown())
    console.print(f"promote: decision -> {p.registry.decision}")


@registry_app.command("show")
def registry_show(alias: Annotated[str, typer.Argument(help="champion | challenger | previous")] = "champion",
                  params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Version, aliases, commit, data hash, params, metrics and promotion decision behind an alias."""
    from mint_iqa.registry import show

    try:
        print(show(_params(params, overrides), alias))
    except Exception as exc:  # noqa: BLE001 - MLflow reports a missing alias as a generic MlflowException
        _fail(f"{alias}: {str(exc).splitlines()[0]}")


@registry_app.command("rollback")
def registry_rollback(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Give `champion` back to the version holding `previous`."""
    from mint_iqa.registry import rollback

    try:
        version = rollback(_params(params, overrides))
    except Exception as exc:  # noqa: BLE001
        _fail(f"rollback: {str(exc).splitlines()[0]}")
    console.print(f"rollback: champion -> version {version}")


@app.command()
def summary(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """What the pipeline has produced so far, and where."""
    from mint_iqa.summary import summarise

    print(summarise(_params(params, overrides)))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
