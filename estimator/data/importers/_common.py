"""Helpers shared by the importers: rounding, file resolution, CSV reading, column checks, final order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.measurements import SCHEMA
from estimator.errors import DataError, InputFileError

#: Significant digits kept for measured floats (the repeat-to-repeat noise is far above 1e-6).
SIGNIFICANT_DIGITS = 6


def _round(values: pd.Series | np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> pd.Series:
    """Round to `digits` significant digits; NaN stays NaN."""
    array = np.asarray(values, dtype=float)
    out = np.full_like(array, np.nan)
    finite = np.isfinite(array) & (array != 0)
    magnitude = np.floor(np.log10(np.abs(array[finite])))
    scale = 10.0 ** (digits - 1 - magnitude)
    out[finite] = np.round(array[finite] * scale) / scale
    out[array == 0] = 0.0
    index = values.index if isinstance(values, pd.Series) else None
    return pd.Series(out, index=index)


def _resolve(path: Path, default_file: str) -> Path:
    """The source file: `path` itself, or `default_file` inside the folder `path`."""
    path = Path(path)
    if path.is_dir():
        path = path / default_file
    if not path.is_file():
        raise InputFileError(f"{path} does not exist; give the data set folder or its {default_file}")
    return path


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        reason = " ".join(str(err).split())  # pandas' messages may span lines
        raise DataError(
            f"{path} is not the expected CSV ({reason}); check that it is the shared file"
        ) from None


def _need(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks columns {', '.join(missing)}; is it the right source file?")


def _finish(frame: pd.DataFrame, sort_by: Sequence[str], log: dict[str, int]) -> pd.DataFrame:
    """Schema column order, sorted rows, fresh index, log attached."""
    order = [c.name for c in SCHEMA if c.name in frame.columns]
    extra = [c for c in frame.columns if c not in order]
    out = frame[order + extra].sort_values(list(sort_by), kind="mergesort").reset_index(drop=True)
    out.attrs["import_log"] = dict(log)
    return out
