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
ModelArg = Annotated[Path, typer.Argument(help="Path of the .onnx model.", show_default=False)]


@app.command()
@_clean_errors
def layers(
    model: ModelArg,
    batch: BatchOpt = None,
    shape: ShapeOpt = None,
    by: Annotated[
        By, typer.Option("--by", help="One row per node, per fused kernel, or per op type.")
    ] = By.node,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    strict: Annotated[bool, typer.Option("--strict", help="Fail when any node cannot be costed.")] = False,
) -> None:
    """Per-layer MACs, FLOPs, parameters and bytes of MODEL, and the totals."""
    from estimator.cli.format import layer_rows, render_csv, render_json, render_table, si
    from estimator.cost.kernels import fuse_kernels
    from estimator.cost.nodes import count_costs
    from estimator.graph.load import load_graph

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


class DType(str, Enum):
    """Element type to run float kernels in."""

    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
    int8 = "int8"


@app.command()
@_clean_errors
def energy(
    model: ModelArg,
    hw: Annotated[str, typer.Option("--hw", help="Hardware profile name or path of a profile .toml file.")],
    batch: BatchOpt = None,
    shape: ShapeOpt = None,
    dtype: Annotated[DType | None, typer.Option("--dtype", help="Run float kernels in this type.")] = None,
    runtime: Annotated[
        str | None, typer.Option("--runtime", help="Runtime (default: the profile's).", show_default=False)
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (default: the runtime's).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Emit the estimator.estimate/1 JSON schema.")
    ] = False,
    layers_n: Annotated[int, typer.Option("--layers", help="How many top layers by energy to list.")] = 10,
    strict: Annotated[bool, typer.Option("--strict", help="Fail when any node cannot be costed.")] = False,
) -> None:
    """Joules per inference of MODEL on a hardware profile (also: `estimate MODEL --hw NAME`)."""
    from estimator.api import Estimator
    from estimator.cli.format import render_json, si

    if threads is not None and threads < 1:
        raise InvalidDimensionError(f"--threads must be a positive integer, got {threads}")
    est = Estimator(hw, runtime=runtime)
    result = est.estimate(
        model,
        batch=batch,
        shapes=parse_shapes(shape),
        dtype=dtype.value if dtype else None,
        threads=threads,
        strict=strict,
    )
    if json_out:
        typer.echo(render_json(result.to_json(top=layers_n) | {"model": str(model)}))
        return
    lo, hi = result.interval
    lines = [
        f"model      {model}  (batch {result.batch}, {result.dtype})",
        f"hardware   {est.profile.display_name} [{result.hardware}], runtime {result.runtime}",
        f"boundary   {result.boundary}",
        f"method     {result.method}" + ("" if result.calibrated else "  - not calibrated on measurements"),
        "",
        f"energy     {si(result.joules, 'J')} per inference, {si(result.joules_per_sample, 'J')} per sample",
        f"interval   {si(lo, 'J')} .. {si(hi, 'J')} ({result.interval_level:.0%})"
        + (
            "" if lo <= result.joules <= hi else "  - the estimate is biased: measurements fell in this range"
        ),
        f"           {result.interval_basis}",
        f"latency    {si(result.seconds, 's')}",
        f"power      {result.avg_power_w:.1f} W average"
        + (" (TDP-limited)" if result.prior.throttled else ""),
        f"work       {si(result.costs.totals.macs)}MACs, {si(result.costs.totals.params)} parameters",
        "baselines  " + ", ".join(f"{k} {si(v, 'J')}" for k, v in result.baselines.items()),
    ]
    if result.not_costed:
        missing = ", ".join(f"{op} x{c}" for op, c in sorted(result.not_costed.items()))
        lines.append(f"WARNING    not costed, so the energy is a lower bound: {missing}")
    if result.extrapolated:
        shown = ", ".join(result.extrapolated[:6]) + (", ..." if len(result.extrapolated) > 6 else "")
        lines.append(
            f"WARNING    outside the trained model's data ({len(result.extrapolated)} features: {shown}); "
            f"the calibrated answer is extrapolated - compare with the prior ({si(result.prior.joules, 'J')})"
        )
    if layers_n > 0:
        lines += ["", f"top {min(layers_n, len(result.layers))} kernels by energy:"]
        lines.append(f"  {'share':>6}  {'energy':>8}  {'time':>8}  {'bound':<8} {'level':<5} kernel")
        for layer in result.layers[:layers_n]:
            share = layer.joules / result.prior.joules if result.prior.joules else 0.0
            lines.append(
                f"  {share:6.1%}  {si(layer.joules, 'J'):>8}  {si(layer.seconds, 's'):>8}  {layer.bound:<8} "
                f"{layer.level:<5} {layer.name} ({', '.join(layer.nodes[:3])}{', ...' if len(layer.nodes) > 3 else ''})"
            )
    typer.echo("\n".join(lines))


hardware_app = typer.Typer(help="Hardware profiles: list and show.", no_args_is_help=True)
app.add_typer(hardware_app, name="hardware")


@hardware_app.command("list")
@_clean_errors
def hardware_list() -> None:
    """List the shipped hardware profiles."""
    from estimator.energy.hardware import list_profiles, load_profile

    for name in list_profiles():
        p = load_profile(name)
        typer.echo(f"{name:16s} {p.kind:4s} {p.display_name:44s} {p.measurement_boundary}")


@hardware_app.command("show")
@_clean_errors
def hardware_show(name: Annotated[str, typer.Argument(help="Profile name or path.")]) -> None:
    """Show one profile: every value with its source and confidence."""
    from estimator.energy.hardware import load_profile

    p = load_profile(name)
    typer.echo(f"{p.name}: {p.display_name} ({p.kind}, {p.architecture})")
    typer.echo(
        f"boundary {p.measurement_boundary}; default runtime {p.default_runtime}; file {p.source_path}"
    )
    for key, c in sorted(p.sources().items()):
        typer.echo(f"  {key:42s} {c.value:<12.4g} {c.confidence:9s} [{c.source_id}] {c.note}")


data_app = typer.Typer(help="Measurement tables: import shared datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("import")
@_clean_errors
def data_import(
    source: Annotated[str, typer.Argument(help="hwnasbench360 | getzner | mlperf_power | mlenergy")],
    path: Annotated[Path, typer.Argument(help="The raw dataset file or folder.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Table to write (.csv or .csv.gz).")
    ] = None,
) -> None:
    """Turn a raw measured-energy dataset into a table of the project's measurement schema."""
    from estimator.data.importers import TABLE_KINDS, import_source
    from estimator.data.measurements import write_measurements

    frame = import_source(source, path)
    out = output or Path("data") / f"{source}.csv.gz"
    write_measurements(frame, out, table=TABLE_KINDS[source])
    for key, value in frame.attrs.get("import_log", {}).items():
        typer.echo(f"  {key}: {value}")
    typer.echo(f"wrote {len(frame)} rows to {out}")


@app.command()
@_clean_errors
def measure(
    model: ModelArg,
    device: Annotated[
        str, typer.Option("--device", help="cpu (RAPL counter) or cuda[:N] (NVML counter).")
    ] = "cpu",
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes, e.g. 1 or 1,8,32.")] = "1",
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="Precision label (default: the weights').")
    ] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="Runtime that runs the model.")] = "onnxruntime",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Measurement table to append to.")
    ] = None,
    hardware: Annotated[str | None, typer.Option("--hardware", help="Profile name for the rows.")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Measured windows per batch (>= 3).")] = 3,
    window_s: Annotated[float, typer.Option("--window-s", help="Least window length, s (>= 1).")] = 1.0,
    idle_subtracted: Annotated[
        bool, typer.Option("--idle-subtracted", help="Report energy above idle power.")
    ] = False,
) -> None:
    """Measure the energy of MODEL with the device's energy counter (never sampled power)."""
    from estimator.data.measure import measure_command

    rows = measure_command(
        model,
        device=device,
        batch=batch,
        dtype=dtype,
        runtime=runtime,
        output=output,
        hardware=hardware,
        repeats=repeats,
        window_s=window_s,
        idle_subtracted=idle_subtracted,
        progress=lambda line: typer.echo(line, err=True),
    )
    for row in rows:
        typer.echo(
            f"batch {row['batch']}: {row['joules_per_inference']:.6g} J/inference, "
            f"{row['latency_s'] * 1e3:.4g} ms, spread {row['spread_rel']:.2%} over {row['repeats']} repeats"
        )
    if output is not None:
        typer.echo(f"appended {len(rows)} rows to {output}")


