"""`mint-iqa`: one command tree over the library. Each command parses options, calls one library
function and reports; DVC stages (`python -m mint_iqa <step>`) and Prefect tasks call the same functions.

Exit codes: 0 success; 1 the step ran and found a problem (failed validation, failed items);
2 bad usage or input.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from mint_iqa.config import BATCH_SIZE, DIMENSIONS, Params, load_params


class OneLineErrors(TyperGroup):
    """Bad usage (unknown option, missing argument, a value out of range) is one line on stderr and exit 2,
    like every other input error of this tool, not a usage block or a framed panel."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # typer's (vendored click) usage and parameter errors
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                print(ctx.get_help(), file=sys.stderr)
                sys.exit(2)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            message = " ".join(exc.format_message().split()).rstrip(".")
            print(f"error: {where}{message[:1].lower()}{message[1:]}{hint}", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            print("aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    help="Explainable, multi-perspective quality assessment for AI-generated images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)
data_app = typer.Typer(help="Raw data: materialise, inspect.", no_args_is_help=True)
app.add_typer(data_app, name="data")
registry_app = typer.Typer(help="The MLflow model registry: show lineage, roll back.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
console = Console(stderr=True, soft_wrap=True)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Parameter file.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-S", help="Override a parameter: key.path=value.")
]


def _params(path: Path, overrides: list[str] | None) -> Params:
    try:
        return load_params(path, overrides or [])
    except (ValueError, OSError) as exc:
        first = str(exc).splitlines()[0]
        console.print(f"[red]error:[/red] {first if first.startswith(str(path)) else f'{path}: {first}'}")
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
    _fail(
        f"{step}: the tracking server {tracking_uri()} did not complete the request; nothing local was "
        f"changed, rerun when it is reachable ({type(exc).__name__}: {reason})",
        code=1,
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


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model folder, or an MLflow URI such as models:/mint-iqa@champion (default: $MINT_IQA_MODEL, "
        "else the model `mint-iqa use-model` recorded, else ./artifacts/explainer/paper/best).",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option(help="Torch device: cpu, cuda, cuda:1, mps, or auto (CUDA when present).")
]
BeamsOpt = Annotated[
    int, typer.Option(min=1, help="Explanations: 1 greedy decoding, more: beam search (slower).")
]


def _load(model: str | None, device: str = "cpu", num_beams: int = 1):
    from mint_iqa.api import load

    try:
        return load(model, device=device, num_beams=num_beams)
    except (ValueError, FileNotFoundError, OSError) as exc:
        _fail(str(exc).splitlines()[0])
    except Exception as exc:
        _fail(f"{model}: {str(exc).splitlines()[0]}")


@app.command()
def score(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders (with --prompt).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output table: .csv, .json or .parquet.")] = ...,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", "-m", help="CSV with columns image,prompt.")
    ] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="The prompt of all IMAGES.")] = None,
    model: ModelOpt = None,
    explain: Annotated[bool, typer.Option("--explain", help="Add an explanation per dimension.")] = False,
    scale: Annotated[str, typer.Option(help="mos (calibrated 1-5) or raw (head outputs).")] = "mos",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = BATCH_SIZE,
    device: DeviceOpt = "cpu",
    num_beams: BeamsOpt = 1,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output file.")] = False,
    maps: Annotated[
        Path | None,
        typer.Option(help="Also write each image's damage maps here: a PNG overlay and the arrays (.npz)."),
    ] = None,
) -> None:
    """Score images against their prompts; one output row per input, in order.

    Either IMAGES with --prompt, or --manifest (image paths relative to the manifest's folder, never
    outside it). A bad item gets the reason in `status` and the others are still scored.
    Exit codes: 0 all scored, 1 some rows failed (output written), 2 bad usage or input (nothing written).
    """
    from mint_iqa.inference import NO_MAPS
    from mint_iqa.maps import check_maps_dir, map_names
    from mint_iqa.predict import check_output, images_table, read_manifest, score_table, write_table

    quick_exit()
    if bool(images) == bool(manifest):
        _fail("give either IMAGES (with --prompt) or --manifest, not both or neither")
    if images and prompt is None:
        _fail("--prompt is required with IMAGES (or use --manifest with a prompt per row)")
    if scale not in ("mos", "raw"):
        _fail(f"--scale must be mos or raw, got {scale!r}")
    try:
        check_output(out, force)
        table = read_manifest(manifest) if manifest else images_table(images or [], prompt or "")
        if maps is not None:
            check_maps_dir(maps, map_names(list(table["image"])))
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        _fail(str(exc))
    loaded = _load(model, device, num_beams)
    if maps is not None and not loaded.scorer.has_maps:
        _fail(f"--maps: {NO_MAPS}")
    result = score_table(loaded, table, explain=explain, scale=scale, batch_size=batch_size, maps=maps)
    write_table(result, out)
    failed = result[result["status"] != "ok"]
    _list_failures(failed["image"], failed["status"], out)
    console.print(f"score: {len(result)} rows -> {out} ({len(failed)} failed)")
    raise typer.Exit(1 if len(failed) else 0)


def _list_failures(images: Any, statuses: Any, out: Path | None, shown: int = 10) -> None:
    """The first `shown` failed rows on stderr, each once (a status that names its item is not prefixed
    again), then how many more there are and where to find them."""
    from mint_iqa.predict import escape_controls

    rows = list(zip(images, statuses))
    for image, status in rows[:shown]:
        line = status if str(status).startswith(str(image)) else f"{image}: {status}"
        console.print(f"  failed {escape_controls(line)}", markup=False, highlight=False, style="yellow")
    if len(rows) > shown:
        where = f" (the status column of {out})" if out is not None else ""
        console.print(f"  ... and {len(rows) - shown} more{where}", highlight=False)


