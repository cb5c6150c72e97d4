"""Hardware profile data: frozen dataclasses for a device's cited values (the file format is described in
:mod:`estimator.energy.hardware`, which reads the files)."""

from __future__ import annotations

from dataclasses import dataclass, field

from estimator.errors import ProfileError

__all__ = [
    "BOUNDARIES",
    "CONFIDENCES",
    "DTYPE_CLASSES",
    "CacheLevel",
    "Citation",
    "EnergyPerFlopTable",
    "HardwareProfile",
    "PeakFlopsTable",
    "PowerModel",
    "compute_dtype_class",
]

SCHEMA_VERSION = 1
CONFIDENCES = ("quoted", "derived", "estimated")
KINDS = ("gpu", "cpu", "soc")
#: Measurement boundaries a profile's predictions can refer to (see EVALUATION.md).
BOUNDARIES = ("gpu-board-nvml", "cpu-package-rapl", "soc-core-rail-dynamic", "wall-system")
#: Arithmetic classes, narrowest first; every dtype maps to one of them.
DTYPE_CLASSES = ("int8", "fp8", "fp16", "bf16", "fp32", "fp64")

# A class a device cannot execute runs as the next class (the runtime upcasts). fp32 and fp64 are required.
_FALLBACK = {"fp8": "fp16", "fp16": "fp32", "bf16": "fp32", "int8": "fp32"}

_DTYPE_TO_CLASS = {
    **{name: "fp64" for name in ("fp64", "float64", "double")},
    **{name: "fp32" for name in ("fp32", "float32", "float", "tf32")},
    **{name: "fp16" for name in ("fp16", "float16", "half")},
    **{name: "bf16" for name in ("bf16", "bfloat16")},
    **{name: "int8" for name in ("int8", "uint8", "int4", "uint4", "int2", "uint2")},
    # Wider integers and booleans have no fast paths; they are charged at the FP32 vector rate.
    **{name: "fp32" for name in ("int16", "uint16", "int32", "uint32", "int64", "uint64", "bool")},
}

_CACHE_SCOPES = ("per_unit", "shared")
_REQUIRED_TEXT = (
    "name",
    "display_name",
    "kind",
    "vendor",
    "architecture",
    "process_node",
    "compute_unit_name",
    "dram_type",
    "default_runtime",
    "measurement_boundary",
)


def compute_dtype_class(dtype: str) -> str:
    """Arithmetic class (``fp64``, ``fp32``, ``fp16``, ``bf16``, ``fp8`` or ``int8``) of a dtype name.

    All float8 variants map to ``fp8``; sub-byte and 8-bit integers to ``int8``; wider integers and
    ``bool`` to ``fp32`` (no fast integer paths are modelled). Raises ProfileError for an unknown name.
    """
    key = dtype.lower()
    if key.startswith("float8") or key == "fp8":
        return "fp8"
    if key not in _DTYPE_TO_CLASS:
        known = ", ".join(sorted({*_DTYPE_TO_CLASS, "float8e4m3fn", "float8e5m2"}))
        raise ProfileError(f"unknown dtype {dtype!r}; use one of: {known}")
    return _DTYPE_TO_CLASS[key]


@dataclass(frozen=True)
class Citation:
    """Where one profile value comes from.

    ``key`` is the dotted place of the value in the file (``peak_flops_per_s.fp32_vector``,
    ``cache.L2.size_bytes``), ``reference`` the full text of the cited source, ``confidence`` one of
    :data:`CONFIDENCES`, ``note`` the derivation or remark (may be empty).
    """

    key: str
    value: float
    source_id: str
    reference: str
    confidence: str
    note: str


@dataclass(frozen=True)
class PeakFlopsTable:
    """Dense peak arithmetic rates in FLOP/s (integer ops for int8), ``None`` where the device has no unit.

    ``*_vector`` are the SIMD / CUDA-core paths, ``*_matrix`` the matrix units (tensor cores, AMX).
    ``fp32_matrix`` is TF32 on NVIDIA Ampere and later (FP32 inputs on tensor cores).
    """

    fp64_vector: float
    fp32_vector: float
    fp64_matrix: float | None = None
    fp32_matrix: float | None = None
    fp16_vector: float | None = None
    fp16_matrix: float | None = None
    bf16_vector: float | None = None
    bf16_matrix: float | None = None
    fp8_matrix: float | None = None
    int8_vector: float | None = None
    int8_matrix: float | None = None

    def rate(self, dtype_class: str, matrix: bool) -> float | None:
        """Tabulated rate of one class and path in FLOP/s; ``None`` when the device has no such unit."""
        return getattr(self, f"{dtype_class}_{'matrix' if matrix else 'vector'}", None)


@dataclass(frozen=True)
class EnergyPerFlopTable:
    """Marginal dynamic energy in joules per FLOP (per op for int8) of each class the device executes.

    The value is for the path the class runs on by default: the matrix units where the device has them
    for that class, else the vector units. Static power is not included.
    """

    fp64: float
    fp32: float
    fp16: float | None = None
    bf16: float | None = None
    fp8: float | None = None
    int8: float | None = None


@dataclass(frozen=True)
class CacheLevel:
    """One on-chip memory level. ``size_bytes`` is per instance; ``units`` instances exist on the device.

    ``scope`` is ``per_unit`` (one private instance per SM or core) or ``shared`` (one instance shared by
    several units). ``energy_per_byte_j`` is the dynamic energy to read one byte from this level (J/B).
    """

    level: str
    scope: str
    units: int
    size_bytes: float
    energy_per_byte_j: float

    @property
    def total_size_bytes(self) -> float:
        """Capacity of all instances together, in bytes."""
        return self.size_bytes * self.units


