"""`mint-iqa`: one command tree over the library. Each command parses options, calls one library
function and reports; DVC stages (`python -m mint_iqa <step>`) and Prefect tasks call the same functions.

Exit codes: 0 success; 1 the step ran and found a problem (failed validation, failed items);
2 bad usage or input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mint_iqa.config import Params, load_params

app = typer.Typer(help="Explainable, multi-perspective quality assessment for AI-generated images.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Raw data: materialise, inspect.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)

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
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


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


@app.command()
def summary(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """What the pipeline has produced so far, and where."""
    from mint_iqa.summary import summarise

    print(summarise(_params(params, overrides)))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
