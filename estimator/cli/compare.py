"""`estimate compare`: several models x hardware profiles x batch sizes x dtypes in one table.

    estimate compare models/ resnet*.onnx --hw a100,h100,rpi5 --batch 1,8,64 --dtype fp32,fp16 \
        --sort joules_per_sample --format csv -o sweep.csv --n-jobs 2

Each model is loaded and costed once per batch size and estimated for every profile and dtype
(:mod:`estimator.many`); ``--n-jobs`` spreads the work over cores with joblib.
"""

from __future__ import annotations

import contextlib
import glob
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from estimator.cli._app import ShapeOpt, _clean_errors, app, parse_shapes
from estimator.errors import InputFileError, InvalidDimensionError
from estimator.fileio import check_model_file

#: Short dtype names accepted by --dtype (the element types they stand for are the prior's DTYPE_CHOICES).
DTYPES = ("fp32", "fp16", "bf16", "int8")
_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8"}
#: Model-and-batch units from which a progress bar is drawn.
PROGRESS_MIN_UNITS = 4
#: Width of the text table, in columns.
TABLE_WIDTH = 80


class CompareFormat(str, Enum):
    """Output format of the comparison."""

    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"
    parquet = "parquet"


class SortKey(str, Enum):
    """Column to sort rows by (joules and latency ascending, inferences per joule descending)."""

    joules_per_sample = "joules_per_sample"
    latency = "latency"
    inferences_per_joule = "inferences_per_joule"


