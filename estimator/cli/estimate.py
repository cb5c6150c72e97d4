"""`estimate energy` (also `estimate MODEL --hw NAME`) and `estimate layers`: one model, one profile."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from estimator.cli._app import BatchOpt, ModelArg, ShapeOpt, _clean_errors, app, parse_shapes
from estimator.errors import InvalidDimensionError


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
        typer.echo(render_json(result.to_json(top=layers_n) | {"model_path": str(model)}))
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
        f"latency    {si(result.seconds, 's')}"
        + (
            ""
            if result.seconds <= result.prior.seconds
            else "  (at least joules / TDP; the prior's is shorter)"
        ),
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
            share = layer.joules / result.joules if result.joules else 0.0
            lines.append(
                f"  {share:6.1%}  {si(layer.joules, 'J'):>8}  {si(layer.seconds, 's'):>8}  {layer.bound:<8} "
                f"{layer.level:<5} {layer.name} ({', '.join(layer.nodes[:3])}{', ...' if len(layer.nodes) > 3 else ''})"
            )
    typer.echo("\n".join(lines))
