"""The energy-roofline prior: joules and seconds per kernel from first principles and a hardware profile.

**Model (named "energy-roofline v1").** For every kernel ``k`` (from :mod:`estimator.cost.kernels`), vectorised:

* ``t_compute = flops / (peak(dtype, path) * achievable_compute_fraction)``, the matrix path for
  contractions and attention, the vector path otherwise;
* ``t_memory = bytes_beyond_L1 / (dram_bandwidth * achievable_bandwidth_fraction)`` where the bytes are
  those served by L2 and beyond (profiles give no cache bandwidths, so cache-served traffic is timed at DRAM
  bandwidth - a conservative choice that only matters for memory-bound kernels);
* ``t = max(t_compute, t_memory, launch_overhead)`` (a kernel cannot finish faster than it is dispatched), and
  one inference takes at least one dispatch even when it launches no kernel;
* ``E_dynamic = flops * energy_per_flop(dtype) + sum over levels(bytes served by the level * its energy per byte)``,
  with the bytes per level from the BUTTER-E style placement in :mod:`estimator.energy.placement`;
* ``E = P_static * T + sum(E_dynamic)``, ``T = max(sum(t), launch_overhead)`` (kernels of one inference run one
  after another);
* **TDP clamp:** if ``E / T`` would exceed TDP the device throttles: ``T`` stretches to
  ``sum(E_dynamic) / (TDP - P_static)`` and the static energy grows with it.

``P_static`` follows the profile's measurement boundary: the board/package static power for boundaries that
include idle (``gpu-board-nvml``, ``cpu-package-rapl``, ``wall-system``); for the idle-subtracted
``soc-core-rail-dynamic`` only ``static_w - idle_w``. On CPUs the part above idle scales with the threads a
runtime uses (``threads / cores``), and so do the peak FLOP rates; DRAM bandwidth is shared.

No constant is fitted or hidden here: every number comes from the profile (with its citation) or from the
runtime table (:mod:`estimator.energy.runtimes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from estimator.cost.kernels import MATRIX_KINDS, KernelReport
from estimator.dtypes import dtype_bits
from estimator.energy.hardware import HardwareProfile
from estimator.energy.placement import CacheLevel, Placement, peak_live_bytes, place
from estimator.energy.runtimes import Runtime

#: Name and version of the prior, reported with every estimate.
PRIOR_NAME = "energy-roofline v1"
#: Boundaries whose measured energy excludes idle power.
IDLE_SUBTRACTED_BOUNDARIES = frozenset({"soc-core-rail-dynamic"})
_FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
#: 16-bit float types. A graph whose FLOPs are mostly in one of them was exported in the precision it runs in,
#: so its wider float kernels are islands the model itself computes in (diffusers' float32 upcasts in a bfloat16
#: pipeline: docs/diffusion_v3.md) and a re-typing keeps them.
_HALF_DTYPES = frozenset({"float16", "bfloat16"})
_WIDE_DTYPES = frozenset({"float32", "float64"})
#: What limits a kernel, by the index of the largest of its (compute, memory, launch) times.
BOUND_NAMES = np.array(["compute", "memory", "launch"])
BOUND_NAMES.setflags(write=False)
#: --dtype choices and the element type each means.
DTYPE_CHOICES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8"}


@dataclass(frozen=True)
class PriorResult:
    """The prior's answer for one inference (one forward pass at the graph's batch).

    Attributes:
        joules: energy of one inference at the profile's boundary, J.
        seconds: latency of one inference, s.
        static_joules: part of ``joules`` from static power, J.
        compute_joules: part from arithmetic, J.
        memory_joules: part from data movement, J, per level (``level_names`` order).
        kernel_joules: per-kernel energy including its share of static energy, J.
        kernel_seconds: per-kernel time after the TDP clamp, s.
        kernel_bound: per-kernel limiter: ``compute``, ``memory`` or ``launch``.
        throttled: whether the TDP clamp stretched the time.
        placement: where each kernel's bytes were served from.
        level_names: memory levels, DRAM last.
        threads: units (SMs or cores) a kernel runs on.
        boundary: the measurement boundary the joules refer to.
        name: the prior that computed the result (``energy-roofline v1`` or ``v2``).
        host_seconds: host time spent dispatching kernels and per call, s (0 in v1, which has no host term).
        wait_seconds: time the device waited for the host at idle-with-context power, s (0 in v1).
        notes: what the prior could not model for this graph (e.g. contractions without shapes).
        call_seconds: per-call host time before the first dispatch, s (0 in v1); the device waits through it
            and it is counted in the first launched kernel's time.
        call_joules: energy of that wait, J, included in the first launched kernel's joules.
    """

    joules: float
    seconds: float
    static_joules: float
    compute_joules: float
    memory_joules: np.ndarray
    kernel_joules: np.ndarray
    kernel_seconds: np.ndarray
    kernel_bound: np.ndarray
    throttled: bool
    placement: Placement
    level_names: tuple[str, ...]
    threads: int
    boundary: str
    name: str = PRIOR_NAME
    host_seconds: float = 0.0
    wait_seconds: float = 0.0
    notes: tuple[str, ...] = ()
    call_seconds: float = 0.0
    call_joules: float = 0.0

    def kernels_alone(self, launched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-kernel (seconds, joules) without the per-call wait that :attr:`kernel_seconds` and
        :attr:`kernel_joules` count in the first launched kernel (``launched``: kernels with launches), s and J."""
        seconds, joules = (
            np.array(self.kernel_seconds, dtype=float),
            np.array(self.kernel_joules, dtype=float),
        )
        if self.call_seconds > 0 and launched.any():
            first = int(np.argmax(launched))
            seconds[first] -= self.call_seconds
            joules[first] -= self.call_joules
        return seconds, joules

    @property
    def avg_power_w(self) -> float:
        """Average power over the inference, W."""
        return self.joules / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class KernelArrays:
    """Per-kernel inputs of the prior after a dtype override (bytes and FLOPs, float64 arrays)."""

    flops: np.ndarray
    weight_bytes: np.ndarray
    activation_bytes: np.ndarray
    write_bytes: np.ndarray
    launches: np.ndarray
    dtypes: tuple[str, ...]
    matrix: np.ndarray
    #: Per dtype, the kernels of that dtype on the matrix path and on the vector path (bool masks).
    dtype_paths: tuple[tuple[str, np.ndarray, np.ndarray], ...] = ()
    #: The (dtype, matrix path?) pairs the kernels have (per dtype in ``dtype_paths`` order, matrix first) and
    #: each kernel's pair as an index into them: per-kernel rates are one look-up into a table of a few.
    path_keys: tuple[tuple[str, bool], ...] = ()
    path_index: np.ndarray | None = None


