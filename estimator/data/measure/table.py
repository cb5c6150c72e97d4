"""Measurement rows in the project's schema, many configurations written as they finish, and `estimate measure`."""

from __future__ import annotations

import datetime as dt
import platform
import re
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

from estimator.data.counters import EnergyCounter, default_counter
from estimator.data.measure.backends import _import_onnxruntime, measure_onnx
from estimator.data.measure.protocol import (
    MIN_REPEATS,
    MIN_WINDOW_S,
    Config,
    EnergyMeasurement,
    ProtocolSettings,
)
from estimator.errors import InvalidDimensionError, MeasurementError

# ------------------------------------------------------------------------------------------------- rows


def measurement_row(
    result: EnergyMeasurement,
    *,
    model_ref: str,
    batch: int,
    group: str | None = None,
    family: str = "unknown",
    task: str = "unknown",
    hardware: str | None = None,
    input_shape: str | None = None,
    source: str = "own-measurement",
    citation: str = "this repository (estimator.data.measure)",
    notes: str = "",
    idle_subtracted: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """One row of the measurement table (:data:`estimator.data.measurements.SCHEMA` plus extra columns).

    ``joules_per_inference`` is the median energy of one forward pass at ``batch`` with idle included (what
    the counter's boundary covers), or above idle when ``idle_subtracted``; the other one is kept in an
    extra column, with the idle power, clocks, driver and library versions.

    Args:
        result: a measurement from :func:`measure_energy` or a back end.
        model_ref: the network, as the schema describes (an ONNX path or a zoo spec).
        batch: samples per inference.
        group, family, task: for grouped cross-validation; ``group`` defaults to ``model_ref``.
        hardware: hardware profile name; by default a slug of the device name.
        input_shape: shape of one sample, e.g. ``"3x224x224"``.
        source, citation, notes: provenance.
        idle_subtracted: report the idle-subtracted energy as ``joules_per_inference``.
        now: the measurement time (UTC now by default).

    Raises:
        MeasurementError: ``idle_subtracted`` was asked but the energy above idle is not positive (the
            inference's energy is below the idle noise floor).
    """
    meta = dict(result.counter)
    with_idle = result.joules_per_inference
    above_idle = result.joules_per_inference_idle_subtracted
    energy = above_idle if idle_subtracted else with_idle
    if energy <= 0:
        raise MeasurementError(
            f"the energy above idle of {model_ref} at batch {batch} is {energy:.3g} J, not positive: "
            "it is below the idle noise floor; report it with idle included"
        )
    now = now or dt.datetime.now(dt.timezone.utc)
    versions = {**result.versions, "python": platform.python_version()}
    return {
        "model_ref": model_ref,
        "group": group or model_ref,
        "family": family,
        "task": task,
        "batch": batch,
        "dtype": result.dtype,
        "hardware": hardware or slug(meta.get("device_name", "unknown")),
        "runtime": result.runtime,
        "boundary": meta["boundary"],
        "joules_per_inference": energy,
        "joules_per_sample": energy / batch,
        "latency_s": result.latency_s,
        "idle_subtracted": idle_subtracted,
        "repeats": len(result.windows),
        "spread_rel": result.spread_rel(idle_subtracted),
        "latency_spread_rel": result.latency_spread_rel(),
        "source": source,
        "citation": citation,
        "measured_at": now.date().isoformat(),
        "notes": notes,
        "input_shape": input_shape,
        "device_name": meta.get("device_name"),
        "accelerators": 1,
        "power_w": result.power_w,
        "throughput": batch / result.latency_s,
        "throughput_unit": "samples/s",
        # Extra columns (not in the schema): what a later reader needs to judge the row.
        "joules_per_inference_with_idle": with_idle,
        "joules_per_inference_idle_subtracted": above_idle,
        "idle_power_w": result.idle_power_w,
        "energy_cv": result.cv(idle_subtracted),
        "window_s": result.settings.window_s,
        "inferences_per_window": min(w.inferences for w in result.windows),
        "counter": meta.get("counter"),
        "driver": meta.get("driver"),
        "sm_clock_mhz": meta.get("sm_clock_mhz"),
        "memory_clock_mhz": meta.get("memory_clock_mhz"),
        "power_limit_w": meta.get("power_limit_w"),
        "versions": ";".join(f"{k}={v}" for k, v in sorted(versions.items())),
        "measured_at_utc": now.isoformat(timespec="seconds"),
    }


def slug(text: str) -> str:
    """Lower-case words joined by dashes: ``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


# ---------------------------------------------------------------------------------- many configurations


def measure_configurations(
    configs: Iterable[Config],
    measure: Callable[[Config], Mapping[str, Any] | None],
    output: str | Path | None = None,
    *,
    key: Callable[[Mapping[str, Any]], Hashable] | None = None,
    config_key: Callable[[Config], Hashable] | None = None,
    label: Callable[[Config], str] = str,
    progress: Callable[[str], object] | None = None,
) -> list[dict[str, Any]]:
    """Measure each configuration and rewrite ``output`` after each one, so an interruption keeps every row.

    ``output`` (a ``.csv`` or ``.csv.gz`` measurement table) keeps the rows it already has; when ``key`` and
    ``config_key`` are given, configurations whose key matches an existing row are skipped (resume).

    Args:
        configs: what to measure.
        measure: makes the row of one configuration, or returns None when it could not be measured (it
            records why itself); no row is written for it then.
        output: the table to write; None keeps the rows in memory only.
        key, config_key: identity of a row and of a configuration, for skipping finished ones.
        label: a short name of a configuration for the progress lines.
        progress: receives one line per configuration (default: printed to stderr).

    Returns:
        The rows measured in this call (not the ones the table had before).
    """
    import pandas as pd

    from estimator.data.measurements import read_measurements, write_measurements

    say = progress or _stderr_line
    path = None if output is None else Path(output)
    rows: list[dict[str, Any]] = []
    if path is not None and path.exists():
        rows = read_measurements(path).to_dict("records")
    done = {key(r) for r in rows} if key is not None and config_key is not None else set()
    todo = [c for c in configs if config_key is None or config_key(c) not in done]
    new: list[dict[str, Any]] = []
    started = time.monotonic()
    for i, config in enumerate(todo, 1):
        measured = measure(config)
        if measured is None:
            say(f"[{i}/{len(todo)}] {label(config)}: not measured")
            continue
        row = dict(measured)
        new.append(row)
        rows.append(row)
        if path is not None:
            write_measurements(pd.DataFrame(rows), path)
        elapsed = time.monotonic() - started
        left = elapsed / i * (len(todo) - i)
        say(
            f"[{i}/{len(todo)}] {label(config)}: {row['joules_per_inference']:.4g} J/inference, "
            f"spread {row['spread_rel']:.1%}, {row['latency_s'] * 1e3:.3g} ms; about {_duration(left)} left"
        )
    return new


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def parse_batches(text: str) -> tuple[int, ...]:
    """Batch sizes from ``"1"`` or ``"1,8,32"``.

    Raises:
        InvalidDimensionError: a value is not a whole number >= 1.
    """
    values = []
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise InvalidDimensionError(
                f"batch {part.strip()!r} is not a whole number: use e.g. 1,8,32"
            ) from None
        if value < 1:
            raise InvalidDimensionError(f"batch {value} must be at least 1")
        values.append(value)
    return tuple(dict.fromkeys(values))


def measure_command(
    model: str | Path,
    *,
    device: str = "cpu",
    batch: str = "1",
    dtype: str | None = None,
    runtime: str = "onnxruntime",
    output: str | Path | None = None,
    hardware: str | None = None,
    family: str = "unknown",
    task: str = "unknown",
    repeats: int = MIN_REPEATS,
    window_s: float = MIN_WINDOW_S,
    idle_subtracted: bool = False,
    counter: EnergyCounter | None = None,
    progress: Callable[[str], object] | None = None,
) -> list[dict[str, Any]]:
    """``estimate measure MODEL.onnx``: measure an ONNX model at each batch size and append the rows.

    Args:
        model: the ``.onnx`` file.
        device: ``cpu`` (RAPL counter), ``cuda`` or ``cuda:N`` (NVML counter).
        batch: batch sizes, ``"1"`` or ``"1,8,32"``.
        dtype: precision label; by default the dominant floating type of the weights.
        runtime: ``onnxruntime``.
        output: measurement table to append to (``.csv`` or ``.csv.gz``); rewritten after each batch size.
        hardware: hardware profile name for the rows (default: a slug of the device name).
        family, task: labels of the rows.
        repeats: measured windows per batch size (>= 3).
        window_s: least window length in seconds (>= 1).
        idle_subtracted: report energy above idle power instead of the counter's total.
        counter: the energy counter (default: the device's).
        progress: receives one line per batch size (default: stderr).

    Returns:
        The rows measured, in the order of ``batch``.
    """
    settings = ProtocolSettings(window_s=window_s, idle_s=max(window_s, MIN_WINDOW_S), repeats=repeats)
    settings.check_hygiene()

    name = Path(model).name

    def one(b: int) -> dict[str, Any] | None:
        try:
            result = measure_onnx(
                model,
                device=device,
                batch=b,
                dtype=dtype,
                runtime=runtime,
                counter=counter,
                settings=settings,
            )
        except MeasurementError as exc:
            if progress is not None:
                progress(f"{name} batch {b}: not measured ({exc})")
            return None  # one batch failing (out of memory, say) does not stop the others
        return measurement_row(
            result,
            model_ref=str(model),
            group=Path(model).stem,
            batch=b,
            family=family,
            task=task,
            hardware=hardware,
            idle_subtracted=idle_subtracted,
        )

    # What every batch needs is checked once, so that its absence is one clear error, not a failure per batch.
    _import_onnxruntime()
    own = counter is None
    if own:
        counter = default_counter(device)
    try:
        rows = measure_configurations(
            parse_batches(batch), one, output, label=lambda b: f"{name} batch {b}", progress=progress
        )
    finally:
        close = getattr(counter, "close", None)
        if own and close is not None:
            close()
    if not rows:
        raise MeasurementError(f"no batch size of {name} could be measured (the reasons are printed above)")
    return rows
