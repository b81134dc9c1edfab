"""What every `mint-iqa` command shares: the app and its sub-apps, one-line errors, parameter loading,
model loading, and the quick exit of the commands that only read a model and write one output."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from mint_iqa.config import Params, load_params


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


def _tracked_step(step: str, run: Any, p: Params) -> Any:
    """A registry step's result: bad input is a one-line error (exit 2), anything the tracking server did
    not complete is `_tracking_failed` (exit 1)."""
    try:
        return run(p)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except Exception as exc:
        _tracking_failed(step, exc)


def _tracking_failed(step: str, exc: BaseException) -> None:
    """One line for a registry step that the MLflow tracking server did not complete (exit 1)."""
    from mint_iqa.tracking import tracking_uri

    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    _fail(
        f"{step}: the tracking server {tracking_uri()} did not complete the request; nothing local was "
        f"changed, rerun when it is reachable ({type(exc).__name__}: {reason})",
        code=1,
    )


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
    from mint_iqa.inference.api import load

    try:
        return load(model, device=device, num_beams=num_beams)
    except (ValueError, FileNotFoundError, OSError) as exc:
        _fail(str(exc).splitlines()[0])
    except Exception as exc:
        _fail(f"{model}: {str(exc).splitlines()[0]}")


def _list_failures(images: Any, statuses: Any, out: Path | None, shown: int = 10) -> None:
    """The first `shown` failed rows on stderr, each once (a status that names its item is not prefixed
    again), then how many more there are and where to find them."""
    from mint_iqa.inference.predict import escape_controls

    rows = list(zip(images, statuses))
    for image, status in rows[:shown]:
        line = status if str(status).startswith(str(image)) else f"{image}: {status}"
        console.print(f"  failed {escape_controls(line)}", markup=False, highlight=False, style="yellow")
    if len(rows) > shown:
        where = f" (the status column of {out})" if out is not None else ""
        console.print(f"  ... and {len(rows) - shown} more{where}", highlight=False)


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
