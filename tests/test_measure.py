"""The measurement protocol, counters and table writing, driven by a simulated counter and a fake clock."""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnx.parser
import pandas as pd
import pytest

from estimator.data.counters import BOUNDARY_RAPL, NvmlCounter, RaplCounter, SimulatedCounter, parse_device
from estimator.data.measure import (
    ProtocolSettings,
    measure_configurations,
    measure_energy,
    measure_idle_power,
    measure_onnx,
    measurement_row,
    parse_batches,
    slug,
)
from estimator.data.measure.protocol import read_stamped
from estimator.data.measurements import check_frame, read_measurements
from estimator.errors import InvalidDimensionError, MeasurementError, UnboundDimensionError


class FakeClock:
    """Seconds that pass only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeDevice:
    """An accelerator with a launch queue: ``run_once`` only enqueues, ``synchronize`` waits for the queue.

    Each inference costs ``launch_s`` of host time and ``compute_s`` of device time and adds the counter's
    ``joules_per_inference`` above idle.
    """

    def __init__(
        self, clock: FakeClock, counter: SimulatedCounter, launch_s: float, compute_s: float
    ) -> None:
        self.clock, self.counter = clock, counter
        self.launch_s, self.compute_s = launch_s, compute_s
        self.queued_s = 0.0
        self.runs = 0
        self.syncs = 0

    def run_once(self) -> None:
        self.clock.sleep(self.launch_s)
        self.queued_s += self.compute_s
        self.counter.record_inference()
        self.runs += 1

    def synchronize(self) -> None:
        self.clock.sleep(self.queued_s)
        self.queued_s = 0.0
        self.syncs += 1


def _synchronous(clock: FakeClock, counter: SimulatedCounter, latency_s: float) -> FakeDevice:
    return FakeDevice(clock, counter, launch_s=latency_s, compute_s=0.0)


FAST = ProtocolSettings(idle_s=1.0, warmup_s=0.0, warmup_runs=3, window_s=1.0, repeats=3)


def test_arithmetic_of_one_configuration() -> None:
    clock = FakeClock()
    counter = SimulatedCounter(clock, idle_w=50.0, joules_per_inference=0.2)
    device = _synchronous(clock, counter, latency_s=0.25)
    result = measure_energy(
        counter,
        device.run_once,
        settings=FAST,
        synchronize=device.synchronize,
        clock=clock,
        sleep=clock.sleep,
    )
    # Idle: 50 W exactly. Each window: 4 inferences of 0.25 s = 1 s, 50 J idle + 4 * 0.2 J.
    assert result.idle_power_w == pytest.approx(50.0)
    assert [w.inferences for w in result.windows] == [4, 4, 4]
    assert result.joules_per_inference == pytest.approx((50.0 * 1.0 + 4 * 0.2) / 4)
    assert result.joules_per_inference_idle_subtracted == pytest.approx(0.2)
    assert result.latency_s == pytest.approx(0.25)
    assert result.power_w == pytest.approx(50.0 + 4 * 0.2)
    assert result.spread_rel() == pytest.approx(0.0, abs=1e-12)
    assert result.counter["boundary"] == "gpu-board-nvml"
    # 3 warm-up runs, then 4 per window.
    assert device.runs == 3 + 3 * 4


def test_spreads_follow_their_definitions() -> None:
    clock = FakeClock()
    counter = SimulatedCounter(clock, idle_w=10.0)
    per_inference = iter([0.2] * 3 + [0.2] * 4 + [0.25] * 4 + [0.3] * 4)  # warm-up, then three windows

    def run_once() -> None:
        clock.sleep(0.25)
        counter.record_inference(next(per_inference))

    result = measure_energy(counter, run_once, settings=FAST, clock=clock, sleep=clock.sleep)
    above_idle = [0.2, 0.25, 0.3]
    with_idle = [10.0 * 0.25 + e for e in above_idle]
    assert [w.joules_per_inference_idle_subtracted for w in result.windows] == pytest.approx(above_idle)
    assert result.spread_rel(idle_subtracted=True) == pytest.approx((0.3 - 0.2) / 0.25)
    assert result.spread_rel() == pytest.approx(
        (max(with_idle) - min(with_idle)) / statistics.median(with_idle)
    )
    assert result.cv(idle_subtracted=True) == pytest.approx(0.05 / 0.25)
    assert result.joules_per_inference == pytest.approx(10.0 * 0.25 + 0.25)


def test_window_waits_for_the_device_queue() -> None:
    """The host enqueues faster than the device computes; the window must end after the queue drains."""
    clock = FakeClock()
    counter = SimulatedCounter(clock, idle_w=40.0, joules_per_inference=1.0)
    device = FakeDevice(clock, counter, launch_s=1 / 64, compute_s=7 / 64)  # binary fractions: exact sums
    settings = ProtocolSettings(idle_s=2.0, warmup_s=0.5, warmup_runs=0, window_s=1.0, repeats=4)
    result = measure_energy(
        counter,
        device.run_once,
        settings=settings,
        synchronize=device.synchronize,
        clock=clock,
        sleep=clock.sleep,
    )
    assert len(result.windows) == 4
    for window in result.windows:
        # 64 launches of 1/64 s fill the 1 s window; their 7/64 s each of device work follow at the sync.
        assert window.inferences == 64
        assert window.seconds == pytest.approx(64 * 0.125)
        assert window.latency_s == pytest.approx(0.125)
        assert window.joules_per_inference_idle_subtracted == pytest.approx(1.0)
    assert result.joules_per_inference == pytest.approx(40.0 * 0.125 + 1.0)
    # The warm-up is time based here: 32 launches fill its 0.5 s.
    assert device.runs == 32 + 4 * 64
    # One sync before the idle window, one after the warm-up, then one before and one after each window.
    assert device.syncs == 1 + 1 + 2 * 4


def test_given_idle_power_skips_the_idle_window() -> None:
    clock = FakeClock()
    counter = SimulatedCounter(clock, idle_w=30.0, joules_per_inference=0.5)
    device = _synchronous(clock, counter, latency_s=0.5)
    result = measure_energy(counter, device.run_once, settings=FAST, clock=clock, idle_power_w=20.0)
    assert result.idle_power_w == 20.0
    # Subtracting 20 W where 30 W was drawn leaves 10 W * 0.5 s per inference on top of 0.5 J.
    assert result.joules_per_inference_idle_subtracted == pytest.approx(0.5 + 10.0 * 0.5)
    assert clock.now == pytest.approx(0.5 * (3 + 3 * 2))


class StuckCounter:
    name, boundary, device_name = "stuck", BOUNDARY_RAPL, "broken device"

    def __init__(self, readings: list[float] | None = None) -> None:
        self.readings = readings

    def read_joules(self) -> float:
        return self.readings.pop(0) if self.readings else 123.0

    def metadata(self) -> dict[str, str]:
        return {}


def test_counter_that_does_not_advance_is_an_error() -> None:
    clock = FakeClock()
    device = _synchronous(clock, SimulatedCounter(clock, idle_w=1.0), latency_s=0.1)
    with pytest.raises(MeasurementError, match="did not advance over the idle window"):
        measure_energy(StuckCounter(), device.run_once, settings=FAST, clock=clock, sleep=clock.sleep)
    with pytest.raises(MeasurementError, match="did not advance over an inference window"):
        measure_energy(StuckCounter(), device.run_once, settings=FAST, clock=clock, idle_power_w=5.0)


def test_counter_going_backwards_is_reported_as_wrap() -> None:
    clock = FakeClock()
    device = _synchronous(clock, SimulatedCounter(clock, idle_w=1.0), latency_s=0.1)
    counter = StuckCounter(readings=[100.0, 200.0, 210.0, 5.0])  # idle, first window, then a reset
    with pytest.raises(MeasurementError, match=r"went backwards.*wrapped"):
        measure_energy(counter, device.run_once, settings=FAST, clock=clock, sleep=clock.sleep)


def test_stopped_clock_is_an_error() -> None:
    counter = SimulatedCounter(time.perf_counter, idle_w=1.0)
    with pytest.raises(MeasurementError, match="clock did not advance"):
        measure_energy(counter, lambda: None, settings=FAST, clock=lambda: 7.0, sleep=lambda s: None)


@pytest.mark.parametrize(
    "settings",
    [
        {"repeats": 2},
        {"window_s": 0.0},
        {"idle_s": -1.0},
        {"warmup_runs": -1},
    ],
)
def test_invalid_settings_are_refused(settings: dict) -> None:
    with pytest.raises(MeasurementError):
        ProtocolSettings(**settings)


def test_hygiene_floor_for_tables() -> None:
    ProtocolSettings().check_hygiene()
    with pytest.raises(MeasurementError, match="too short"):
        ProtocolSettings(window_s=0.2).check_hygiene()


# ------------------------------------------------------------------------------------------------- counters


def _zone(root: Path, zone: str, name: str, energy_uj: int, max_uj: int = 1_000_000) -> Path:
    folder = root / zone
    folder.mkdir()
    (folder / "name").write_text(name + "\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return folder


def test_rapl_sums_packages_and_ignores_subzones(tmp_path: Path) -> None:
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 100_000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 50_000)
    p1 = _zone(tmp_path, "intel-rapl:1", "package-1", 200_000)
    _zone(tmp_path, "intel-rapl:2", "psys", 999)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Fake Xeon 1234\n")
    counter = RaplCounter(root=tmp_path, cpuinfo=cpuinfo)
    assert counter.read_joules() == 0.0
    (p0 / "energy_uj").write_text("400000\n")
    (p1 / "energy_uj").write_text("700000\n")
    assert counter.read_joules() == pytest.approx((300_000 + 500_000) / 1e6)
    assert counter.device_name == "Fake Xeon 1234"
    assert counter.metadata()["rapl_domains"] == "intel-rapl:0,intel-rapl:1"
    assert counter.boundary == "cpu-package-rapl"


def test_rapl_counter_wrap_uses_max_energy_range(tmp_path: Path) -> None:
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 900_000, max_uj=1_000_000)
    counter = RaplCounter(root=tmp_path)
    (p0 / "energy_uj").write_text("50000\n")  # wrapped: 100000 to the top, then 50000
    assert counter.read_joules() == pytest.approx(150_000 / 1e6)
    (p0 / "energy_uj").write_text("60000\n")
    assert counter.read_joules() == pytest.approx(160_000 / 1e6)


def test_rapl_absent_or_unreadable_is_a_measurement_error(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(MeasurementError, match="no RAPL package domain"):
        RaplCounter(root=tmp_path)
    zone = _zone(tmp_path, "intel-rapl:0", "package-0", 1)
    original = Path.read_text

    def denied(self: Path, *args, **kwargs) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(MeasurementError, match=r"not readable.*permission"):
        RaplCounter(root=tmp_path)
    monkeypatch.setattr(Path, "read_text", original)
    (zone / "energy_uj").write_text("lots\n")
    with pytest.raises(MeasurementError, match="not an integer"):
        RaplCounter(root=tmp_path)


def test_nvml_missing_is_a_measurement_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if nvidia-ml-py were absent
    with pytest.raises(MeasurementError, match="nvidia-ml-py"):
        NvmlCounter(0)


def test_device_strings() -> None:
    assert parse_device("cpu") == ("cpu", 0)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("CUDA:3") == ("cuda", 3)
    for bad in ("gpu", "cpu:1", "cuda:x"):
        with pytest.raises(MeasurementError, match="unknown device"):
            parse_device(bad)


# ------------------------------------------------------------------------------------------------ rows


def _measured(idle_w: float = 50.0, joules: float = 0.2, latency_s: float = 0.25):
    clock = FakeClock()
    counter = SimulatedCounter(clock, idle_w=idle_w, joules_per_inference=joules)
    device = _synchronous(clock, counter, latency_s=latency_s)
    result = measure_energy(counter, device.run_once, settings=FAST, clock=clock, sleep=clock.sleep)
    return replace(result, runtime="pytorch-cuda", dtype="float16")


def test_row_follows_the_schema() -> None:
    result = _measured()
    row = measurement_row(result, model_ref="models/x.onnx", batch=8, family="ResNet", task="imagenet")
    assert check_frame(pd.DataFrame([row])) == []
    assert row["joules_per_inference"] == pytest.approx(12.7)
    assert row["joules_per_sample"] == pytest.approx(12.7 / 8)
    assert row["joules_per_inference_idle_subtracted"] == pytest.approx(0.2)
    assert row["idle_subtracted"] is False
    assert row["throughput"] == pytest.approx(8 / 0.25)
    assert row["repeats"] == 3
    assert row["group"] == "models/x.onnx"
    assert row["hardware"] == "simulated-device"
    above = measurement_row(result, model_ref="m", batch=1, idle_subtracted=True)
    assert above["joules_per_inference"] == pytest.approx(0.2)
    assert above["joules_per_inference_with_idle"] == pytest.approx(12.7)


def test_row_refuses_energy_below_the_idle_floor() -> None:
    result = _measured(joules=0.0)
    with pytest.raises(MeasurementError, match="idle noise floor"):
        measurement_row(result, model_ref="m", batch=1, idle_subtracted=True)


def test_slug_and_batches() -> None:
    assert slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert parse_batches("1, 8,32,8") == (1, 8, 32)
    for bad in ("0", "x", "1,,2"):
        with pytest.raises(InvalidDimensionError):
            parse_batches(bad)


# -------------------------------------------------------------------------------------- many configurations


def _row_for(batch: int) -> dict:
    return measurement_row(_measured(joules=0.1 * batch), model_ref="m.onnx", batch=batch)


def test_interruption_keeps_finished_rows_and_resume_skips_them(tmp_path: Path) -> None:
    out = tmp_path / "rows.csv"
    measured: list[int] = []

    def measure(batch: int) -> dict:
        if batch == 32:
            raise KeyboardInterrupt
        measured.append(batch)
        return _row_for(batch)

    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        measure_configurations([1, 8, 32, 128], measure, out, progress=lines.append)
    table = read_measurements(out)
    assert list(table["batch"]) == [1, 8]
    assert list(table["joules_per_inference"]) == pytest.approx([12.5 + 0.1, 12.5 + 0.8])
    assert len(lines) == 2 and lines[0].startswith("[1/4]")

    def key(row) -> tuple:
        return (row["model_ref"], int(row["batch"]))

    new = measure_configurations(
        [1, 8, 32, 128],
        _row_for,
        out,
        key=key,
        config_key=lambda b: ("m.onnx", b),
        progress=lines.append,
    )
    assert [r["batch"] for r in new] == [32, 128]
    assert list(read_measurements(out)["batch"]) == [1, 8, 32, 128]


# --------------------------------------------------------------------------------------- onnxruntime


def _write_model(path: Path, text: str, weights: dict[str, np.ndarray] | None = None) -> Path:
    model = onnx.parser.parse_model(text)
    for name, value in (weights or {}).items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


MLP = """
<ir_version: 8, opset_import: ["" : 17]>
mlp (float[N, 64] x) => (float[N, 64] y)
{
    h = MatMul(x, w)
    y = Relu(h)
}
"""
MLP_WEIGHTS = {"w": np.full((64, 64), 0.01, dtype=np.float32)}


def test_measure_onnx_on_the_cpu_with_a_simulated_counter(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = _write_model(tmp_path / "mlp.onnx", MLP, MLP_WEIGHTS)
    counter = SimulatedCounter(time.perf_counter, idle_w=25.0, boundary=BOUNDARY_RAPL)
    settings = ProtocolSettings(idle_s=0.05, warmup_s=0.02, warmup_runs=3, window_s=0.05, repeats=3)
    result = measure_onnx(model, device="cpu", batch=4, counter=counter, settings=settings)
    assert result.runtime == "onnxruntime-cpu"
    assert result.dtype == "float32"
    assert "onnxruntime" in result.versions
    # The simulated device draws 25 W whether busy or not: each window's energy is 25 W times its length.
    for window in result.windows:
        assert window.inferences >= 1
        assert window.seconds >= settings.window_s
        assert window.joules == pytest.approx(25.0 * window.seconds, rel=1e-2)
        assert window.joules_per_inference == pytest.approx(25.0 * window.latency_s, rel=1e-2)
    # Real clock on a shared machine: a preemption between a counter read and its clock stamps moves a 50 ms
    # window by a fraction of a percent (the exact bracketing is tested with a fake clock below).
    assert result.idle_power_w == pytest.approx(25.0, rel=1e-2)
    assert abs(result.joules_per_inference_idle_subtracted) < 0.02 * result.joules_per_inference
    row = measurement_row(result, model_ref="mlp.onnx", batch=4)
    assert row["boundary"] == "cpu-package-rapl" and row["runtime"] == "onnxruntime-cpu"
    assert math.isfinite(row["spread_rel"])


def test_measure_onnx_binds_only_the_batch_dimension(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    counter = SimulatedCounter(time.perf_counter, idle_w=1.0)
    fixed = _write_model(
        tmp_path / "fixed.onnx",
        '<ir_version: 8, opset_import: ["" : 17]> g (float[1, 4] x) => (float[1, 4] y) { y = Relu(x) }',
    )
    with pytest.raises(MeasurementError, match="fixed batch dimension of 1"):
        measure_onnx(fixed, batch=8, counter=counter)
    seq = _write_model(
        tmp_path / "seq.onnx",
        '<ir_version: 8, opset_import: ["" : 17]> g (float[N, S] x) => (float[N, S] y) { y = Relu(x) }',
    )
    with pytest.raises(UnboundDimensionError, match="'S'"):
        measure_onnx(seq, batch=2, counter=counter)
    with pytest.raises(MeasurementError, match="only onnxruntime"):
        measure_onnx(seq, runtime="tensorrt", counter=counter)


def test_missing_onnxruntime_is_a_measurement_error(tmp_path: Path, monkeypatch) -> None:
    model = _write_model(tmp_path / "m.onnx", MLP, MLP_WEIGHTS)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MeasurementError, match="pip install onnxruntime"):
        measure_onnx(model, counter=SimulatedCounter(time.perf_counter, idle_w=1.0))


def test_measure_torch_module_on_the_cpu() -> None:
    torch = pytest.importorskip("torch")
    from estimator.data.measure import measure_torch_module

    counter = SimulatedCounter(time.perf_counter, idle_w=10.0, boundary=BOUNDARY_RAPL)
    module = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU())
    settings = ProtocolSettings(idle_s=0.02, warmup_s=0.0, warmup_runs=2, window_s=0.03, repeats=3)
    result = measure_torch_module(
        module, [torch.ones(2, 16)], device="cpu", dtype="bfloat16", counter=counter, settings=settings
    )
    assert result.runtime == "pytorch-cpu"
    assert result.dtype == "bfloat16"
    assert result.versions["torch"] == torch.__version__
    assert next(module.parameters()).dtype == torch.bfloat16
    for window in result.windows:
        assert window.joules == pytest.approx(10.0 * window.seconds, rel=1e-2)


def test_nvml_errors_mid_run_become_measurement_errors(monkeypatch):
    import types

    from estimator.data.counters import NvmlCounter
    from estimator.errors import MeasurementError

    class NVMLError(Exception):
        pass

    state = {"reads": 0}

    def energy(_handle):
        state["reads"] += 1
        if state["reads"] > 1:  # the GPU falls off the bus after the constructor's check
            raise NVMLError("GPU is lost")
        return 123_000

    def driver():
        raise NVMLError("not supported")

    fake = types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: object(),
        nvmlDeviceGetName=lambda h: b"Fake GPU",
        nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlSystemGetDriverVersion=driver,
        nvmlDeviceGetClockInfo=lambda h, c: 1000,
        nvmlDeviceGetPowerManagementLimit=lambda h: 300_000,
        NVML_CLOCK_SM=0,
        NVML_CLOCK_MEM=1,
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    counter = NvmlCounter(0)
    assert counter.metadata()["driver"] == "unknown"
    with pytest.raises(MeasurementError, match="could not be read"):
        counter.read_joules()


def test_a_failing_batch_does_not_stop_the_others(monkeypatch, tmp_path):
    from estimator.data.measure import table as m
    from estimator.errors import MeasurementError

    calls = []

    def fake_measure_onnx(model, *, batch, **kwargs):
        calls.append(batch)
        if batch == 8:
            raise MeasurementError("out of memory at batch 8")
        raise MeasurementError(f"stop here {batch}")  # any other batch: also a per-batch failure

    monkeypatch.setattr(m, "measure_onnx", fake_measure_onnx)
    monkeypatch.setattr(m, "_import_onnxruntime", lambda: None)
    lines = []
    with pytest.raises(MeasurementError, match=r"no batch size of x\.onnx could be measured"):
        m.measure_command(tmp_path / "x.onnx", batch="1,8,32", counter=object(), progress=lines.append)
    assert calls == [1, 8, 32]
    assert any("batch 8: not measured (out of memory" in line for line in lines)


class SlowReadCounter(SimulatedCounter):
    """A simulated counter whose read takes ``read_s`` of the fake clock and returns the energy at mid-read."""

    def __init__(self, clock: FakeClock, idle_w: float, read_s: float) -> None:
        super().__init__(clock, idle_w=idle_w)
        self._fake = clock
        self.read_s = read_s

    def read_joules(self) -> float:
        self._fake.sleep(self.read_s / 2)
        joules = super().read_joules()
        self._fake.sleep(self.read_s / 2)
        return joules


def test_counter_reads_are_stamped_at_their_midpoint() -> None:
    # A 1 s idle window read by a counter that takes 0.1 s per read: stamped on one side only, the window would
    # look 0.1 s shorter or longer than the energy it holds (25 W read as 27.8 or 22.7 W); stamped at mid-read,
    # 25 W exactly.
    clock = FakeClock()
    counter = SlowReadCounter(clock, idle_w=25.0, read_s=0.1)
    assert measure_idle_power(counter, 1.0, clock=clock, sleep=clock.sleep) == pytest.approx(25.0, rel=1e-12)
    joules, stamp = read_stamped(counter, clock)
    assert stamp == pytest.approx(clock.now - 0.05) and joules == pytest.approx(25.0 * stamp)