def expand_models(items: list[str]) -> list[Path]:
    """Model files named by paths, globs (``models/*.onnx``, ``**`` recursive) and folders (every ``.onnx``
    below), in the order given, each once; InputFileError when an item names nothing."""
    out: list[Path] = []
    for item in items:
        if any(c in item for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise InputFileError(
                    f"{item}: the pattern matches no file; check it (quote it for the shell)"
                )
        elif Path(item).is_dir():
            found = sorted(Path(item).rglob("*.onnx"))
            if not found:
                raise InputFileError(f"{item}: is a folder without .onnx files; give model files or a glob")
        else:
            found = [check_model_file(item)]
        out += [p for p in found if p not in out]
    return out


def _split(values: list[str] | None, what: str) -> list[str]:
    items = [v.strip() for value in values or [] for v in value.split(",") if v.strip()]
    if values and not items:
        raise InvalidDimensionError(f"{what} is empty; give a comma-separated list")
    return items


def _batches(values: list[str] | None) -> list[int | None]:
    out: list[int | None] = []
    for v in _split(values, "--batch"):
        if not v.isdigit() or int(v) < 1:
            raise InvalidDimensionError(f"--batch '{v}' is not a positive integer; write e.g. --batch 1,8,64")
        out.append(int(v))
    return out or [None]


def _dtypes(values: list[str] | None) -> list[str | None]:
    out: list[str | None] = []
    for v in _split(values, "--dtype"):
        if v not in DTYPES:
            raise InvalidDimensionError(f"--dtype '{v}' is not one of {', '.join(DTYPES)}")
        out.append(v)
    return out or [None]


def sort_rows(rows: list[dict], key: SortKey | None) -> list[dict]:
    """``rows`` sorted by ``key`` (stable; the argument order when None)."""
    if key is None:
        return rows
    if key is SortKey.inferences_per_joule:
        return sorted(rows, key=lambda r: -r["inferences_per_joule"])
    column = "latency_s" if key is SortKey.latency else "joules_per_sample"
    return sorted(rows, key=lambda r: r[column])


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def render_compare_table(rows: list[dict], width: int = TABLE_WIDTH) -> str:
    """The rows as a text table of at most ``width`` columns, with footnotes on calibration and coverage."""
    from estimator.cli.format import si

    names = [r["model"] for r in rows]
    short = {n: Path(n).name for n in names}
    if len(set(short.values())) == len(short):  # file names alone tell the models apart
        names = [short[n] for n in names]
    fixed = any(r["batch"] != r["batch_requested"] for r in rows)
    cells = [
        (
            name,
            r["hardware"],
            str(r["batch"]) + ("~" if r["batch"] != r["batch_requested"] else ""),
            _SHORT.get(r["dtype"], r["dtype"]),
            si(r["joules_per_sample"], "J")
            + ("*" if r["calibrated"] else "")
            + ("!" if r["not_costed"] else ""),
            si(r["latency_s"], "s"),
            si(r["inferences_per_joule"]),
            f"{r['avg_power_w']:.1f} W",
        )
        for name, r in zip(names, rows, strict=True)
    ]
    heads = ("model", "hardware", "batch", "dtype", "J/sample", "latency", "inf/J", "power")
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(heads)]
    widths[0] = max(8, min(widths[0], width - sum(widths[1:]) - 2 * (len(heads) - 1)))
    right = {2, 4, 5, 6, 7}

    def line(values: tuple[str, ...]) -> str:
        parts = [
            (_clip(v, w).rjust(w) if i in right else _clip(v, w).ljust(w))
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [line(heads), line(tuple("-" * w for w in widths)), *(line(c) for c in cells)]
    if any(r["calibrated"] for r in rows):
        out.append("* calibrated on measurements; the others are the physics prior alone")
    if any(r["not_costed"] for r in rows):
        out.append("! some op types were not costed, so that energy is a lower bound (see --format csv)")
    if fixed:
        out.append("~ the model's batch dimension is fixed: the batch asked for did not apply")
    bounds = sorted({(r["hardware"], r["boundary"]) for r in rows})
    out.append("boundary: " + "; ".join(f"{h} {b}" for h, b in bounds))
    return "\n".join(out)


def render_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    """The rows as CSV with exact numbers (``columns`` in order)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def render_markdown(rows: list[dict]) -> str:
    """The rows as a GitHub markdown table (every column, numbers in full precision)."""
    from estimator.many import ROW_COLUMNS

    head = "| " + " | ".join(ROW_COLUMNS) + " |"
    rule = (
        "|"
        + "|".join(
            "---:" if isinstance(rows[0][c], (int, float)) and not isinstance(rows[0][c], bool) else "---"
            for c in ROW_COLUMNS
        )
        + "|"
    )
    body = [
        "| " + " | ".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in ROW_COLUMNS) + " |"
        for r in rows
    ]
    return "\n".join([head, rule, *body]) + "\n"


def _payload(rows: list[dict], fmt: CompareFormat) -> bytes:
    from estimator.cli.format import render_json

    if fmt is CompareFormat.table:
        return (render_compare_table(rows) + "\n").encode()
    if fmt is CompareFormat.csv:
        from estimator.many import ROW_COLUMNS

        return render_csv(rows, ROW_COLUMNS).encode()
    if fmt is CompareFormat.json:
        return (render_json({"schema": "estimator.compare/1", "rows": rows}) + "\n").encode()
    if fmt is CompareFormat.markdown:
        return render_markdown(rows).encode()
    try:
        import io

        import pandas as pd

        buffer = io.BytesIO()
        pd.DataFrame(rows).to_parquet(buffer, index=False)
    except ImportError:
        raise InvalidDimensionError(
            "--format parquet needs pyarrow: pip install pyarrow (or use --format csv)"
        ) from None
    return buffer.getvalue()


@app.command()
@_clean_errors
def compare(
    models: Annotated[
        list[str],
        typer.Argument(help="Model files, globs or folders (every .onnx below).", show_default=False),
    ],
    hw: Annotated[
        list[str], typer.Option("--hw", help="Hardware profiles, comma-separated (a100,h100,rpi5).")
    ],
    batch: Annotated[
        list[str] | None, typer.Option("--batch", help="Batch sizes, comma-separated (1,8,64).")
    ] = None,
    dtype: Annotated[
        list[str] | None,
        typer.Option("--dtype", help=f"Element types, comma-separated ({','.join(DTYPES)})."),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option("--runtime", help="Runtime for every profile (default: each profile's).")
    ] = None,
    shape: ShapeOpt = None,
    fmt: Annotated[CompareFormat, typer.Option("--format", help="Output format.")] = CompareFormat.table,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file (atomically) instead of stdout.")
    ] = None,
    sort: Annotated[SortKey | None, typer.Option("--sort", help="Sort rows by this column.")] = None,
    n_jobs: Annotated[
        int, typer.Option("--n-jobs", help="Worker processes (-1: every core). Answers do not depend on it.")
    ] = 1,
    strict: Annotated[bool, typer.Option("--strict", help="Fail when any node cannot be costed.")] = False,
) -> None:
    """Compare models x hardware x batch sizes x dtypes in one table (joules per sample, latency, inf/J)."""
    paths = expand_models(models)  # before any heavy import: wrong paths are answered at once
    profiles, batches, dtypes = _split(hw, "--hw"), _batches(batch), _dtypes(dtype)
    if n_jobs == 0 or n_jobs < -1:
        raise InvalidDimensionError(f"--n-jobs must be a positive integer or -1, got {n_jobs}")
    shapes = parse_shapes(shape)
    if fmt is CompareFormat.parquet and output is None:
        raise InvalidDimensionError("--format parquet writes a binary file: give -o FILE.parquet")

    from estimator.fileio import atomic_write_bytes
    from estimator.many import estimate_grid

    total = len(paths) * len(batches)
    # A bar on stderr for sweeps long enough to wait for (click draws it only on a terminal).
    bar = (
        typer.progressbar(length=total, label="estimating", file=sys.stderr)
        if total >= PROGRESS_MIN_UNITS
        else contextlib.nullcontext(None)
    )
    with bar as shown:
        rows = estimate_grid(
            [str(p) for p in paths],
            profiles,
            runtime=runtime,
            batches=batches,
            dtypes=dtypes,
            shapes=shapes,
            strict=strict,
            n_jobs=n_jobs,
            progress=(lambda done, _total: shown.update(1)) if shown is not None else None,
        )
    payload = _payload(sort_rows(rows, sort), fmt)
    if output is not None:
        atomic_write_bytes(output, payload)
        typer.echo(f"wrote {len(rows)} rows to {output}", err=True)
    else:
        sys.stdout.write(payload.decode())
