"""The measurement protocol: idle power, warm-up, windows of repeated inferences read from an energy counter
(see the package docstring)."""

from __future__ import annotations

import importlib.metadata
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from estimator.data.counters import EnergyCounter
from estimator.errors import MeasurementError

Clock = Callable[[], float]
Config = TypeVar("Config")

#: The hygiene floor of the shared EVALUATION.md for measurements that go into the data tables.
MIN_WINDOW_S = 1.0
MIN_REPEATS = 3


@dataclass(frozen=True)
class ProtocolSettings:
    """Durations (s) and counts of the measurement protocol; the defaults meet the project's hygiene rules.

    Attributes:
        idle_s: length of the idle window before the warm-up, in seconds.
        warmup_s: least warm-up time, in seconds.
        warmup_runs: least number of warm-up inferences.
        window_s: least length of one measured window, in seconds.
        repeats: measured windows (>= 3, so that a spread exists).
    """

    idle_s: float = 1.0
    warmup_s: float = 1.0
    warmup_runs: int = 3
    window_s: float = MIN_WINDOW_S
    repeats: int = MIN_REPEATS

    def __post_init__(self) -> None:
        for name in ("window_s", "idle_s"):  # window_s first: idle_s defaults to it, so it names the cause
            value = getattr(self, name)
            if not (value > 0 and value != float("inf")):
                option = {"window_s": "window_s (--window-s)"}.get(name, name)
                raise MeasurementError(f"{option} must be a positive, finite number of seconds, not {value}")
        if self.warmup_s < 0 or self.warmup_runs < 0:
            raise MeasurementError("warm-up time and runs must not be negative")
        if self.repeats < MIN_REPEATS:
            raise MeasurementError(
                f"repeats must be at least {MIN_REPEATS} to give a spread, not {self.repeats}"
            )

    def check_hygiene(self) -> None:
        """Raise MeasurementError when windows are shorter than the 1 s the data tables require."""
        if self.window_s < MIN_WINDOW_S or self.idle_s < MIN_WINDOW_S:
            raise MeasurementError(
                f"windows of {self.window_s} s (idle {self.idle_s} s) are too short to trust a counter: "
                f"use at least {MIN_WINDOW_S} s"
            )


@dataclass(frozen=True)
class Window:
    """One measured window of back-to-back inferences.

    Attributes:
        inferences: inferences completed in the window.
        seconds: window length, device synchronised at its end, in seconds.
        joules: counter increase over the window, in joules (idle included).
        idle_power_w: idle power subtracted in ``joules_idle_subtracted``, in watts.
    """

    inferences: int
    seconds: float
    joules: float
    idle_power_w: float

    @property
    def joules_per_inference(self) -> float:
        """Energy of one inference with idle included, in joules."""
        return self.joules / self.inferences

    @property
    def joules_per_inference_idle_subtracted(self) -> float:
        """Energy of one inference above idle power, in joules (may be <= 0 when below the noise)."""
        return (self.joules - self.idle_power_w * self.seconds) / self.inferences

    @property
    def latency_s(self) -> float:
        """Time of one inference run back to back, in seconds."""
        return self.seconds / self.inferences

    @property
    def power_w(self) -> float:
        """Average power over the window, in watts (idle included)."""
        return self.joules / self.seconds


@dataclass(frozen=True)
class EnergyMeasurement:
    """The result of :func:`measure_energy`: medians over windows, spreads, and what was measured.

    Attributes:
        windows: every measured window, in order.
        idle_power_w: idle power measured before the warm-up (or given), in watts.
        counter: the counter's name, boundary, device name and metadata (driver, clocks in MHz, ...).
        settings: the protocol's durations and counts.
        runtime: the runtime that ran the inferences (set by the back ends, e.g. ``"onnxruntime-cpu"``).
        versions: library versions of the runtime, ``{"onnxruntime": "1.20.1", ...}``.
        dtype: precision of the arithmetic (set by the back ends).
    """

    windows: tuple[Window, ...]
    idle_power_w: float
    counter: Mapping[str, Any]
    settings: ProtocolSettings
    runtime: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    dtype: str = ""

    @property
    def joules_per_inference(self) -> float:
        """Median over windows of the energy of one inference, idle included, in joules."""
        return statistics.median(w.joules_per_inference for w in self.windows)

    @property
    def joules_per_inference_idle_subtracted(self) -> float:
        """Median over windows of the energy of one inference above idle, in joules."""
        return statistics.median(w.joules_per_inference_idle_subtracted for w in self.windows)

    @property
    def latency_s(self) -> float:
        """Median over windows of the time of one inference, in seconds."""
        return statistics.median(w.latency_s for w in self.windows)

    @property
    def power_w(self) -> float:
        """Median over windows of the average power, idle included, in watts."""
        return statistics.median(w.power_w for w in self.windows)

    def spread_rel(self, idle_subtracted: bool = False) -> float:
        """(max - min) / |median| of the per-window energies per inference (dimensionless)."""
        return relative_spread(self._energies(idle_subtracted))

    def cv(self, idle_subtracted: bool = False) -> float:
        """Sample standard deviation / |mean| of the per-window energies per inference (dimensionless)."""
        return coefficient_of_variation(self._energies(idle_subtracted))

    def latency_spread_rel(self) -> float:
        """Sample standard deviation / median of the per-window latencies (dimensionless)."""
        latencies = [w.latency_s for w in self.windows]
        return statistics.stdev(latencies) / statistics.median(latencies)

    def _energies(self, idle_subtracted: bool) -> list[float]:
        if idle_subtracted:
            return [w.joules_per_inference_idle_subtracted for w in self.windows]
        return [w.joules_per_inference for w in self.windows]


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / |median| of the values; infinite when the median is zero."""
    median = abs(statistics.median(values))
    width = max(values) - min(values)
    return width / median if median > 0 else float("inf")


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation / |mean| of at least two values; infinite when the mean is zero."""
    mean = abs(statistics.fmean(values))
    return statistics.stdev(values) / mean if mean > 0 else float("inf")


