"""Cumulative energy counters: NVML for NVIDIA GPUs, RAPL for CPU packages, and a simulated one for tests.

An energy counter returns the energy (in joules) the device has used since some fixed origin; the energy of
a window is the difference of two readings. Counters are read, never sampled power: on A100/H100, sampled
power covers only about a quarter of the run time (Yang et al., SC'24), while the NVML total-energy counter
and RAPL integrate in hardware.

Each counter names its measurement boundary (see the project's EVALUATION.md): ``gpu-board-nvml`` for the
whole GPU board, ``cpu-package-rapl`` for the CPU packages (cores, caches and uncore; not DRAM).

Both real counters import nothing and touch no device until they are constructed; an absent library, an
unsupported device or an unreadable file raises :class:`~estimator.errors.MeasurementError` naming the cause.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from estimator.errors import MeasurementError

BOUNDARY_NVML = "gpu-board-nvml"
BOUNDARY_RAPL = "cpu-package-rapl"

POWERCAP_ROOT = Path("/sys/class/powercap")

# Package domains are top-level zones, "intel-rapl:0", "intel-rapl:1"; "intel-rapl:0:0" are their sub-zones
# (cores, uncore, dram), which the package already contains. AMD processors expose the same interface.
_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")


@runtime_checkable
class EnergyCounter(Protocol):
    """A monotonic cumulative energy counter of one device (or a sum of packages).

    Attributes:
        name: which counter this is, e.g. ``"nvml"`` or ``"rapl"``.
        boundary: what the energy covers, e.g. ``"gpu-board-nvml"``.
        device_name: the measured device as its driver names it.
    """

    name: str
    boundary: str
    device_name: str

    def read_joules(self) -> float:
        """Energy used since the counter's origin, in joules; never decreases between two reads."""
        ...

    def metadata(self) -> dict[str, Any]:
        """Facts to store with a measurement: driver version, clocks in MHz, power limit in W, ..."""
        ...


class NvmlCounter:
    """The NVML total-energy counter of one NVIDIA GPU (``nvmlDeviceGetTotalEnergyConsumption``).

    The counter holds millijoules since the driver was loaded, in 64 bits (it does not wrap in practice).
    Supported on Volta and newer data-centre GPUs and most recent consumer GPUs. Needs ``nvidia-ml-py``
    (``import pynvml``); call :meth:`close` (or use ``with``) to shut NVML down.

    Args:
        index: the GPU's NVML index (as in ``cuda:N`` when ``CUDA_VISIBLE_DEVICES`` is unset).
    """

    name = "nvml"
    boundary = BOUNDARY_NVML

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise MeasurementError(
                "NVML is not available: install nvidia-ml-py (`pip install nvidia-ml-py`) to read GPU energy"
            ) from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise MeasurementError(
                f"NVML could not start ({exc}): no NVIDIA driver or GPU on this machine"
            ) from exc
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.device_name = _text(pynvml.nvmlDeviceGetName(self._handle))
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise MeasurementError(
                f"GPU {index} has no usable NVML energy counter ({exc}); it needs a Volta or newer GPU"
            ) from exc
        self.index = index

    def read_joules(self) -> float:
        """Energy used by the board since the driver was loaded, in joules."""
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0
        except self._nvml.NVMLError as exc:
            raise MeasurementError(
                f"GPU {self.index}: the NVML energy counter could not be read ({exc})"
            ) from exc

    def metadata(self) -> dict[str, Any]:
        """Device name, driver and NVML versions, current SM and memory clocks (MHz), power limit (W)."""
        nvml = self._nvml
        clocks = {
            "sm_clock_mhz": nvml.NVML_CLOCK_SM,
            "memory_clock_mhz": nvml.NVML_CLOCK_MEM,
        }
        out: dict[str, Any] = {
            "device_name": self.device_name,
            "driver": self._driver_version(),
        }
        for key, clock in clocks.items():
            out[key] = self._optional(nvml.nvmlDeviceGetClockInfo, clock)
        limit_mw = self._optional(nvml.nvmlDeviceGetPowerManagementLimit)
        out["power_limit_w"] = None if limit_mw is None else limit_mw / 1000.0
        return out

    def _driver_version(self) -> str:
        """The NVIDIA driver version, ``unknown`` when NVML cannot tell."""
        try:
            return _text(self._nvml.nvmlSystemGetDriverVersion())
        except self._nvml.NVMLError:
            return "unknown"

    def _optional(self, query: Callable[..., Any], *args: Any) -> Any:
        """A value NVML may not support on this device: None then, never an error."""
        try:
            return query(self._handle, *args)
        except self._nvml.NVMLError:
            return None

    def close(self) -> None:
        """Shut NVML down (once per counter)."""
        self._nvml.nvmlShutdown()

    def __enter__(self) -> NvmlCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RaplCounter:
    """The RAPL package-energy counters of the CPU(s), read from the Linux powercap interface, summed.

    Each package exposes ``energy_uj`` (microjoules) that wraps to zero after ``max_energy_range_uj``;
    a reading that is smaller than the previous one is taken as one wrap. The counter must therefore be
    read at least once per wrap period (minutes at full load; the measurement protocol reads it every
    window). Since 2020 ``energy_uj`` is readable by root only on most distributions.

    Args:
        root: the powercap folder (a fake tree in tests).
        cpuinfo: the file to read the processor's model name from.
    """

    name = "rapl"
    boundary = BOUNDARY_RAPL

    def __init__(self, root: Path = POWERCAP_ROOT, cpuinfo: Path = Path("/proc/cpuinfo")) -> None:
        zones = sorted(p for p in Path(root).glob("intel-rapl:*") if _PACKAGE_ZONE.match(p.name))
        zones = [z for z in zones if _read_text(z / "name").startswith("package")]
        if not zones:
            raise MeasurementError(
                f"no RAPL package domain under {root}: this CPU or kernel exposes no energy counter "
                "(load the intel_rapl_common module, or measure on a GPU with NVML)"
            )
        self._zones = zones
        self._max_uj = [_read_int(z / "max_energy_range_uj") for z in zones]
        self._last_uj = [_read_int(z / "energy_uj") for z in zones]
        self._total_uj = 0
        self.device_name = _cpu_model_name(cpuinfo)

    def read_joules(self) -> float:
        """Energy used by all CPU packages since this counter was made, in joules (wraps accounted for)."""
        for i, zone in enumerate(self._zones):
            now = _read_int(zone / "energy_uj")
            step = now - self._last_uj[i]
            if step < 0:
                step += self._max_uj[i]
            self._total_uj += step
            self._last_uj[i] = now
        return self._total_uj / 1e6

    def metadata(self) -> dict[str, Any]:
        """Processor model and the package domains summed."""
        return {"device_name": self.device_name, "rapl_domains": ",".join(z.name for z in self._zones)}


