"""Measure the energy of one inference with an energy counter, following the project's measurement protocol.

The protocol (:func:`measure_energy`) is a pure function of a counter, a ``run_once`` callable and a clock:

1. idle: with the device quiet, the counter's increase over ``idle_s`` seconds gives the idle power (W);
2. warm-up: ``run_once`` is called at least ``warmup_runs`` times and for at least ``warmup_s`` seconds;
3. ``repeats`` windows: inferences run back to back until ``window_s`` seconds have passed, the device is
   synchronised, and the counter's increase over the window is divided by the inferences counted.

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

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from estimator.data.counters import EnergyCounter, default_counter, parse_device
from estimator.errors import InputFileError, InvalidDimensionError, MeasurementError, UnboundDimensionError

Clock = Callable[[], float]
Config = TypeVar("Config")

#: The hygiene floor of /work/shared/EVALUATION.md for measurements that go into the data tables.
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
        for name in ("idle_s", "window_s"):
            if not getattr(self, name) > 0:
                raise MeasurementError(
                    f"{name} must be a positive number of seconds, not {getattr(self, name)}"
                )
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
        e0, t0 = counter.read_joules(), clock()
        n = 0
        while True:
            run_once()
            n += 1
            if clock() - t0 >= settings.window_s:
                break
        synchronize()
        t1 = clock()
        joules = _increase(counter.read_joules() - e0, t1 - t0, "an inference window", counter)
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
    e0, t0 = counter.read_joules(), clock()
    sleep(seconds)
    t1 = clock()
    return _increase(counter.read_joules() - e0, t1 - t0, "the idle window", counter) / (t1 - t0)


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


# --------------------------------------------------------------------------------------------- back ends

_ORT_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def measure_onnx(
    model_path: str | Path,
    *,
    device: str = "cpu",
    batch: int = 1,
    dtype: str | None = None,
    runtime: str = "onnxruntime",
    shapes: Mapping[str, Sequence[int]] | None = None,
    counter: EnergyCounter | None = None,
    settings: ProtocolSettings = ProtocolSettings(),
    seed: int = 0,
    clock: Clock = time.perf_counter,
    sleep: Callable[[float], object] = time.sleep,
) -> EnergyMeasurement:
    """Measure one inference of an ONNX model run by onnxruntime on random inputs.

    Inputs are drawn from the graph's input types (floats: standard normal; integers and booleans: 0 or 1,
    valid as token ids, masks and indices). A symbolic first dimension is bound to ``batch``; other symbolic
    dimensions need ``shapes``. On CUDA, inputs and outputs stay on the GPU (I/O binding).

    Args:
        model_path: the ``.onnx`` file (with its external weight file if it has one).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        batch: samples per inference.
        dtype: precision label of the row; by default the dominant floating type of the weights.
        runtime: only ``"onnxruntime"``.
        shapes: full input shapes by input name, overriding the graph's.
        counter: the energy counter; by default NVML for CUDA and RAPL for the CPU.
        settings: protocol durations (s) and counts.
        seed: seed of the random inputs.
        clock, sleep: time source and idle wait (seconds).

    Raises:
        MeasurementError: onnxruntime or the device's execution provider is missing, the model does not run,
            or the counter is absent or broken. InputFileError: the file is missing.
    """
    if runtime != "onnxruntime":
        raise MeasurementError(f"unknown runtime {runtime!r}: only onnxruntime can run ONNX files here")
    path = Path(model_path)
    if not path.is_file():
        raise InputFileError(f"model file {path} does not exist or is not a file")
    kind, index = parse_device(device)
    ort = _import_onnxruntime()
    provider = "CUDAExecutionProvider" if kind == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise MeasurementError(
            f"onnxruntime {ort.__version__} has no {provider}: install onnxruntime-gpu to measure on {device}"
        )
    options = [{"device_id": index}] if kind == "cuda" else [{}]
    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3  # errors only: warnings would interleave with the progress lines
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options, providers=[provider], provider_options=options
        )
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        raise MeasurementError(f"onnxruntime cannot load {path}: {exc}") from exc
    rng = np.random.default_rng(seed)
    feeds = {arg.name: _random_input(arg, batch, shapes or {}, rng) for arg in session.get_inputs()}
    run_once, synchronize = _ort_runner(ort, session, feeds, kind, index)
    try:
        run_once()
    except Exception as exc:
        raise MeasurementError(f"onnxruntime cannot run {path} at batch {batch}: {exc}") from exc
    sleep(SETTLE_AFTER_CHECK_S)  # let clocks and power fall back before idle power is measured

    result = _measure_with(counter, device, run_once, synchronize, settings, clock, sleep)
    return replace(
        result,
        runtime=f"onnxruntime-{kind}",
        versions={"onnxruntime": ort.__version__, **_versions("onnx", "numpy")},
        dtype=dtype or _dominant_float_type(path),
    )


#: Pause after the check inference so that idle power is not read while the device is still boosted, s.
SETTLE_AFTER_CHECK_S = 2.0


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MeasurementError(
            "onnxruntime is not installed: `pip install onnxruntime` (or onnxruntime-gpu for CUDA) "
            "to measure ONNX models"
        ) from exc
    return onnxruntime


def _random_input(arg: Any, batch: int, shapes: Mapping[str, Sequence[int]], rng: np.random.Generator) -> Any:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise MeasurementError(
            f"input {arg.name!r} has type {arg.type}, which random inputs cannot be made for"
        )
    if arg.name in shapes:
        shape = tuple(int(d) for d in shapes[arg.name])
    else:
        shape = tuple(_bind(arg.name, i, d, batch) for i, d in enumerate(arg.shape))
    if any(d < 1 for d in shape):
        raise InvalidDimensionError(
            f"input {arg.name!r} would have shape {shape}; every dimension must be >= 1"
        )
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 2, size=shape).astype(dtype)


def _bind(name: str, position: int, dim: int | str | None, batch: int) -> int:
    if isinstance(dim, int) and dim > 0:
        if position == 0 and dim != batch:
            raise MeasurementError(
                f"input {name!r} has a fixed batch dimension of {dim}: measure it with --batch {dim} "
                "or export the model with a symbolic batch dimension"
            )
        return dim
    if position == 0:
        return batch
    raise UnboundDimensionError(
        f"dimension {position} ({dim!r}) of input {name!r} is symbolic: give the input's full shape"
    )


def _ort_runner(
    ort: Any, session: Any, feeds: dict[str, np.ndarray], kind: str, index: int
) -> tuple[Callable[[], object], Callable[[], object]]:
    """``run_once`` and ``synchronize`` for a session; on CUDA the tensors stay on the GPU."""
    if kind == "cpu":
        return (lambda: session.run(None, feeds)), (lambda: None)
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", index))
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", index)
    return (lambda: session.run_with_iobinding(binding)), binding.synchronize_outputs


def _dominant_float_type(path: Path) -> str:
    """The floating type holding the most weight elements (inputs when there are no float weights)."""
    import onnx

    from estimator.dtypes import dtype_name

    model = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for t in model.graph.initializer:
        name = dtype_name(t.data_type)
        if name.startswith(("float", "bfloat")):
            counts[name] = counts.get(name, 0) + int(np.prod(t.dims, dtype=np.int64))
    if not counts:
        for vi in model.graph.input:
            name = dtype_name(vi.type.tensor_type.elem_type)
            if name.startswith(("float", "bfloat")):
                counts[name] = counts.get(name, 0) + 1
    if not counts:
        raise MeasurementError(
            f"{path} has no floating-point weights or inputs: give its precision with --dtype"
        )
    return max(counts, key=lambda k: counts[k])


def measure_torch_module(
    module: Any,
    example_inputs: Sequence[Any],
    *,
    device: str = "cuda",
    dtype: str = "float32",
    counter: EnergyCounter | None = None,
    settings: ProtocolSettings = ProtocolSettings(),
    clock: Clock = time.perf_counter,
    sleep: Callable[[float], object] = time.sleep,
    idle_power_w: float | None = None,
) -> EnergyMeasurement:
    """Measure one forward pass of a PyTorch module in eager mode (``torch.inference_mode``).

    The module and its floating-point inputs are moved to ``device`` and cast to ``dtype``; integer inputs
    (token ids) keep their type. CUDA work is synchronised at the end of each window.

    Args:
        module: a ``torch.nn.Module``.
        example_inputs: positional inputs of one forward pass, batch included.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        counter: the energy counter; by default NVML for CUDA and RAPL for the CPU.
        settings: protocol durations (s) and counts.
        clock, sleep: time source and idle wait (seconds).
        idle_power_w: idle power (W) measured earlier; skips the idle window.

    Raises:
        MeasurementError: torch is missing, the dtype is unknown, or the counter is absent or broken.
    """
    try:
        import torch
    except ImportError as exc:
        raise MeasurementError("PyTorch is not installed: `pip install torch` to measure a module") from exc
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in dtypes:
        raise MeasurementError(f"unknown dtype {dtype!r}: use one of {', '.join(dtypes)}")
    kind, index = parse_device(device)
    target = torch.device(kind, index) if kind == "cuda" else torch.device("cpu")
    module = module.to(device=target, dtype=dtypes[dtype]).eval()
    inputs = [
        x.to(device=target, dtype=dtypes[dtype]) if x.is_floating_point() else x.to(device=target)
        for x in example_inputs
    ]

    def run_once() -> None:
        with torch.inference_mode():
            module(*inputs)

    def synchronize() -> None:
        if kind == "cuda":
            torch.cuda.synchronize(target)

    result = _measure_with(counter, device, run_once, synchronize, settings, clock, sleep, idle_power_w)
    versions = {"torch": torch.__version__}
    if kind == "cuda":
        versions["cuda"] = str(torch.version.cuda)
        versions["cudnn"] = str(torch.backends.cudnn.version())
    return replace(result, runtime=f"pytorch-{kind}", versions=versions, dtype=dtype)


def _measure_with(
    counter: EnergyCounter | None,
    device: str,
    run_once: Callable[[], object],
    synchronize: Callable[[], object],
    settings: ProtocolSettings,
    clock: Clock,
    sleep: Callable[[float], object],
    idle_power_w: float | None = None,
) -> EnergyMeasurement:
    """Run the protocol with the given counter, or with the device's default one (closed afterwards)."""
    own = counter is None
    counter = default_counter(device) if counter is None else counter
    try:
        return measure_energy(
            counter,
            run_once,
            settings=settings,
            synchronize=synchronize,
            clock=clock,
            sleep=sleep,
            idle_power_w=idle_power_w,
        )
    finally:
        close = getattr(counter, "close", None)
        if own and close is not None:
            close()


def _versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


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