@app.command()
def rank(
    images: Annotated[list[Path], typer.Argument(help="Candidate images (files or folders).")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt all candidates were made from.")],
    by: Annotated[str, typer.Option(help="overall (mean of the three) or one dimension.")] = "overall",
    model: ModelOpt = None,
    device: DeviceOpt = "cpu",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the ranking (.csv/.json/.parquet).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output file.")] = False,
) -> None:
    """Best-of-N: rank candidate images for one prompt, best first (exit 1 if some could not be scored)."""
    from rich.table import Table

    from mint_iqa.api import RANK_KEYS
    from mint_iqa.predict import check_output, images_table, write_table

    quick_exit()
    if by not in RANK_KEYS:
        _fail(f"--by must be one of {', '.join(RANK_KEYS)}, got {by!r}")
    try:
        if out is not None:
            check_output(out, force)
        table = images_table(images, prompt)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        _fail(str(exc))
    usable = table[table["status"] == "ok"]
    ranked = _load(model, device).rank(list(usable["path"]), prompt, by=by)
    ranked.insert(2, "image", [usable["image"].iloc[i] for i in ranked["index"]])
    view = Table(title=f"ranked by {by}: {prompt[:60]}")
    for column in ("rank", "image", "overall", "quality", "authenticity", "correspondence", "status"):
        view.add_column(
            column, justify="left" if column in ("image", "status") else "right", no_wrap=column == "image"
        )
    for _, row in ranked.iterrows():
        cells = [
            "-" if row["rank"] != row["rank"] else str(int(row["rank"])),
            Path(row["image"]).name,
            *[f"{row[c]:.2f}" if row[c] == row[c] else "-" for c in ("overall", *DIMENSIONS)],
            row["status"],
        ]
        view.add_row(*cells)
    Console().print(view)
    if out is not None:
        write_table(ranked.drop(columns=["index"]), out)
    bad_input, bad_rank = table[table["status"] != "ok"], ranked[ranked["status"] != "ok"]
    _list_failures(
        [*bad_input["image"], *bad_rank["image"]], [*bad_input["status"], *bad_rank["status"]], out
    )
    raise typer.Exit(1 if len(bad_input) + len(bad_rank) else 0)


@app.command()
def explain(
    image: Annotated[Path, typer.Argument(help="Image file.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt the image was generated from.")],
    question: Annotated[str | None, typer.Option(help="Question (default: all three perspectives).")] = None,
    model: ModelOpt = None,
    device: DeviceOpt = "cpu",
    num_beams: BeamsOpt = 1,
) -> None:
    """Explain one image's quality, authenticity and correspondence in words."""
    quick_exit()
    loaded = _load(model, device, num_beams)
    try:
        print(loaded.explain(image, prompt, question))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A table written by `mint-iqa score`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
    images_root: Annotated[
        Path | None,
        typer.Option(
            help="Folder the `image` paths are relative to (default: the results file's folder, then .)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing report.")] = False,
) -> None:
    """A self-contained HTML report: thumbnails, score bars, explanations, sorting, filters, histograms."""
    from mint_iqa.report import write_report

    try:
        info = write_report(results, out, images_root, force=force)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        _fail(str(exc))
    console.print(f"report: {info['rows']} rows ({info['failed']} failed) -> {out}")


@app.command()
def serve(
    model: Annotated[
        str, typer.Option(help="Registered model URI or model folder.")
    ] = "models:/mint-iqa@champion",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 5001,
) -> None:
    """REST endpoint: MLflow's scoring server for MODEL (POST /invocations), with short error answers."""
    import uvicorn

    from mint_iqa.serving.server import build_app

    try:
        app_ = build_app(model)
    except Exception as exc:
        _fail(f"{model}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    console.print(f"serve: {model} on http://{host}:{port} (POST /invocations, GET /ping)")
    uvicorn.run(app_, host=host, port=port, workers=1, log_level="warning")


@app.command("use-model")
def use_model(
    source: Annotated[
        str | None,
        typer.Argument(
            help="Model folder or MLflow URI to use by default (omit to show the current default)."
        ),
    ] = None,
) -> None:
    """Record this user's default model, used by score, rank and explain from any folder without --model."""
    from mint_iqa.api import default_model, set_default_model, user_default_file

    try:
        if source is None:
            print(default_model())
            return
        recorded = set_default_model(source)
    except (ValueError, FileNotFoundError, OSError) as exc:
        _fail(str(exc))
    console.print(f"use-model: default model {recorded} (recorded in {user_default_file()})")


@app.command()
def register(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Log the trained assessor to MLflow, register a new version of the model, alias it `challenger`."""
    from mint_iqa.registry import register as run

    p = _params(params, overrides)
    try:
        version = run(p)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except Exception as exc:
        _tracking_failed("register", exc)
    from mint_iqa.io import write_text

    write_text(
        p.registry.record,
        json.dumps(
            {"model": p.registry.model_name, "version": version.version, "run_id": version.run_id}, indent=2
        )
        + "\n",
    )
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
    except Exception as exc:
        _tracking_failed("promote", exc)
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


def quick_exit() -> None:
    """Called by the commands that only read a model and write one output (score, rank, explain): once they
    are done, the process ends without tearing down torch and its thread pools one object at a time, which
    costs about a second of every call (bench/startup.py). Their outputs are already whole on disk."""
    global _QUICK_EXIT
    _QUICK_EXIT = True


_QUICK_EXIT = False


def main(prog_name: str | None = None) -> None:  # pragma: no cover - console entry point
    try:
        app(prog_name=prog_name)
    except SystemExit as done:
        if not _QUICK_EXIT:
            raise
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