@dataclass(frozen=True)
class PowerModel:
    """Power levels of the device in watts, at the level the sources give (board, package or module).

    ``static_w`` is what the device draws while busy that does not scale with work (leakage at operating
    voltage, clocks, uncore); ``idle_with_context_w`` is idle with a model loaded (a CUDA context keeps
    a GPU in a higher power state; equal to ``idle_w`` on CPUs).
    """

    tdp_w: float
    static_w: float
    idle_w: float
    idle_with_context_w: float


@dataclass(frozen=True)
class HardwareProfile:
    """A device: its compute, memory hierarchy, power and efficiency constants, with the sources.

    Counts and totals are for the whole profile, which is one device or, when ``sockets > 1``, the
    multi-socket system that was measured (see ``notes``).
    """

    name: str
    display_name: str
    kind: str
    vendor: str
    architecture: str
    process_node: str
    compute_unit_name: str
    dram_type: str
    default_runtime: str
    measurement_boundary: str
    sockets: int
    notes: str
    compute_units: int
    clock_hz: float
    peak_table_flops_per_s: PeakFlopsTable
    dram_bytes: float
    dram_bandwidth_bytes_per_s: float
    dram_energy_per_byte_j: float
    caches: tuple[CacheLevel, ...]
    power: PowerModel
    energy_table_j_per_flop: EnergyPerFlopTable
    achievable_compute_fraction: float
    achievable_bandwidth_fraction: float
    launch_overhead_s: float
    citations: tuple[Citation, ...]
    source_path: str
    #: Fraction of the dense matrix peak a FlashAttention-2 forward kernel reaches on this device (16-bit inputs,
    #: FLOPs counted as the two attention products); None where no figure is cited, and the v2 prior then
    #: times such kernels at ``achievable_compute_fraction`` (:func:`estimator.energy.gpu_paths.compute_paths`).
    fa2_compute_fraction: float | None = None
    #: (dtype, matrix) -> what executes it (:meth:`_executed`), filled as asked: priors ask per kernel.
    _executed_memo: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @property
    def tdp_w(self) -> float:
        """Thermal design power (board / package / module limit), W."""
        return self.power.tdp_w

    @property
    def static_w(self) -> float:
        """Power drawn while busy that does not scale with work, W."""
        return self.power.static_w

    @property
    def idle_w(self) -> float:
        """Idle power with no process attached, W."""
        return self.power.idle_w

    @property
    def idle_with_context_w(self) -> float:
        """Idle power with a model / CUDA context resident, W."""
        return self.power.idle_with_context_w

    def resolve_dtype(self, dtype: str, matrix: bool = True) -> tuple[str, bool]:
        """The (class, matrix path?) that actually executes ``dtype`` on this device.

        Rules, applied in order until a tabulated unit is found:
        1. the class on the matrix units (only when ``matrix`` is asked for);
        2. the class on the vector units;
        3. the class the runtime upcasts to: fp8 -> fp16, fp16 -> fp32, bf16 -> fp32, int8 -> fp32,
           and again from rule 1.
        fp32 and fp64 vector rates exist in every profile, so the search always ends.
        """
        dtype_class, on_matrix, _ = self._executed(dtype, matrix)
        return dtype_class, on_matrix

    def _executed(self, dtype: str, matrix: bool) -> tuple[str, bool, float]:
        try:
            return self._executed_memo[dtype, matrix]
        except KeyError:
            out = self._executed_memo[dtype, matrix] = self._resolve(dtype, matrix)
            return out

    def _resolve(self, dtype: str, matrix: bool) -> tuple[str, bool, float]:
        dtype_class = compute_dtype_class(dtype)
        table = self.peak_table_flops_per_s
        while True:
            for on_matrix in (True, False) if matrix else (False,):
                rate = table.rate(dtype_class, on_matrix)
                if rate is not None:
                    return dtype_class, on_matrix, rate
            dtype_class = _FALLBACK[dtype_class]

    def peak_flops_per_s(self, dtype: str, matrix: bool = True) -> float:
        """Dense peak rate in FLOP/s for ``dtype`` on the matrix (or vector) path, with fallbacks.

        A dtype or path the device lacks falls back as :meth:`resolve_dtype` describes (e.g. bf16 on a
        V100 -> its FP32 rate, int8 on an EPYC 7763 -> its FP32 vector rate); the result is never 0.
        """
        return self._executed(dtype, matrix)[2]

    def energy_per_flop_j(self, dtype: str) -> float:
        """Marginal dynamic energy in J per FLOP of ``dtype`` on its default (matrix where present) path.

        The class is resolved as in :meth:`resolve_dtype`, so bf16 on a device without bf16 units costs
        its FP32 energy. Static power is not included.
        """
        dtype_class, _ = self.resolve_dtype(dtype, matrix=True)
        energy = getattr(self.energy_table_j_per_flop, dtype_class)
        if energy is None:  # loading rejects such profiles; only a hand-built profile can get here
            raise ProfileError(f"hardware profile {self.name} has no energy_per_flop_j.{dtype_class}")
        return energy

    def ridge_point_flop_per_byte(self, dtype: str = "float32", matrix: bool = True) -> float:
        """Arithmetic intensity (FLOP per DRAM byte) above which a kernel of ``dtype`` is compute-bound."""
        return self.peak_flops_per_s(dtype, matrix) / self.dram_bandwidth_bytes_per_s

    def sources(self) -> dict[str, Citation]:
        """Every value of the profile with its citation, keyed by its dotted place in the file."""
        return {citation.key: citation for citation in self.citations}
