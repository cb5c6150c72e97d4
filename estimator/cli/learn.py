"""`estimate train` and `estimate evaluate`: learning from measurements and reporting accuracy."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from estimator.cli._app import TablesArg, _clean_errors, app


class Granularity(str, Enum):
    """How a model learns: per network, or per kernel (trained on single layers, summed)."""

    graph = "graph"
    kernel = "kernel"


#: ``--with-source NAME``: an optional GPU source (``OPTIONAL_GPU_TABLES``), for train-gpu and evaluate --gpu.
WithSource = Annotated[
    list[str] | None,
    typer.Option(
        "--with-source",
        help="Also train on this GPU source (power_hungry, mlperf_power: left out by default; mlenergy_diffusion: judged only by default); repeatable.",
        show_default=False,
    ),
]


@app.command()
@_clean_errors
def train(
    tables: TablesArg,
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


@app.command("train-gpu")
@_clean_errors
def train_gpu(
    models_dir: Annotated[Path | None, typer.Option("--models-dir", help="Where models live.")] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root", help="Source checkout whose data/ holds the GPU tables.", show_default=False
        ),
    ] = None,
    with_source: WithSource = None,
) -> None:
    """Train the GPU models on the committed GPU tables: one calibrated model per (device, runtime) with data at
    gpu-board-nvml and the cross-device model for every other GPU; writes atomically to trained_models/."""
    from estimator.learn.gpu_store import train_gpu_models
    from estimator.learn.gpu_training import build_gpu_set, load_gpu_table
    from estimator.learn.regressor import default_models_dir
    from estimator.learn.training import REPO_ROOT

    say = lambda line: typer.echo(line, err=True)  # noqa: E731
    root = data_root if data_root is not None else REPO_ROOT
    # judged-only tables load too: they calibrate the cross-device interval and train nothing (gpu_store)
    gs = build_gpu_set(
        load_gpu_table(root, with_sources=with_source or (), judged=True), root=root, progress=say
    )
    for line in train_gpu_models(gs, models_dir or default_models_dir(), progress=say):
        typer.echo(line)


@app.command()
@_clean_errors
def evaluate(
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder to write the report into (e.g. docs).", show_default=False),
    ],
    hw: Annotated[str | None, typer.Option("--hw", help="Only this hardware.")] = None,
    runtime: Annotated[str | None, typer.Option("--runtime", help="Only this runtime.")] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root",
            help="Source checkout whose data/ holds the measurement tables (default: this package's checkout).",
            show_default=False,
        ),
    ] = None,
    gpu: Annotated[
        bool,
        typer.Option(
            "--gpu",
            help="The GPU evaluation instead (per source, leave-one-device-out): evaluation_gpu.md/.json.",
        ),
    ] = False,
    with_source: WithSource = None,
) -> None:
    """Run EVALUATION.md's protocol on the committed measurements; writes Markdown, JSON and a plot into --out."""
    from estimator.errors import DataError
    from estimator.learn.evaluation import EVAL_SETS, run_evaluation, write_report
    from estimator.learn.training import REPO_ROOT

    root = data_root if data_root is not None else REPO_ROOT
    if not (root / EVAL_SETS[0].table).parent.is_dir():
        raise DataError(
            f"no measurement tables under {root / 'data'}: they ship with the source repository, not the wheel; "
            "pass --data-root PATH of a checkout"
        )
    if not out.is_dir():
        raise DataError(f"--out folder {out} does not exist; create it first")
    if gpu:
        _evaluate_gpu(root, out, with_source or [])
        return
    if with_source:
        raise DataError("--with-source names an optional GPU source: use it with --gpu")
    report = run_evaluation(hw, runtime, root=root, progress=lambda line: typer.echo(line, err=True))
    for path in write_report(report, out):
        typer.echo(f"wrote {path}")


def _evaluate_gpu(root: Path, out: Path, with_sources: list[str]) -> None:
    """``estimate evaluate --gpu``: the GPU report, and the v2 prior's physics-only GPU interval."""
    from estimator.learn.gpu_evaluation import run_gpu_evaluation, write_gpu_report
    from estimator.learn.gpu_priors import write_prior_interval
    from estimator.learn.gpu_training import build_gpu_set, load_gpu_table

    say = lambda line: typer.echo(line, err=True)  # noqa: E731
    gs = build_gpu_set(load_gpu_table(root, with_sources=with_sources, judged=True), root=root, progress=say)
    report = run_gpu_evaluation(say, gs=gs)
    for path in write_gpu_report(report, out):
        typer.echo(f"wrote {path}")
    if with_sources:
        return  # the shipped physics-only interval comes from the default sources only
    interval = write_prior_interval(
        report, Path(__file__).resolve().parent.parent / "energy" / "prior_interval.json"
    )
    if interval:
        typer.echo(f"wrote {interval}")