class SimulatedCounter:
    """A counter whose energy follows a known model, for tests and dry runs of the measurement code.

    ``joules = idle_w * clock() + (sum of the energies of the inferences recorded so far)``; the caller's
    ``run_once`` calls :meth:`record_inference` once per inference.

    Args:
        clock: seconds, the same clock the protocol uses.
        idle_w: power drawn at idle, in watts.
        joules_per_inference: energy one inference adds above idle unless told otherwise, in joules.
        boundary: the boundary of the real counter it stands in for (rows must name a real boundary).
    """

    name = "simulated"

    def __init__(
        self,
        clock: Callable[[], float],
        idle_w: float,
        joules_per_inference: float = 0.0,
        boundary: str = BOUNDARY_NVML,
    ) -> None:
        self._clock = clock
        self.idle_w = idle_w
        self.joules_per_inference = joules_per_inference
        self.boundary = boundary
        self.inferences = 0
        self._dynamic_j = 0.0
        self.device_name = "simulated device"

    def record_inference(self, joules: float | None = None) -> None:
        """Count one inference that used ``joules`` above idle (default ``joules_per_inference``)."""
        self.inferences += 1
        self._dynamic_j += self.joules_per_inference if joules is None else joules

    def read_joules(self) -> float:
        """Modelled energy since the clock's origin, in joules."""
        return self.idle_w * self._clock() + self._dynamic_j

    def metadata(self) -> dict[str, Any]:
        """The model's parameters."""
        return {"device_name": self.device_name, "idle_w": self.idle_w}


def default_counter(device: str) -> EnergyCounter:
    """The counter for a device string: NVML for ``"cuda"``/``"cuda:N"``, RAPL for ``"cpu"``.

    Raises:
        MeasurementError: the device string is not understood or the machine has no such counter.
    """
    kind, index = parse_device(device)
    return NvmlCounter(index) if kind == "cuda" else RaplCounter()


def parse_device(device: str) -> tuple[str, int]:
    """Split ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into (kind, index).

    Raises:
        MeasurementError: any other string.
    """
    match = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", device.strip().lower())
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise MeasurementError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    return match.group(1), int(match.group(2) or 0)


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError as exc:
        raise MeasurementError(
            f"RAPL counter {path} is not readable (permission denied): run as root, "
            f"or `sudo chmod a+r {path}`"
        ) from exc
    except OSError as exc:
        raise MeasurementError(f"RAPL counter {path} cannot be read ({exc.strerror or exc})") from exc


def _read_int(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError as exc:
        raise MeasurementError(f"RAPL counter {path} holds {text!r}, not an integer") from exc


def _cpu_model_name(cpuinfo: Path) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return "unknown CPU"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
