"""`mint-iqa` commands for people with images: score, rank, explain, report, serve, use-model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mint_iqa.cli.common import (
    BeamsOpt,
    DeviceOpt,
    ModelOpt,
    _fail,
    _list_failures,
    _load,
    app,
    console,
    quick_exit,
)
from mint_iqa.config import BATCH_SIZE, DIMENSIONS


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
    words: Annotated[
        bool, typer.Option("--words", help="Add each prompt word's support and the words the image lacks.")
    ] = False,
) -> None:
    """Score images against their prompts; one output row per input, in order.

    Either IMAGES with --prompt, or --manifest (image paths relative to the manifest's folder, never
    outside it). A bad item gets the reason in `status` and the others are still scored.
    Exit codes: 0 all scored, 1 some rows failed (output written), 2 bad usage or input (nothing written).
    """
    from mint_iqa.inference.predict import check_output, images_table, read_manifest, score_table, write_table
    from mint_iqa.maps import check_maps_dir, map_names

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
    loaded = _can(_load(model, device, num_beams), maps=maps is not None, words=words)
    result = score_table(
        loaded, table, explain=explain, scale=scale, batch_size=batch_size, maps=maps, words=words
    )
    write_table(result, out)
    failed = result[result["status"] != "ok"]
    _list_failures(failed["image"], failed["status"], out)
    console.print(f"score: {len(result)} rows -> {out} ({len(failed)} failed)")
    raise typer.Exit(1 if len(failed) else 0)


def _can(loaded: Any, maps: bool, words: bool) -> Any:
    """The loaded model, when it has the heads `--maps` and `--words` read (else exit 2, nothing done)."""
    from mint_iqa.inference.scoring import NO_MAPS, NO_WORDS

    if maps and not loaded.scorer.has_maps:
        _fail(f"--maps: {NO_MAPS}")
    if words and not loaded.scorer.has_words:
        _fail(f"--words: {NO_WORDS}")
    return loaded


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

    from mint_iqa.inference.api import RANK_KEYS
    from mint_iqa.inference.predict import check_output, images_table, write_table

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

    from mint_iqa.inference.serving.server import build_app

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
    from mint_iqa.inference.api import default_model, set_default_model, user_default_file

    try:
        if source is None:
            print(default_model())
            return
        recorded = set_default_model(source)
    except (ValueError, FileNotFoundError, OSError) as exc:
        _fail(str(exc))
    console.print(f"use-model: default model {recorded} (recorded in {user_default_file()})")
