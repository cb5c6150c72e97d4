"""The measurement table: one row is one measured configuration (a network, a batch, a device, a runtime).

`SCHEMA` (defined in estimator.data.schema, re-exported here) is the one source of truth for the columns:
their order, type, unit, whether a value is required, and what they mean. This module reads, checks and
writes tables against it; data/README.md documents the same list for people reading the CSV files.

Two kinds of table share the schema:

- ``"training"`` tables (data/hwnasbench360.csv.gz, data/getzner.csv.gz) hold energies of one forward pass at
  a known batch size; every required column must have a value.
- ``"validation"`` tables (data/validation_mlperf.csv.gz, data/validation_mlenergy.csv.gz) hold whole-system
  or whole-serving-loop energies where the batch size is often not reported. In them ``batch``,
  ``joules_per_inference`` and ``dtype`` may be empty and ``joules_per_sample`` is required instead.

Reading validates every value and reports malformed ones by file LINE and COLUMN (line 1 is the header, so the
first data row is line 2). Writing is atomic: the table goes to a temporary file in the destination folder,
which then replaces the destination with ``os.replace``; a failed write leaves the old file untouched.
Files whose name ends in ``.gz`` are gzip-compressed (with a zero timestamp, so the bytes are reproducible).
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.schema import BOUNDARIES, DTYPES, LEVELS, RUNTIMES, SCHEMA, Column, TableKind
from estimator.errors import DataError, InputFileError
from estimator.fileio import atomic_write_bytes, check_input_file

__all__ = [
    "BOUNDARIES",
    "DTYPES",
    "LEVELS",
    "RUNTIMES",
    "SCHEMA",
    "Column",
    "MeasurementIssue",
    "TableKind",
    "check_frame",
    "check_measurements",
    "column",
    "read_measurements",
    "schema_markdown",
    "write_measurements",
]

_BY_NAME: dict[str, Column] = {c.name: c for c in SCHEMA}
_POSITIVE = frozenset(
    {
        "joules_per_inference",
        "joules_per_sample",
        "latency_s",
        "power_w",
        "throughput",
        "joules_per_token",
        "output_tokens",
    }
)
_AT_LEAST_ONE = frozenset({"batch", "repeats", "accelerators", "num_classes", "seq_len", "boards", "threads"})
#: Plausible ranges [low, high] of values whose extremes can only be typos or corruption (units of the schema):
#: one inference from a femtojoule to a gigajoule, up to a million samples per pass and 2^20 threads.
_PLAUSIBLE: dict[str, tuple[float, float]] = {
    "joules_per_inference": (1e-15, 1e9),
    "joules_per_sample": (1e-15, 1e9),
    "joules_per_token": (1e-15, 1e9),
    "latency_s": (1e-12, 1e6),
    "power_w": (1e-6, 1e8),
    "batch": (1, 1 << 20),
    "threads": (1, 1 << 20),
    "repeats": (1, 1 << 30),
    "accelerators": (1, 1 << 20),
    "num_classes": (1, 1 << 30),
    "layer_idx": (0, 1 << 30),
    "macs": (0, 1e21),
}
#: Years a measurement date may name.
_YEARS = (1950, 2100)
_NON_NEGATIVE = frozenset({"spread_rel", "latency_spread_rel", "macs", "layer_idx"})
_CHOICES: dict[str, tuple[str, ...]] = {"boundary": BOUNDARIES, "dtype": DTYPES, "level": LEVELS}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def column(name: str) -> Column:
    """The schema entry of a column; raises DataError for a name not in `SCHEMA`."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise DataError(f"unknown measurement column {name!r}; the columns are listed in SCHEMA") from None


