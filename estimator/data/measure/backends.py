"""Back ends that run a network under the protocol: onnxruntime (imported when called) and a PyTorch module."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from estimator.data.counters import EnergyCounter, default_counter, parse_device
from estimator.data.measure.protocol import (
    Clock,
    EnergyMeasurement,
    ProtocolSettings,
    _versions,
    measure_energy,
)
from estimator.errors import InputFileError, InvalidDimensionError, MeasurementError, UnboundDimensionError

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
