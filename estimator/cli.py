"""The ``estimate`` command line: a thin typer app over the library.

``estimate MODEL.onnx --hw NAME`` is shorthand for ``estimate energy MODEL.onnx --hw NAME``. Every
:class:`~estimator.errors.EstimatorError` becomes one line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from estimator.errors import EstimatorError, InvalidDimensionError

app = typer.Typer(
    name="estimate",
    help="Joules per inference of an ONNX network on a given hardware, estimated without the hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def _root() -> None:
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
            typer.echo(f"estimate: error: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


class By(str, Enum):
    """Granularity of the layer table."""

    node = "node"
    kernel = "kernel"
    op = "op"


class Format(str, Enum):
    """Output format of tables."""

    table = "table"
    json = "json"
    csv = "csv"


def parse_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=1x3x224x224`` strings into ``{NAME: (1, 3, 224, 224)}``; InvalidDimensionError if malformed."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values or []:
        name, sep, dims = value.rpartition("=")
        try:
            parsed = tuple(int(d) for d in dims.lower().replace(",", "x").split("x")) if sep and name else None
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
ModelArg = Annotated[Path, typer.Argument(help="Path of the .onnx model.", show_default=False)]


@app.command()
@_clean_errors
def layers(
    model: ModelArg,
    batch: BatchOpt = None,
    shape: ShapeOpt = None,
    by: Annotated[By, typer.Option("--by", help="One row per node, per fused kernel, or per op type.")] = By.node,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    strict: Annotated[bool, typer.Option("--strict", help="Fail when any node cannot be costed.")] = False,
) -> None:
    """Per-layer MACs, FLOPs, parameters and bytes of MODEL, and the totals."""
    from estimator.costs import count_costs
    from estimator.graph import load_graph
    from estimator.kernels import fuse_kernels
    from estimator.report_format import layer_rows, render_csv, render_json, render_table, si

    graph = load_graph(model, batch=batch, shapes=parse_shapes(shape))
    costs = count_costs(graph, strict=strict)
    kernels = fuse_kernels(costs)
    rows = layer_rows(costs, kernels, by.value)
    t = costs.totals
    kernel_bytes = sum(k.bytes for k in kernels.kernels)
    totals = {
        "MACs": t.macs,
        "FLOPs": t.flops,
        "parameters": t.params,
        "parameter bytes": t.param_bytes,
        "weight bytes read": t.weight_bytes,
        "activation bytes read": t.activation_read_bytes,
        "bytes written": t.write_bytes,
        "kernel launches": kernels.launches,
        "bytes moved (fused)": kernel_bytes,
        "nodes": len(costs.nodes),
        "nodes costed": f"{costs.coverage:.1%}",
    }
    if fmt is Format.json:
        typer.echo(
            render_json(
                {
                    "model": str(model),
                    "by": by.value,
                    "rows": rows,
                    "totals": {k.replace(" ", "_"): v for k, v in totals.items() if k != "nodes costed"}
                    | {"share_of_nodes_costed": costs.coverage},
                    "not_costed": dict(costs.not_costed),
                    "flags": dict(costs.flags),
                }
            )
        )
        return
    if fmt is Format.csv:
        typer.echo(render_csv(rows), nl=False)
        return
    readable = {k: (f"{si(v)} ({v:,})" if isinstance(v, int) and v >= 1000 else v) for k, v in totals.items()}
    note = ""
    if costs.not_costed:
        missing = ", ".join(f"{op} x{c}" for op, c in sorted(costs.not_costed.items()))
        note = f"NOT COSTED (totals exclude them): {missing}"
    typer.echo(render_table(rows, readable, note))


def run(argv: list[str]) -> int:
    """Run the CLI on ``argv`` (without the program name); returns the exit code."""
    commands = {c.name or c.callback.__name__ for c in app.registered_commands} | {
        g.name for g in app.registered_groups
    }
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        argv = ["energy", *argv]
    try:
        app(args=argv, prog_name="estimate", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