def measure_energy(
    counter: EnergyCounter,
    run_once: Callable[[], object],
    *,
    settings: ProtocolSettings = ProtocolSettings(),
    synchronize: Callable[[], object] = lambda: None,
    clock: Clock = time.perf_counter,
    sleep: Callable[[float], object] = time.sleep,
    idle_power_w: float | None = None,
) -> EnergyMeasurement:
    """Measure the energy of one call of ``run_once`` with ``counter`` (see the module docstring).

    Args:
        counter: a cumulative energy counter (J).
        run_once: runs one inference; may return before the device has finished (``synchronize`` waits).
        settings: protocol durations (s) and counts.
        synchronize: waits until the device has finished all queued work (e.g. ``torch.cuda.synchronize``).
        clock: monotonic seconds.
        sleep: waits a number of seconds (the idle window).
        idle_power_w: an idle power (W) measured earlier on the same device; when given, no idle window runs.

    Returns:
        The windows and their medians; energies in J, times in s, powers in W.

    Raises:
        MeasurementError: the counter did not increase over a window (broken counter) or went backwards
            (wrapped or reset), or the clock did not advance.
    """
    if idle_power_w is None:
        idle_power_w = measure_idle_power(
            counter, settings.idle_s, synchronize=synchronize, clock=clock, sleep=sleep
        )

    started = clock()
    runs = 0
    while runs < settings.warmup_runs or clock() - started < settings.warmup_s:
        run_once()
        runs += 1
    synchronize()

    windows = []
    for _ in range(settings.repeats):
        synchronize()
        e0, t0 = read_stamped(counter, clock)
        n = 0
        while True:
            run_once()
            n += 1
            if clock() - t0 >= settings.window_s:
                break
        synchronize()
        e1, t1 = read_stamped(counter, clock)
        joules = _increase(e1 - e0, t1 - t0, "an inference window", counter)
        windows.append(Window(inferences=n, seconds=t1 - t0, joules=joules, idle_power_w=idle_power_w))
    return EnergyMeasurement(
        windows=tuple(windows),
        idle_power_w=idle_power_w,
        counter=counter_metadata(counter),
        settings=settings,
    )


def measure_idle_power(
    counter: EnergyCounter,
    seconds: float,
    *,
    synchronize: Callable[[], object] = lambda: None,
    clock: Clock = time.perf_counter,
    sleep: Callable[[float], object] = time.sleep,
) -> float:
    """Average power (W) over ``seconds`` of idle, after the device has finished its queued work.

    Raises:
        MeasurementError: the counter did not increase, went backwards, or the clock did not advance.
    """
    synchronize()
    e0, t0 = read_stamped(counter, clock)
    sleep(seconds)
    e1, t1 = read_stamped(counter, clock)
    return _increase(e1 - e0, t1 - t0, "the idle window", counter) / (t1 - t0)


def read_stamped(counter: EnergyCounter, clock: Clock) -> tuple[float, float]:
    """One counter reading (J) and the time it stands for (s): the midpoint of clock readings taken just before
    and just after it.

    A counter read is not instantaneous (an NVML call takes tens to hundreds of microseconds, a sysfs read can be
    preempted); stamping it with a clock reading taken on one side only biases every power by the read's length
    divided by the window's.
    """
    before = clock()
    joules = counter.read_joules()
    return joules, 0.5 * (before + clock())


def _increase(joules: float, seconds: float, what: str, counter: EnergyCounter) -> float:
    if not seconds > 0:
        raise MeasurementError(f"the clock did not advance over {what}; use a monotonic clock")
    if joules < 0:
        raise MeasurementError(
            f"the {counter.name} energy counter went backwards by {-joules:.3g} J over {what}: it wrapped "
            "or was reset (driver reload); measure again"
        )
    if joules == 0:
        raise MeasurementError(
            f"the {counter.name} energy counter did not advance over {what} of {seconds:.3g} s: the counter "
            "is broken or not updated on this device; its numbers cannot be used"
        )
    return joules


def counter_metadata(counter: EnergyCounter) -> dict[str, Any]:
    """The counter's name, boundary and device name merged with its :meth:`metadata`."""
    return {"counter": counter.name, "boundary": counter.boundary, **counter.metadata()}


def _versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