def kernel_arrays(kernels: KernelReport, dtype: str | None = None) -> KernelArrays:
    """Per-kernel arrays for the prior; ``dtype`` (e.g. ``float16``) re-types the float kernels.

    Re-typing scales each float kernel's bytes by the ratio of storage bits and runs its arithmetic in
    ``dtype``; integer kernels are left as they are, and so are the float32 and float64 kernels of a graph
    exported in a 16-bit float type (:func:`kept_dtypes`): the wider islands its model computes in.
    """
    return kernels.derived(("kernel_arrays", dtype), lambda: _kernel_arrays(kernels, dtype))


def kept_dtypes(kernels: KernelReport) -> frozenset[str]:
    """Kernel dtypes that a re-typing leaves as they are: float32 and float64 when the graph's dominant dtype
    (most FLOPs) is float16 or bfloat16, i.e. the graph was exported as it runs and its wider kernels are its
    model's explicit upcasts (``x.float()`` ... ``.to(x.dtype)``); none otherwise (a float32 export re-typed
    wholesale, as before)."""
    return _WIDE_DTYPES if kernels.dominant_dtype in _HALF_DTYPES else frozenset()


def _kernel_arrays(kernels: KernelReport, dtype: str | None) -> KernelArrays:
    a = kernels.arrays
    ks = kernels.kernels
    # Per distinct kernel dtype: what it runs in and the scale of its bytes (a table of a few, read per kernel).
    own = kernels.dtypes
    kept = kept_dtypes(kernels) if dtype is not None else frozenset()
    runs_in: dict[str, tuple[str, float]] = {}
    for d in dict.fromkeys(own):
        if dtype is not None and d in _FLOAT_DTYPES and dtype != d and d not in kept:
            runs_in[d] = (dtype, dtype_bits(dtype) / dtype_bits(d))
        else:
            runs_in[d] = (d if d != "undefined" else "float32", 1.0)
    matrix = np.fromiter(map(MATRIX_KINDS.__contains__, kernels.kinds), bool, len(ks))
    # Each kernel's dtype as a number (order of first appearance), then masks per dtype and path.
    number: dict[str, int] = {}
    if len(runs_in) == 1:  # one dtype, the common case: no look-up per kernel
        ((runs, bytes_scale),) = runs_in.values()
        dtypes, scale = [runs] * len(ks), np.full(len(ks), bytes_scale)
        number[runs] = 0
        code = np.zeros(len(ks), dtype=np.intp)
    else:
        dtypes = [runs_in[d][0] for d in own]
        scale = np.array([runs_in[d][1] for d in own], dtype=float)
        code = np.array([number.setdefault(d, len(number)) for d in dtypes], dtype=np.intp)
    paths = []
    keys: list[tuple[str, bool]] = []
    path_index = np.zeros(len(ks), dtype=np.intp)
    for j, dt in enumerate(number):
        of_dtype = code == j
        paths.append((dt, of_dtype & matrix, of_dtype & ~matrix))
        for on_matrix, mask in ((True, paths[-1][1]), (False, paths[-1][2])):
            if mask.any():
                path_index[mask] = len(keys)
                keys.append((dt, on_matrix))
    out = KernelArrays(
        flops=a["flops"].astype(np.float64),
        weight_bytes=a["weight_bytes"] * scale,
        activation_bytes=a["activation_read_bytes"] * scale,
        write_bytes=a["write_bytes"] * scale,
        launches=a["launches"].astype(np.float64),
        dtypes=tuple(dtypes),
        matrix=matrix,
        dtype_paths=tuple(paths),
        path_keys=tuple(keys),
        path_index=path_index,
    )
    arrays = (out.flops, out.weight_bytes, out.activation_bytes, out.write_bytes, out.launches, path_index)
    for array in (*arrays, matrix, *(mask for _, *masks in paths for mask in masks)):
        array.setflags(write=False)  # kept with the report (KernelReport.derived) and shared
    return out


