"""`estimate energy` (also `estimate MODEL --hw NAME`) and `estimate layers`: one model, one profile."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from estimator.cli._app import BatchOpt, ModelArg, ShapeOpt, _clean_errors, app, parse_shapes
from estimator.errors import InvalidDimensionError
from estimator.fileio import check_model_file


class By(str, Enum):
    """Granularity of the layer table."""

    node = "node"
    kernel = "kernel"
    op = "op"
    module = "module"


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
        By,
        typer.Option(
            "--by",
            help="One row per node, per fused kernel, per op type, or per module (from exporter node names "
            "such as /layer1/layer1.0/conv1/Conv).",
        ),
    ] = By.node,
    depth: Annotated[
        int, typer.Option("--depth", min=1, help="Module depth for --by module: 1 = layer1, 2 = layer1.0.")
    ] = 2,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    strict: Annotated[bool, typer.Option("--strict", help="Fail when any node cannot be costed.")] = False,
) -> None:
    """Per-layer MACs, FLOPs, parameters and bytes of MODEL, and the totals."""
    check_model_file(model)  # before the heavy imports: a wrong path is answered at once
    from estimator.cli.format import (
        LAYER_COLUMNS,
        MODULE_COLUMNS,
        layer_rows,
        render_csv,
        render_json,
        render_table,
        si,
    )
    from estimator.cost.kernels import fuse_kernels
    from estimator.cost.nodes import count_costs
    from estimator.graph.load import load_graph

    graph = load_graph(model, batch=batch, shapes=parse_shapes(shape))
    costs = count_costs(graph, strict=strict)
    kernels = fuse_kernels(costs)
    rows = layer_rows(costs, kernels, by.value, depth)
    columns = MODULE_COLUMNS if by is By.module else LAYER_COLUMNS
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
                    **({"depth": depth} if by is By.module else {}),
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
        typer.echo(render_csv(rows, columns), nl=False)
        return
    readable = {k: (f"{si(v)} ({v:,})" if isinstance(v, int) and v >= 1000 else v) for k, v in totals.items()}
    note = ""
    if costs.not_costed:
        missing = ", ".join(f"{op} x{c}" for op, c in sorted(costs.not_costed.items()))
        note = f"NOT COSTED (totals exclude them): {missing}"
    typer.echo(render_table(rows, readable, note, columns=columns))


class DType(str, Enum):
    """Element type to run float kernels in."""

    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
    int8 = "int8"


def _runtime_help() -> str:
    """``--runtime`` help listing every runtime with its one-line meaning."""
    from estimator.energy.runtimes import RUNTIMES

    listed = "; ".join(
        f"{name}: {_RUNTIME_MEANING.get(name, r.source.split(';')[0])}" for name, r in RUNTIMES.items()
    )
    return f"Runtime (default: the profile's). {listed}."


#: One line per runtime for help texts (the runtime table's ``source`` says where each fact comes from).
_RUNTIME_MEANING = {
    "tflite": "TensorFlow Lite, 1 CPU thread",
    "onnxruntime": "ONNX Runtime, 1 CPU thread, fused graph",
    "torchscript-mobile": "PyTorch Mobile (TorchScript), 1 CPU thread",
    "pytorch-cpu": "PyTorch eager on every CPU core, op by op",
    "onnxruntime-cpu": "ONNX Runtime on every CPU core, fused graph",
    "pytorch-cuda": "PyTorch eager on a GPU, one launch per op",
    "pytorch-cuda-sdpa": "PyTorch 2.x eager on a GPU, one fused kernel per attention (SDPA), else per op",
    "onnxruntime-cuda": "ONNX Runtime CUDA provider, fused graph",
    "tensorrt": "TensorRT engine, layer and tensor fusion",
    "tensorflow-gpu": "TensorFlow/Keras graph mode on a GPU (no XLA, Keras 2)",
    "tensorflow-xla-gpu": "Keras 3 / TensorFlow >= 2.16 on a GPU (XLA-compiled)",
    "hf-pipeline": "a transformers pipeline call at batch 1 incl. pre/post-processing",
    "vllm": "vLLM serving engine on a GPU",
}

HwOpt = Annotated[
    str, typer.Option("--hw", help="Hardware profile name (see `estimate hardware list`) or .toml path.")
]
RuntimeOpt = Annotated[str | None, typer.Option("--runtime", help=_runtime_help(), show_default=False)]
ModelsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        help="Folder of trained models (default: $ESTIMATOR_MODELS_DIR, else the models shipped with the package).",
        show_default=False,
    ),
]
GridOpt = Annotated[
    str | None,
    typer.Option(
        "--grid",
        help="Grid region (code or name, e.g. de, France, world) for gCO2e: annual 2023 averages shipped with the "
        "package (Ember / Energy Institute via Our World in Data).",
        show_default=False,
    ),
]
GridGramsOpt = Annotated[
    float | None,
    typer.Option(
        "--grid-gco2-per-kwh", help="Grid carbon intensity given directly, gCO2e per kWh.", show_default=False
    ),
]
PriceOpt = Annotated[
    float | None,
    typer.Option(
        "--price-per-kwh",
        help="Electricity price per kWh, for the cost of a million inferences.",
        show_default=False,
    ),
]
CurrencyOpt = Annotated[
    str, typer.Option("--currency", help="Label of the price's currency (no conversion).")
]
PueOpt = Annotated[
    float,
    typer.Option(
        "--pue",
        help="Power usage effectiveness (facility / IT energy, >= 1) applied to carbon and cost; 1.0 counts only "
        "the estimate's boundary.",
    ),
]
PriorOpt = Annotated[
    str | None,
    typer.Option(
        "--prior",
        help="Physics prior: v1 (energy-roofline v1) or v2 (runtime-aware GPU prior; the default on GPU "
        "profiles, equal to v1 on CPUs and SoCs).",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Emit the estimator.estimate/1 JSON schema.", metavar="")
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail when any node cannot be costed.", metavar="")]


def carbon_of(result, grid, grid_gco2, price, currency, pue):
    """The footprint of ``result`` when any carbon or cost option was given, else None."""
    if grid is None and grid_gco2 is None and price is None and pue == 1.0:
        return None
    from estimator.report.carbon import footprint

    return footprint(
        result.joules,
        result.interval,
        result.boundary,
        grid=grid,
        gco2e_per_kwh=grid_gco2,
        price_per_kwh=price,
        currency=currency,
        pue=pue,
    )


@app.command()
@_clean_errors
def energy(
    model: ModelArg,
    hw: HwOpt,
    batch: BatchOpt = None,
    shape: ShapeOpt = None,
    dtype: Annotated[DType | None, typer.Option("--dtype", help="Run float kernels in this type.")] = None,
    runtime: RuntimeOpt = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (default: the runtime's).")
    ] = None,
    json_out: JsonOpt = False,
    layers_n: Annotated[int, typer.Option("--layers", help="How many top layers by energy to list.")] = 10,
    strict: StrictOpt = False,
    prior: PriorOpt = None,
    models_dir: ModelsDirOpt = None,
    grid: GridOpt = None,
    grid_gco2: GridGramsOpt = None,
    price: PriceOpt = None,
    currency: CurrencyOpt = "",
    pue: PueOpt = 1.0,
) -> None:
    """Joules per inference of MODEL on a hardware profile, with carbon and cost on request (`estimate MODEL --hw X`).

    With --grid (or --grid-gco2-per-kwh) and --price-per-kwh it adds gCO2e and cost per inference and per million.
    """
    check_model_file(model)  # before the heavy imports: a wrong path is answered at once
    from estimator.api import Estimator
    from estimator.cli.format import render_estimate, render_json

    if threads is not None and threads < 1:
        raise InvalidDimensionError(f"--threads must be a positive integer, got {threads}")
    est = Estimator(hw, runtime=runtime, models_dir=models_dir, prior=prior)
    result = est.estimate(
        model,
        batch=batch,
        shapes=parse_shapes(shape),
        dtype=dtype.value if dtype else None,
        threads=threads,
        strict=strict,
    )
    carbon = carbon_of(result, grid, grid_gco2, price, currency, pue)
    if json_out:
        payload = result.to_json(top=layers_n) | {"model_path": str(model)}
        if carbon is not None:
            payload["footprint"] = carbon.to_json()
        typer.echo(render_json(payload))
        return
    typer.echo(render_estimate(result, est.profile.display_name, str(model), layers_n, carbon))
