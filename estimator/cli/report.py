"""`estimate report` (one self-contained HTML page) and `estimate plot layers|modules|roofline|batch|pareto`
(one picture, SVG or PNG)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from estimator.cli._app import BatchOpt, ModelArg, ShapeOpt, _clean_errors, app, parse_shapes
from estimator.cli.estimate import (
    CurrencyOpt,
    DType,
    GridGramsOpt,
    GridOpt,
    HwOpt,
    ModelsDirOpt,
    PriceOpt,
    PriorOpt,
    PueOpt,
    RuntimeOpt,
    StrictOpt,
    carbon_of,
)
from estimator.errors import DataError, InvalidDimensionError

plot_app = typer.Typer(
    help="Pictures as SVG or PNG (need matplotlib, the 'plot' extra): energy by kernel or module, roofline, "
    "batch, Pareto.",
    no_args_is_help=True,
)
app.add_typer(plot_app, name="plot")

OutOpt = Annotated[
    Path, typer.Option("--output", "-o", help="File to write (.svg or .png).", show_default=False)
]
DTypeOpt = Annotated[DType | None, typer.Option("--dtype", help="Run float kernels in this type.")]
DepthOpt = Annotated[int, typer.Option("--depth", min=1, help="Module depth: 1 = layer1, 2 = layer1.0.")]
BatchesOpt = Annotated[
    str,
    typer.Option("--batches", help="Batch sizes of the batch sweep, comma-separated ('' for none)."),
]


def parse_batches(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; InvalidDimensionError on anything else."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise InvalidDimensionError(
                f"--batches takes positive integers separated by commas, got '{part}'"
            )
        out.append(int(part))
    return sorted(set(out))


def _estimate(model, hw, runtime, models_dir, batch, shape, dtype, strict, prior=None):
    from estimator.api import Estimator

    est = Estimator(hw, runtime=runtime, models_dir=models_dir, prior=prior)
    element = dtype.value if dtype else None
    kernels = est.kernels(model, batch=batch, shapes=parse_shapes(shape), strict=strict)
    return est, kernels, est.estimate_kernels(kernels, dtype=element)


def _sweep(est, model, batches, shape, dtype, strict):
    """Batch points, or (None, why there are none)."""
    from estimator.report.plots import batch_sweep

    if len(batches) < 2:
        return None, "No batch sweep was asked for (--batches)."
    points = batch_sweep(
        est, model, batches, shapes=parse_shapes(shape), dtype=dtype.value if dtype else None, strict=strict
    )
    if len({p.batch for p in points}) < len(points) or [p.batch for p in points] != batches:
        return None, (
            f"The model's batch size is fixed at {points[0].batch}; export it with a symbolic batch "
            "dimension to see energy against batch size."
        )
    return points, ""


def _written(path: Path) -> None:
    typer.echo(f"wrote {path}")


@app.command()
@_clean_errors
def report(
    model: ModelArg,
    hw: HwOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.", show_default=False)],
    batch: BatchOpt = None,
    shape: ShapeOpt = None,
    dtype: DTypeOpt = None,
    runtime: RuntimeOpt = None,
    models_dir: ModelsDirOpt = None,
    batches: BatchesOpt = "1,2,4,8,16,32,64",
    depth: DepthOpt = 2,
    strict: StrictOpt = False,
    prior: PriorOpt = None,
    grid: GridOpt = None,
    grid_gco2: GridGramsOpt = None,
    price: PriceOpt = None,
    currency: CurrencyOpt = "",
    pue: PueOpt = 1.0,
) -> None:
    """One self-contained HTML page: the numbers, the boundary, the interval, pictures and the layer table."""
    from estimator import __version__
    from estimator.fileio import atomic_write_bytes
    from estimator.report.html import render_report
    from estimator.report.plots import PlotError, _pyplot

    if not output.parent.is_dir():
        raise InvalidDimensionError(
            f"folder {output.parent} does not exist; create it or choose another --output"
        )
    est, kernels, result = _estimate(model, hw, runtime, models_dir, batch, shape, dtype, strict, prior)
    try:
        _pyplot()
        pictures = True
    except PlotError as exc:
        typer.echo(f"estimate: warning: {exc}; the report has no pictures", err=True)
        pictures = False
    points, why = _sweep(est, model, parse_batches(batches), shape, dtype, strict) if pictures else (None, "")
    page = render_report(
        result,
        kernels,
        est.profile,
        Path(model).name,
        dtype=dtype.value if dtype else None,
        footprint=carbon_of(result, grid, grid_gco2, price, currency, pue),
        batch_points=points,
        batch_note=why,
        pictures=pictures,
        depth=depth,
        version=__version__,
    )
    _written(atomic_write_bytes(output, page.encode("utf-8")))


@plot_app.command("layers")
@_clean_errors
def plot_layers(
    model: ModelArg,
    hw: HwOpt,
    output: OutOpt,
    batch: BatchOpt = None,
    shape: ShapeOpt = None,
    dtype: DTypeOpt = None,
    runtime: RuntimeOpt = None,
    models_dir: ModelsDirOpt = None,
    by_module: Annotated[bool, typer.Option("--by-module", help="One bar per module.", metavar="")] = False,
    depth: DepthOpt = 2,
    top: Annotated[int, typer.Option("--top", min=1, help="Bars before 'others'.")] = 15,
) -> None:
    """Energy per kernel (or per module) with its share, split by what limits it."""
    from estimator.report.plots import energy_bars_figure, save_figure

    _, _, result = _estimate(model, hw, runtime, models_dir, batch, shape, dtype, False)
    fig = energy_bars_figure(result, top=top, by="module" if by_module else "kernel", depth=depth)
    _written(save_figure(fig, output))


@plot_app.command("roofline")
@_clean_errors
def plot_roofline(
    model: ModelArg,
    hw: HwOpt,
    output: OutOpt,
    batch: BatchOpt = None,
    shape: ShapeOpt = None,
    dtype: DTypeOpt = None,
    runtime: RuntimeOpt = None,
    models_dir: ModelsDirOpt = None,
) -> None:
    """The device's roofline with each kernel placed on it (compute, memory or dispatch bound)."""
    from estimator.report.plots import save_figure
    from estimator.report.roofline import roofline_figure

    est, kernels, result = _estimate(model, hw, runtime, models_dir, batch, shape, dtype, False)
    fig = roofline_figure(result, kernels, est.profile, dtype.value if dtype else None)
    _written(save_figure(fig, output))