def _path_rates(ka: KernelArrays, hw: HardwareProfile, share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per kernel, the peak FLOP/s of its (dtype, path) times ``share`` and the J/FLOP of its dtype: a table
    per (dtype, path) pair the kernels have, read at :attr:`KernelArrays.path_index`."""
    peaks, energies = [], []
    for dt, on_matrix in ka.path_keys:
        peaks.append(hw.peak_flops_per_s(dt, matrix=on_matrix) * share)
        energies.append(hw.energy_per_flop_j(dt))
    return np.array(peaks, dtype=float)[ka.path_index], np.array(energies, dtype=float)[ka.path_index]


def runs_on_gpu(hw: HardwareProfile) -> bool:
    """Whether the profile's compute units are GPU SMs (discrete GPUs and GPU SoCs such as Jetson)."""
    return hw.kind in ("gpu", "soc")


def cache_levels(hw: HardwareProfile) -> tuple[CacheLevel, ...]:
    """The profile's caches as placement levels."""
    return tuple(CacheLevel(c.level, c.size_bytes, c.scope == "per_unit", c.units) for c in hw.caches)


def place_kernels(
    kernels: KernelReport, ka: KernelArrays, hw: HardwareProfile, units: int
) -> tuple[tuple[CacheLevel, ...], Placement]:
    """The profile's cache levels and where each kernel's bytes are served from when it runs on ``units``
    compute units (the model's weights and peak live activations placed as a whole, BUTTER-E style)."""
    levels = cache_levels(hw)
    placement = place(
        levels,
        ka.weight_bytes,
        ka.activation_bytes,
        ka.write_bytes,
        model_weight_bytes=float(ka.weight_bytes.sum()),
        peak_live_activation_bytes=float(peak_live_activation_bytes(kernels)),
        units_used=units,
    )
    return levels, placement


def units_used(hw: HardwareProfile, runtime: Runtime | None, threads: int | None = None) -> int:
    """Units a kernel runs on: all SMs on a GPU; the runtime's (or given) threads on a CPU."""
    if runs_on_gpu(hw):
        return hw.compute_units
    chosen = threads if threads is not None else (runtime.threads if runtime is not None else None)
    return hw.compute_units if chosen is None else max(1, min(int(chosen), hw.compute_units))


def static_power_w(hw: HardwareProfile, units: int) -> float:
    """Static power inside the profile's measurement boundary while running on ``units`` units, W."""
    above_idle = max(hw.static_w - hw.idle_w, 0.0)
    share = 1.0 if runs_on_gpu(hw) else units / hw.compute_units
    if hw.measurement_boundary in IDLE_SUBTRACTED_BOUNDARIES:
        return above_idle * share
    return hw.idle_w + above_idle * share


def peak_live_activation_bytes(kernels: KernelReport) -> int:
    """Largest total of run-time tensor bytes alive at once, over the kernels' launch order."""
    return kernels.derived("peak_live_activation_bytes", lambda: _peak_live_activation_bytes(kernels))


def _peak_live_activation_bytes(kernels: KernelReport) -> int:
    r = kernels.live_ranges
    return peak_live_bytes(r.nbytes, r.first, r.last, r.steps)


def energy_prior(
    kernels: KernelReport,
    hw: HardwareProfile,
    *,
    dtype: str | None = None,
    runtime: Runtime | None = None,
    threads: int | None = None,
) -> PriorResult:
    """Joules and seconds of one inference by the energy-roofline prior (see the module docstring).

    Args:
        kernels: fused kernels of the graph.
        hw: the hardware profile.
        dtype: element type to run float kernels in (``float32``, ``float16``, ``bfloat16``, ``int8``);
            None keeps the graph's types.
        runtime: the runtime (fixes CPU threads); None means the profile's whole device.
        threads: CPU threads, overriding the runtime's.
    """
    ka = kernel_arrays(kernels, dtype)
    units = units_used(hw, runtime, threads)
    share = 1.0 if runs_on_gpu(hw) else units / hw.compute_units
    levels, placement = place_kernels(kernels, ka, hw, units)
    peak, e_flop = _path_rates(ka, hw, share)

    t_compute = ka.flops / (peak * hw.achievable_compute_fraction)
    beyond_l1 = (
        placement.bytes_by_level[:, 1:].sum(axis=1) if levels else placement.bytes_by_level.sum(axis=1)
    )
    t_memory = beyond_l1 / (hw.dram_bandwidth_bytes_per_s * hw.achievable_bandwidth_fraction)
    t_launch = ka.launches * hw.launch_overhead_s
    stacked = np.stack([t_compute, t_memory, t_launch])
    t = stacked.max(axis=0)
    bound = BOUND_NAMES[stacked.argmax(axis=0)]

    level_energy = np.array([c.energy_per_byte_j for c in hw.caches] + [hw.dram_energy_per_byte_j])
    memory_j = placement.bytes_by_level * level_energy  # [kernels, levels]
    compute_j = ka.flops * e_flop
    dynamic = compute_j + memory_j.sum(axis=1)

    p_static = static_power_w(hw, units)
    # An inference costs at least one dispatch, even when every node is a view or a constant.
    total_t = max(float(t.sum()), hw.launch_overhead_s)
    total_dynamic = float(dynamic.sum())
    throttled = False
    if total_t > 0 and p_static < hw.tdp_w and (p_static * total_t + total_dynamic) / total_t > hw.tdp_w:
        stretched = total_dynamic / (hw.tdp_w - p_static)
        t = t * (stretched / total_t)
        total_t = stretched
        throttled = True
    kernel_j = dynamic + p_static * t
    return PriorResult(
        joules=p_static * total_t + total_dynamic,
        seconds=total_t,
        static_joules=p_static * total_t,
        compute_joules=float(compute_j.sum()),
        memory_joules=memory_j.sum(axis=0),
        kernel_joules=kernel_j,
        kernel_seconds=t,
        kernel_bound=bound,
        throttled=throttled,
        placement=placement,
        level_names=placement.level_names,
        threads=units,
        boundary=hw.measurement_boundary,
    )


def desislavov_joules(kernels: KernelReport, hw: HardwareProfile, dtype: str | None = None) -> float:
    """Baseline of Desislavov et al.: FLOPs / (peak FLOP/s per watt) = FLOPs * TDP / peak (matrix path), J."""
    ka = kernel_arrays(kernels, dtype)
    dt = dtype or kernels.dominant_dtype
    return float(ka.flops.sum() * hw.tdp_w / hw.peak_flops_per_s(dt, matrix=True))


def tdp_roofline_joules(
    kernels: KernelReport,
    hw: HardwareProfile,
    *,
    dtype: str | None = None,
    runtime: Runtime | None = None,
    prior: PriorResult | None = None,
) -> float:
    """Baseline: TDP x the prior's roofline time of its kernels, J. Pass ``prior`` when it is already computed."""
    if prior is None:
        prior = energy_prior(kernels, hw, dtype=dtype, runtime=runtime)
    return float(hw.tdp_w * prior.kernel_seconds.sum())