@dataclass(frozen=True)
class MeasurementIssue:
    """One malformed value: its file line (1 = header), its column and what is wrong with it."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


def _read_text_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows and the file line on which each data row starts."""
    check_input_file(path, what="measurement table", hint="give the path of a .csv or .csv.gz file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows: list[list[str]] = []
            lines: list[int] = []
            start = reader.line_num + 1
            for row in reader:
                if row:
                    rows.append(row)
                    lines.append(start)
                start = reader.line_num + 1
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as err:
        raise DataError(f"{path} is not a readable UTF-8 CSV file ({err}); re-export it as CSV") from err
    if header is None:
        raise DataError(f"{path} is empty; a measurement file needs a header line naming the columns")
    return header, rows, lines


def _frame_from_rows(
    header: list[str], rows: list[list[str]], lines: list[int]
) -> tuple[pd.DataFrame, list[MeasurementIssue]]:
    issues: list[MeasurementIssue] = []
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            issues.append(MeasurementIssue(1, name, "column appears twice in the header; keep one"))
        seen.add(name)
    width = len(names)
    kept: list[list[str]] = []
    kept_lines: list[int] = []
    for row, line in zip(rows, lines, strict=True):
        if len(row) != width:
            issues.append(
                MeasurementIssue(
                    line, "*", f"row has {len(row)} fields but the header has {width}; fix quoting"
                )
            )
            continue
        kept.append(row)
        kept_lines.append(line)
    frame = (
        pd.DataFrame(kept, columns=names, dtype=object) if kept else pd.DataFrame(columns=names, dtype=object)
    )
    frame = frame.loc[:, ~frame.columns.duplicated()]  # a repeated column is reported above; read the first
    frame.index = pd.Index(kept_lines, name="line")
    return frame, issues


def _as_text(values: pd.Series) -> pd.Series:
    """Strings with missing values as empty strings (for frames built in memory)."""
    return values.map(lambda v: "" if v is None or pd.isna(v) else str(v).strip()).astype(object)


def _convert_column(
    col: Column, text: pd.Series, table: TableKind
) -> tuple[pd.Series, list[MeasurementIssue]]:
    """Typed values of one column and the issues found in it; `text` is indexed by file line."""
    issues: list[MeasurementIssue] = []
    empty = text.eq("") | text.str.lower().isin({"nan", "na", "none", "null"})
    if col.required_in(table):
        for line in text.index[empty]:
            issues.append(MeasurementIssue(int(line), col.name, "required value is missing"))

    def bad(mask: pd.Series, what: str) -> None:
        for line, value in text[mask].items():
            issues.append(MeasurementIssue(int(line), col.name, f"{value!r} {what}"))

    if col.kind == "str":
        values = text.where(~empty, None)
        choices = _CHOICES.get(col.name)
        if choices is not None:
            bad(~empty & ~text.isin(choices), "is not one of " + ", ".join(choices))
        if col.name == "measured_at":
            bad(~empty & ~text.map(_is_date), "is not a date written YYYY-MM-DD, YYYY-MM or YYYY")
        return values.astype(object), issues

    if col.kind == "bool":
        lower = text.str.lower()
        bad(~empty & ~lower.isin(_TRUE | _FALSE), "is not a boolean (true or false)")
        values = pd.Series(pd.NA, index=text.index, dtype="boolean")
        values[lower.isin(_TRUE)] = True
        values[lower.isin(_FALSE)] = False
        return values, issues

    numbers = pd.to_numeric(text.where(~empty), errors="coerce")
    not_number = ~empty & numbers.isna()
    bad(not_number, "is not a number")
    infinite = ~empty & np.isinf(numbers.astype(float))
    bad(infinite, "is not finite")
    ok = ~empty & ~not_number & ~infinite
    if col.name in _POSITIVE:
        bad(ok & ~(numbers > 0), "must be greater than zero")
    if col.name in _AT_LEAST_ONE:
        bad(ok & ~(numbers >= 1), "must be at least 1")
    if col.name in _NON_NEGATIVE:
        bad(ok & ~(numbers >= 0), "must not be negative")
    if col.name in _PLAUSIBLE:
        low, high = _PLAUSIBLE[col.name]
        signed = pd.Series(False, index=numbers.index)  # values already reported for their sign
        for names, fine in (
            (_POSITIVE, numbers > 0),
            (_AT_LEAST_ONE, numbers >= 1),
            (_NON_NEGATIVE, numbers >= 0),
        ):
            if col.name in names:
                signed |= ~fine
        outside = ok & ~signed & ((numbers < low) | (numbers > high))  # one issue per value: sign first
        bad(outside, f"is outside the plausible range {low:g} .. {high:g} {col.unit}".rstrip(" -"))
        ok &= ~outside
    if col.kind == "int":
        fractional = ok & (numbers != np.floor(numbers))
        bad(fractional, "is not a whole number")
        return numbers.where(ok & ~fractional).round().astype("Int64"), issues
    return numbers.where(ok).astype(float), issues


def _is_date(text: str) -> bool:
    """Whether ``text`` is a real calendar date (YYYY-MM-DD, YYYY-MM or YYYY) of a plausible year."""
    if not _DATE.match(text):
        return False
    parts = [int(p) for p in text.split("-")] + [1, 1]
    try:
        datetime.date(*parts[:3])
    except ValueError:
        return False
    return _YEARS[0] <= parts[0] <= _YEARS[1]


def _validate(frame: pd.DataFrame, table: TableKind) -> tuple[pd.DataFrame, list[MeasurementIssue]]:
    """Typed frame (schema columns first, in schema order) and every issue, sorted by line then column."""
    issues: list[MeasurementIssue] = []
    for col in SCHEMA:
        if col.required_in(table) and col.name not in frame.columns:
            issues.append(MeasurementIssue(1, col.name, "required column is missing from the header"))
    typed: dict[str, pd.Series] = {}
    for col in SCHEMA:
        if col.name not in frame.columns:
            continue
        values, found = _convert_column(col, _as_text(frame[col.name]), table)
        typed[col.name] = values
        issues.extend(found)
    for name in frame.columns:
        if name not in _BY_NAME:
            typed[name] = frame[name]
    order = sorted(issues, key=lambda i: (i.line, i.column))
    result = pd.DataFrame(typed, index=frame.index)
    return result, order


def _raise_for(issues: list[MeasurementIssue], where: str, all_errors: bool) -> None:
    if not issues:
        return
    if not all_errors:
        raise DataError(f"{where}: {issues[0]}; fix the value or remove the row")
    listed = "; ".join(str(i) for i in issues)
    raise DataError(f"{where}: {len(issues)} malformed values: {listed}; fix the values or remove the rows")


def check_measurements(path: str | Path, *, table: TableKind = "training") -> list[MeasurementIssue]:
    """Every malformed value of a measurement CSV (``.csv`` or ``.csv.gz``), by line and column.

    Returns an empty list for a valid file. Raises InputFileError when the file cannot be opened and
    DataError when it is not a CSV at all.
    """
    path = Path(path)
    header, rows, lines = _read_text_rows(path)
    frame, issues = _frame_from_rows(header, rows, lines)
    _, found = _validate(frame, table)
    return sorted(issues + found, key=lambda i: (i.line, i.column))


def read_measurements(
    path: str | Path, *, table: TableKind = "training", all_errors: bool = False
) -> pd.DataFrame:
    """Read and validate a measurement table (``.csv`` or gzip ``.csv.gz``).

    Energies are in joules, latencies in seconds (see `SCHEMA`). Returns a DataFrame with the schema columns
    first, in schema order and typed (``Int64`` for integers, ``boolean`` for booleans), then any extra
    columns as text, with a fresh RangeIndex. Raises DataError naming the line and column of the first
    malformed value, or of all of them when ``all_errors`` is true; InputFileError if the file is missing.
    """
    path = Path(path)
    header, rows, lines = _read_text_rows(path)
    frame, shape_issues = _frame_from_rows(header, rows, lines)
    typed, issues = _validate(frame, table)
    _raise_for(sorted(shape_issues + issues, key=lambda i: (i.line, i.column)), str(path), all_errors)
    return typed.reset_index(drop=True)


def check_frame(frame: pd.DataFrame, *, table: TableKind = "training") -> list[MeasurementIssue]:
    """Every malformed value of an in-memory table; lines are those the row would have in the written file."""
    text = frame.copy()
    text.index = pd.RangeIndex(2, len(frame) + 2, name="line")
    _, issues = _validate(text, table)
    return issues


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    schema = [c.name for c in SCHEMA if c.name in frame.columns]
    extra = [c for c in frame.columns if c not in _BY_NAME]
    return frame[schema + extra]


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    out = io.StringIO()
    frame.to_csv(out, index=False, lineterminator="\n")
    return out.getvalue().encode("utf-8")


def write_measurements(
    frame: pd.DataFrame, path: str | Path, *, table: TableKind = "training", validate: bool = True
) -> Path:
    """Write a measurement table atomically; gzip-compressed when the name ends in ``.gz``.

    The columns are written in schema order, extra columns after them. With ``validate`` (the default) the
    table is checked first and DataError names the first malformed value by the line it would have had.
    The bytes go to a temporary file in the destination folder, then ``os.replace`` puts it in place, so
    a failure leaves any previous file unchanged. Returns the path written.
    """
    path = Path(path)
    if validate:
        _raise_for(check_frame(frame, table=table), f"table for {path}", all_errors=False)
    payload = _csv_bytes(_ordered(frame))
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputFileError(f"folder {folder} does not exist; create it before writing {path.name}")
    atomic_write_bytes(path, payload)
    return path


def schema_markdown(columns: Iterable[Column] = SCHEMA) -> str:
    """The schema as a Markdown table (the one in data/README.md is generated from it)."""
    lines = [
        "| column | type | unit | training | validation | description |",
        "|---|---|---|---|---|---|",
    ]
    for c in columns:
        req = "required" if c.required else "optional"
        vreq = "required" if c.required_in("validation") else "optional"
        lines.append(f"| `{c.name}` | {c.kind} | {c.unit} | {req} | {vreq} | {c.description} |")
    return "\n".join(lines)
