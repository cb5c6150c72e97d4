"""The typer app every command group registers on, the one-line error wrapper, and options shared by commands."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from estimator.errors import EstimatorError, InvalidDimensionError
from estimator.fileio import check_input_file

app = typer.Typer(
    name="estimate",
    help="Joules per inference of an ONNX network on a given hardware, estimated without the hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from estimator import __version__

        typer.echo(f"estimate (onnx-energy-estimator) {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
            metavar="",
        ),
    ] = False,
) -> None:
    """Joules per inference of an ONNX network on a given hardware, estimated without the hardware.

    `estimate MODEL.onnx --hw NAME` is shorthand for `estimate energy MODEL.onnx --hw NAME`.
    """


#: Exit code for bad input (what is wrong is said in one line).
EXIT_BAD_INPUT = 2


def _clean_errors(fn):
    """Turn an EstimatorError raised by a command into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EstimatorError as exc:
            typer.echo(f"estimate: error: {one_line(exc)}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a library's message may carry line breaks, e.g. pandas' parser)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def parse_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=1x3x224x224`` strings into ``{NAME: (1, 3, 224, 224)}``; InvalidDimensionError if malformed."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values or []:
        name, sep, dims = value.rpartition("=")
        try:
            parsed = (
                tuple(int(d) for d in dims.lower().replace(",", "x").split("x")) if sep and name else None
            )
        except ValueError:
            parsed = None
        if not parsed:
            raise InvalidDimensionError(
                f"--shape '{value}' is not NAME=DIMS; write e.g. --shape input=1x3x224x224 or --shape seq_len=128"
            )
        shapes[name] = parsed
    return shapes


ShapeOpt = Annotated[
    list[str] | None,
    typer.Option("--shape", help="Bind an input's shape (NAME=1x3x224x224) or a symbolic dim (NAME=128)."),
]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Batch size bound to symbolic leading dims.")]


def _checked_model(path: Path) -> Path:
    """The model path, checked (exists, a regular file, not too large) before any heavy import."""
    return check_input_file(path, what="model", hint="give the path of an .onnx model file")


def _checked_tables(paths: list[Path]) -> list[Path]:
    """Measurement table paths, each checked before anything is imported or trained."""
    hint = "give the path of a .csv or .csv.gz measurement table"
    return [check_input_file(p, what="measurement table", hint=hint) for p in paths]


ModelArg = Annotated[
    Path, typer.Argument(help="Path of the .onnx model.", show_default=False, callback=_checked_model)
]
TablesArg = Annotated[
    list[Path],
    typer.Argument(
        help="Measurement tables (.csv / .csv.gz) in the project schema.", callback=_checked_tables
    ),
]
