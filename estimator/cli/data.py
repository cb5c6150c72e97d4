"""`estimate data import` and `estimate measure`: measurement tables in the project's schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from estimator.cli._app import ModelArg, _clean_errors, app
from estimator.fileio import check_input_file

data_app = typer.Typer(help="Measurement tables: import shared datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("import")
@_clean_errors
def data_import(
    source: Annotated[
        str,
        typer.Argument(
            help="hwnasbench360 | getzner | mlperf_power | mlperf_power_gpu | mlenergy | mlenergy_diffusion | irene | irene_modules | fischer_eff22 | "
            "fischer_rtx4090 | fischer_validation | power_hungry | power_hungry_generative | benchlab | wilkins"
        ),
    ],
    path: Annotated[Path, typer.Argument(help="The raw dataset file or folder.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Table to write (.csv or .csv.gz).")
    ] = None,
) -> None:
    """Turn a raw measured-energy dataset into a table of the project's measurement schema."""
    from estimator.data.importers import DEFAULT_FILES, TABLE_KINDS, import_source
    from estimator.data.measurements import write_measurements

    if (
        not path.is_dir()
    ):  # a folder holds the dataset's files; anything else must be a regular file (no FIFO)
        check_input_file(path, what="dataset file", hint="give the raw dataset file or its folder")
    frame = import_source(source, path)
    out = output or Path("data") / DEFAULT_FILES.get(source, f"{source}.csv.gz")
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