@plot_app.command("batch")
@_clean_errors
def plot_batch(
    model: ModelArg,
    hw: HwOpt,
    output: OutOpt,
    batches: BatchesOpt = "1,2,4,8,16,32,64",
    shape: ShapeOpt = None,
    dtype: DTypeOpt = None,
    runtime: RuntimeOpt = None,
    models_dir: ModelsDirOpt = None,
) -> None:
    """Energy per sample against batch size, with the interval."""
    from estimator.api import Estimator
    from estimator.errors import ShapeError
    from estimator.report.plots import batch_figure, save_figure

    est = Estimator(hw, runtime=runtime, models_dir=models_dir)
    sizes = parse_batches(batches)
    if len(sizes) < 2:
        raise InvalidDimensionError("--batches needs at least two batch sizes, e.g. --batches 1,8,64")
    points, why = _sweep(est, model, sizes, shape, dtype, False)
    if points is None:
        raise ShapeError(why)
    fig = batch_figure(points, label=f"{Path(model).name} on {est.profile.name}")
    _written(save_figure(fig, output))


def read_metrics(path: Path, column: str) -> dict[str, float]:
    """``model -> metric`` from a CSV with a ``model`` column (file name or stem) and ``column``."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise DataError(f"cannot read --metrics file {path}: {exc.strerror}") from None
    if not rows or "model" not in rows[0] or column not in rows[0]:
        raise DataError(f"{path} needs a header with 'model' and '{column}' columns")
    out = {}
    for i, row in enumerate(rows, start=2):
        try:
            out[Path(row["model"]).stem] = float(row[column])
        except ValueError:
            raise DataError(f"{path}:{i}: column '{column}' is not a number: {row[column]!r}") from None
    return out


@plot_app.command("pareto")
@_clean_errors
def plot_pareto(
    models: Annotated[list[Path], typer.Argument(help="Paths of the .onnx models.", show_default=False)],
    hw: HwOpt,
    output: OutOpt,
    metrics: Annotated[
        Path | None,
        typer.Option(
            "--metrics",
            help="CSV with a 'model' column (file name or stem) and the metric (default: parameters).",
        ),
    ] = None,
    metric: Annotated[str, typer.Option("--metric", help="Column of --metrics to plot.")] = "accuracy",
    lower_is_better: Annotated[
        bool,
        typer.Option("--lower-is-better", help="The metric improves downwards (error, loss).", metavar=""),
    ] = False,
    batch: BatchOpt = None,
    shape: ShapeOpt = None,
    dtype: DTypeOpt = None,
    runtime: RuntimeOpt = None,
    models_dir: ModelsDirOpt = None,
) -> None:
    """Several models: energy per sample against a metric from a CSV (or their parameter count)."""
    from estimator.api import Estimator
    from estimator.report.plots import ModelPoint, pareto_figure, save_figure

    est = Estimator(hw, runtime=runtime, models_dir=models_dir)
    table = read_metrics(metrics, metric) if metrics is not None else None
    points = []
    for path in models:
        e = est.estimate(path, batch=batch, shapes=parse_shapes(shape), dtype=dtype.value if dtype else None)
        if table is not None and path.stem not in table:
            raise DataError(f"{metrics} has no row for model '{path.stem}'")
        value = table[path.stem] if table is not None else float(e.costs.totals.params)
        lo, hi = e.interval
        points.append(ModelPoint(path.stem, e.joules_per_sample, lo / e.batch, hi / e.batch, value))
    label = metric if table is not None else "parameters"
    fig = pareto_figure(
        points, metric_label=label, higher_is_better=table is not None and not lower_is_better
    )
    _written(save_figure(fig, output))
