"""Measure the energy of one inference with an energy counter, following the project's measurement protocol.

The protocol (:func:`measure_energy`) is a pure function of a counter, a ``run_once`` callable and a clock:

1. idle: with the device quiet, the counter's increase over ``idle_s`` seconds gives the idle power (W);
2. warm-up: ``run_once`` is called at least ``warmup_runs`` times and for at least ``warmup_s`` seconds;
3. ``repeats`` windows: inferences run back to back until ``window_s`` seconds have passed, the device is
   synchronised, and the counter's increase over the window is divided by the inferences counted.

Each counter reading is stamped with the midpoint of clock readings taken just before and just after it
(:func:`~estimator.data.measure.protocol.read_stamped`): a read takes time (an NVML call, a preempted sysfs read),
and a one-sided stamp would bias every power by that time over the window's length.

One *inference* is one call of ``run_once``: one forward pass of the network at the measured batch size.
Per window: joules per inference with idle included (what the counter saw) and idle-subtracted
(``(E - P_idle * T) / n``), latency ``T / n`` and average power ``E / T``. The result is the median of each
over the windows, with two spreads of the energy: ``spread_rel = (max - min) / median`` and
``cv = stdev / mean`` (sample standard deviation). An energy that does not increase over a window is a
broken or wrapped counter and raises :class:`~estimator.errors.MeasurementError`; no number is made up.

Back ends run a network: :func:`measure_onnx` with onnxruntime (an optional dependency, imported when
called) and :func:`measure_torch_module` with PyTorch (never imported by the package itself).
:func:`measurement_row` turns a result into a row of the measurement table (:mod:`estimator.data.measurements`)
and :func:`measure_configurations` measures a list of configurations, rewriting the table after each one so
that an interruption keeps every finished row. :func:`measure_command` is ``estimate measure``.
"""

from estimator.data.measure.backends import measure_onnx, measure_torch_module
from estimator.data.measure.protocol import (
    MIN_REPEATS,
    MIN_WINDOW_S,
    EnergyMeasurement,
    ProtocolSettings,
    Window,
    coefficient_of_variation,
    counter_metadata,
    measure_energy,
    measure_idle_power,
    relative_spread,
)
from estimator.data.measure.table import (
    measure_command,
    measure_configurations,
    measurement_row,
    parse_batches,
    slug,
)

__all__ = [
    "MIN_REPEATS",
    "MIN_WINDOW_S",
    "EnergyMeasurement",
    "ProtocolSettings",
    "Window",
    "coefficient_of_variation",
    "counter_metadata",
    "measure_command",
    "measure_configurations",
    "measure_energy",
    "measure_idle_power",
    "measure_onnx",
    "measure_torch_module",
    "measurement_row",
    "parse_batches",
    "relative_spread",
    "slug",
]