class Granularity(str, Enum):
    """How a model learns: per network, or per kernel (trained on single layers, summed)."""

    graph = "graph"
    kernel = "kernel"


@app.command()
@_clean_errors
def train(
    tables: Annotated[
        list[Path], typer.Argument(help="Measurement tables (.csv / .csv.gz) in the project schema.")
    ],
    hw: Annotated[str, typer.Option("--hw", help="Hardware profile the rows were measured on.")],
    runtime: Annotated[
        str | None, typer.Option("--runtime", help="Only this runtime (default: each one).")
    ] = None,
    granularity: Annotated[
        Granularity, typer.Option("--granularity", help="graph or kernel.")
    ] = Granularity.graph,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the old model even if it scores better.")
    ] = False,
    models_dir: Annotated[Path | None, typer.Option("--models-dir", help="Where models live.")] = None,
    trees: Annotated[int, typer.Option("--trees", help="Boosting rounds of the xgboost model.", min=1)] = 600,
) -> None:
    """Train the residual model for HW (per runtime) on measurements; writes atomically to trained_models/."""
    from estimator.learn.model_store import train_and_store

    lines = train_and_store(
        tables,
        hw,
        runtime=runtime,
        granularity=granularity.value,
        force=force,
        models_dir=models_dir,
        params={"n_estimators": trees},
        progress=lambda line: typer.echo(line, err=True),
    )
    for line in lines:
        typer.echo(line)


@app.command()
@_clean_errors
def evaluate(
    hw: Annotated[str | None, typer.Option("--hw", help="Only this hardware.")] = None,
    runtime: Annotated[str | None, typer.Option("--runtime", help="Only this runtime.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder of the report.")] = Path("docs"),
) -> None:
    """Run EVALUATION.md's protocol on the committed measurements; writes Markdown, JSON and a plot."""
    from estimator.learn.evaluation import run_evaluation, write_report

    report = run_evaluation(hw, runtime, progress=lambda line: typer.echo(line, err=True))
    for path in write_report(report, out):
        typer.echo(f"wrote {path}")


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
