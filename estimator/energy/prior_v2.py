"""The runtime-aware GPU prior, "energy-roofline v2": v1's roofline per kernel, plus the host that dispatches the
kernels, kernel efficiency that depends on size, and the precision the runtime really computes in.

**Model.** For a GPU profile (``kind = "gpu"``) and a runtime, per launched kernel ``k`` in launch order:

* precision: float32 contractions run on TF32 tensor cores only where the runtime enables TF32 for that op
  class (:data:`estimator.energy.gpu_efficiency.TF32_BY_RUNTIME`), otherwise on the FP32 vector path; other
  dtypes as in v1 (the matrix path where the device has one);
* ``t_compute = flops / (peak * achievable_compute_fraction * e_tile)`` with ``e_tile`` the tile and wave
  quantisation of the kernel's GEMM with the best of the library's tiles
  (:func:`~estimator.energy.gpu_efficiency.library_tile_efficiency`; 1 for non-contractions and for grouped
  convolutions that do not run as GEMMs); a fused attention kernel that the runtime runs as FlashAttention-2
  sustains the profile's ``fa2_compute_fraction`` instead, where it cites one, and its ``e_tile`` also counts
  the head size padded to FlashAttention-2's (:func:`~estimator.energy.gpu_paths.compute_paths`);
* ``t_memory = bytes_beyond_L1 / (DRAM_bandwidth * fraction(bytes))``, the fraction rising with the bytes moved
  (:func:`~estimator.energy.gpu_efficiency.bandwidth_fraction`);
* GPU time ``g_k = max(t_compute, t_memory, t_floor)``, ``t_floor`` the shortest a kernel occupies the GPU
  (:data:`GPU_KERNEL_FLOOR_S`);
* **host and GPU overlap as a two-stage pipeline**: the host issues kernel ``k`` at ``i_k = (k + 1) h`` (``h`` the
  runtime's per-kernel dispatch time); the GPU starts it when it is issued and the previous kernel has ended:
  ``end_k = max(end_{k-1}, i_k) + g_k``. When every ``g_k < h`` this is ``N h + g_last`` (host-bound); when
  every ``g_k > h`` it is ``h + sum(g)`` (device-bound);
* one inference takes ``T = c + end_last`` with ``c`` the runtime's per-call host time (pre/post-processing).

Energy: ``E = P_static * B + P_ctx * (T - B) + sum(E_dynamic)`` with ``B = sum(g)`` the time the GPU is busy,
``P_static`` the profile's busy static power, ``P_ctx`` its idle-with-context power (a CUDA context resident,
the board waiting for the host), ``E_dynamic`` per kernel as in v1 (FLOPs x J/FLOP + bytes per level x J/B),
except that a GEMM draws the power limit: its ``E_dynamic`` is at least ``(TDP - P_static) x flops / (peak x
achievable_compute_fraction)`` (:func:`gemm_power_limit_joules`), and every kernel, a memory-bound GEMM too (a
decode step's weight reads), costs at least the streaming energy of its ``B`` bytes beyond L1, ``min(E_bytes
+ e_chip s_node B, (TDP - P_static) B / (f_b BW))`` (:func:`memory_stream_joules`: per-level J/B, an on-chip
J/B scaled by the node, the TDP at most); a compute-bound GEMM's power limit is above it already.
TDP clamp: if ``(P_static * B + sum(E_dynamic)) / B`` would exceed TDP, every ``g_k`` stretches by the same
factor so that busy power equals TDP, before the pipeline runs.

CPU and SoC profiles are not changed by v2: :func:`energy_prior_v2` returns v1's result for them (named v1).
Constants live in :class:`V2Constants` (defaults cited or marked estimated); :mod:`estimator.energy.prior_fit`
fits them on a measurement table.

Why this module is long: the per-kernel terms, the host/GPU pipeline and the power rules that turn them into one
result share the same arrays; split, each part would re-derive the kernels' times and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from estimator.cost.kernels import KernelReport
from estimator.energy.gpu_efficiency import BANDWIDTH_RAMP_S, bandwidth_fraction
from estimator.energy.gpu_paths import compute_paths
from estimator.energy.hardware import HardwareProfile
from estimator.energy.physics import (
    BOUND_NAMES,
    PRIOR_NAME,
    PriorResult,
    energy_prior,
    kernel_arrays,
    place_kernels,
    static_power_w,
)
from estimator.energy.placement import Placement
from estimator.energy.runtimes import Runtime, get_runtime
from estimator.errors import ProfileError

#: Name and version of this prior, reported with every estimate it makes.
PRIOR_V2_NAME = "energy-roofline v2"
#: Accepted spellings of each prior's name.
PRIOR_ALIASES = {
    "v1": PRIOR_NAME,
    "energy-roofline-v1": PRIOR_NAME,
    PRIOR_NAME: PRIOR_NAME,
    "v2": PRIOR_V2_NAME,
    "energy-roofline-v2": PRIOR_V2_NAME,
    PRIOR_V2_NAME: PRIOR_V2_NAME,
}
#: Shortest time a launched kernel occupies the GPU, s, including the gap between dependent kernels when the
#: host keeps up. Estimated: an empty kernel's launch-to-completion on the GPU is ~1-2 us and back-to-back
#: dependent kernels leave ~1 us gaps; fittable.
GPU_KERNEL_FLOOR_S = 2.0e-6
#: On-chip energy per byte beyond L1 of a kernel that streams memory, J/B at 7 nm (scaled to a profile's node by
#: :func:`node_energy_scale`): what moving a byte costs between the SMs' load/store units, the L2 slices, the
#: crossbar and the memory controller and PHY while every SM issues loads and stores at operating clocks, beyond
#: the per-level J/B of the profile (the DRAM level's is the memory technology's cited figure). Fitted: the value
#: that minimises the squared log error of average power over IrEne's GTX 1080 Ti op-level LayerNorm and Softmax
#: rows at the board's NVML sensor (Cao et al., ACL 2021; ``python scripts/prior_split.py --fit-memory-power``),
#: on no other row: its GTX 1070 rows, every whole-network and module row and the other sources are judged with it.
STREAM_ONCHIP_J_PER_BYTE_7NM = 2.28e-10
#: Energy of a 32 KB SRAM read at 7 nm, J/B: 8.5 pJ per 64 bit (Jouppi et al., "Ten Lessons From Three
#: Generations Shaped Google's TPUv4i", ISCA 2021, Table 2). Every GPU profile's L1 energy per byte is this figure
#: times the node scale of its process (docs/hardware.md), so their ratio gives the node scale back.
SRAM_32KB_READ_7NM_J_PER_BYTE = 8.5e-12 / 8


@dataclass(frozen=True)
class V2Constants:
    """The constants of the v2 prior that are estimated rather than read from a profile, all fittable.

    Attributes:
        host_dispatch_s: host time per launched kernel, s; None takes the runtime's value.
        host_call_s: host time per inference outside the kernels, s; None takes the runtime's value.
        gpu_kernel_floor_s: shortest GPU time of a launched kernel, s.
        bandwidth_ramp_s: fixed ramp of a memory-bound kernel, s (sets the half-saturation size).
        fitted_on: what the constants were fitted on (empty for the shipped defaults).
    """

    host_dispatch_s: float | None = None
    host_call_s: float | None = None
    gpu_kernel_floor_s: float = GPU_KERNEL_FLOOR_S
    bandwidth_ramp_s: float = BANDWIDTH_RAMP_S
    fitted_on: str = ""


def canonical_prior_name(name: str) -> str:
    """The full name (``energy-roofline v1`` / ``v2``) of a prior given as ``v1``, ``energy-roofline-v2``, ...

    Raises ProfileError listing the accepted names for anything else.
    """
    try:
        return PRIOR_ALIASES[name.strip().lower()]
    except KeyError:
        raise ProfileError(
            f"unknown prior '{name}'; use one of: v1, v2 (or {PRIOR_NAME!r}, {PRIOR_V2_NAME!r})"
        ) from None


def default_prior(hw: HardwareProfile) -> str:
    """The prior a profile uses by default: v2 on discrete GPUs, v1 on CPUs and SoCs (v2 equals v1 there)."""
    return PRIOR_V2_NAME if hw.kind == "gpu" else PRIOR_NAME


def run_prior(
    name: str,
    kernels: KernelReport,
    hw: HardwareProfile,
    *,
    dtype: str | None = None,
    runtime: Runtime | None = None,
    threads: int | None = None,
    constants: V2Constants | None = None,
) -> PriorResult:
    """The prior called ``name`` (any accepted spelling) for one inference; see :func:`energy_prior_v2`."""
    if canonical_prior_name(name) == PRIOR_NAME:
        return energy_prior(kernels, hw, dtype=dtype, runtime=runtime, threads=threads)
    return energy_prior_v2(kernels, hw, dtype=dtype, runtime=runtime, threads=threads, constants=constants)


def pipeline_end_times(gpu_s: np.ndarray, issue_s: np.ndarray) -> np.ndarray:
    """End time of each kernel of a two-stage host/GPU pipeline, s: ``end_k = max(end_{k-1}, issue_k) + g_k``.

    Args:
        gpu_s: GPU time of each kernel, s.
        issue_s: time the host has issued each kernel (non-decreasing), s.
    """
    g = np.asarray(gpu_s, dtype=np.float64)
    if not len(g):
        return g
    cum = np.cumsum(g)
    # end_k = cum_k + max_{j <= k}(issue_j - cum_{j-1}), the closed form of the recurrence.
    return cum + np.maximum.accumulate(np.asarray(issue_s, dtype=np.float64) - (cum - g))


@dataclass(frozen=True)
class DeviceTerms:
    """The parts of the v2 prior that do not depend on :class:`V2Constants` (computed once per graph, device,
    runtime and dtype; :func:`assemble` turns them into a result for given constants).

    Attributes:
        t_compute: per-kernel compute time, s.
        beyond_l1_bytes: per-kernel bytes served beyond L1.
        launches: per-kernel launches (0 or 1).
        dynamic_joules: per-kernel dynamic energy, J.
        compute_joules: total arithmetic energy, J.
        memory_joules: data-movement energy per level, J.
        placement: the cache placement.
        unshaped: contraction kernels without a known GEMM shape.
        kernel_memory_joules: per-kernel data-movement energy, J (the streaming power's share included).
    """

    t_compute: np.ndarray
    beyond_l1_bytes: np.ndarray
    launches: np.ndarray
    dynamic_joules: np.ndarray
    compute_joules: float
    memory_joules: np.ndarray
    placement: Placement
    unshaped: int
    kernel_memory_joules: np.ndarray | None = None


def node_energy_scale(hw: HardwareProfile) -> float:
    """The energy scale of the profile's process node relative to 7 nm (dimensionless): its per-unit (L1) cache
    energy per byte over :data:`SRAM_32KB_READ_7NM_J_PER_BYTE` (16FF 1.5, 12FFN 1.39, 8N 1.06, N7 1.0, 4N 0.83:
    docs/hardware.md). Raises ProfileError for a profile without a per-unit cache."""
    level = next((lv for lv in hw.caches if lv.scope == "per_unit"), None)
    if level is None:
        raise ProfileError(f"profile '{hw.name}' has no per-unit cache: its node energy scale is unknown")
    return level.energy_per_byte_j / SRAM_32KB_READ_7NM_J_PER_BYTE


def memory_stream_joules(
    beyond_l1_bytes: ArrayLike,
    moved_joules: ArrayLike,
    hw: HardwareProfile,
    onchip_j_per_byte_7nm: float = STREAM_ONCHIP_J_PER_BYTE_7NM,
) -> np.ndarray:
    """Dynamic energy, J, of kernels that stream ``beyond_l1_bytes`` whose per-level energies are
    ``moved_joules`` (J): ``min(moved + onchip x s_node x bytes, (TDP - P_static) x bytes / (f_b x BW))``, with
    ``s_node`` = :func:`node_energy_scale`.

    A memory-bound kernel keeps every SM issuing loads and stores and the L2 slices, the crossbar and the DRAM
    interface busy at operating clocks; per byte that costs far more than the DRAM access the profile's J/B
    counts (IrEne's op rows: LayerNorm and Softmax at 135-200 W on boards whose GEMMs draw 200-250 W). That
    on-chip part is an energy per byte that scales with the process node; the DRAM part is the memory
    technology's. So the power of a streaming kernel follows the bandwidth it moves, not the board's TDP. It is
    capped at the TDP over the full-rate time: at the power limit GPU Boost lowers the SM clock, not the memory
    clock, so the kernel keeps its bandwidth and draws the limit (an RTX 3090 capped at 315 W held the cap
    through LLM decode with its memory clock at 9,501 MHz in every sample: github.com/ashalliants/ninfer-3090,
    pull request 72; anecdotal). Like :func:`gemm_power_limit_joules` it is
    energy, not time: a small kernel that reaches a fraction of the bandwidth draws that fraction of the power.
    """
    nbytes = np.asarray(beyond_l1_bytes, dtype=np.float64)
    per_byte = onchip_j_per_byte_7nm * node_energy_scale(hw)
    headroom = max(hw.tdp_w - static_power_w(hw, hw.compute_units), 0.0)
    rate = hw.dram_bandwidth_bytes_per_s * hw.achievable_bandwidth_fraction
    return np.minimum(
        np.asarray(moved_joules, dtype=np.float64) + per_byte * nbytes, headroom * nbytes / rate
    )


def gemm_power_limit_joules(flops: ArrayLike, rate: ArrayLike, hw: HardwareProfile) -> np.ndarray:
    """Dynamic energy, J, of GEMMs of ``flops`` that run at ``rate`` FLOP/s (peak x achievable fraction) when
    the board draws its power limit: ``(TDP - P_static) x flops / rate``.

    Dense GEMMs are power-limited on NVIDIA GPUs: GPU Boost raises clock and voltage until board power reaches
    the limit (A100 matmuls throttle at 400 W: H. He, "Strangely, Matrix Multiplications on GPUs Run Faster
    When Given 'Predictable' Data!", thonking.ai, 2024; cuBLAS SGEMM and DGEMM at the power limit of A40, A100
    and H100: blogs.fau.de/adityauj, 2025-11-15). A GEMM of tile efficiency ``e`` then draws
    ``P_static + e x (TDP - P_static)``: its time grows by ``1/e`` for the same energy.
    """
    headroom = max(hw.tdp_w - static_power_w(hw, hw.compute_units), 0.0)
    flops, rate = np.asarray(flops, dtype=np.float64), np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rate > 0, headroom * flops / rate, 0.0)


def device_terms(
    kernels: KernelReport,
    hw: HardwareProfile,
    runtime: Runtime,
    dtype: str | None = None,
    stream_onchip_j_per_byte: float = STREAM_ONCHIP_J_PER_BYTE_7NM,
) -> DeviceTerms:
    """Compute times, bytes and dynamic energies of every kernel on a GPU profile (see the module docstring);
    ``stream_onchip_j_per_byte`` (J/B at 7 nm) is :data:`STREAM_ONCHIP_J_PER_BYTE_7NM` unless a fit tries
    another."""
    ka = kernel_arrays(kernels, dtype)
    levels, placement = place_kernels(kernels, ka, hw, hw.compute_units)
    paths = compute_paths(kernels, hw, runtime, ka, dtype)
    t_compute = ka.flops / (paths.peak * paths.fraction * paths.efficiency)
    beyond_l1 = (
        placement.bytes_by_level[:, 1:].sum(axis=1) if levels else placement.bytes_by_level.sum(axis=1)
    )
    level_energy = np.array([lv.energy_per_byte_j for lv in hw.caches] + [hw.dram_energy_per_byte_j])
    memory_j = placement.bytes_by_level * level_energy
    compute_j = ka.flops * paths.e_flop
    # A GEMM draws the board's power limit at the achievable rate (GPU Boost raises the clocks until it does):
    # its dynamic energy is at least the TDP headroom over its full-efficiency time.
    limit_j = gemm_power_limit_joules(ka.flops, paths.peak * hw.achievable_compute_fraction, hw)
    moved_j = memory_j.sum(axis=1)
    compute_j = np.where(paths.gemm, np.maximum(compute_j, limit_j - moved_j), compute_j)
    # Every kernel costs at least the streaming energy of its bytes (memory_stream_joules): a memory-bound GEMM
    # (decode's GEMV-like weight reads) too, whose power-limit rule over its short compute time falls below it
    # (docs/llm.md, "vLLM decode power"). The raise counts as data movement, on the DRAM level.
    stream_j = memory_stream_joules(beyond_l1, moved_j, hw, stream_onchip_j_per_byte)
    extra = np.maximum(stream_j - compute_j - moved_j, 0.0)
    memory_j[:, -1] += extra
    moved_j = moved_j + extra
    return DeviceTerms(
        t_compute=t_compute,
        beyond_l1_bytes=beyond_l1,
        launches=ka.launches,
        dynamic_joules=compute_j + moved_j,
        compute_joules=float(compute_j.sum()),
        memory_joules=memory_j.sum(axis=0),
        placement=placement,
        unshaped=paths.unshaped,
        kernel_memory_joules=moved_j,
    )


def subset_terms(terms: DeviceTerms, hw: HardwareProfile, mask: ArrayLike) -> DeviceTerms:
    """The :class:`DeviceTerms` of the kernels selected by the boolean ``mask`` alone (a module of a network,
    run on its own: :func:`assemble` then pipelines only those kernels). Per-kernel terms are the whole graph's
    (placement included); the totals are re-summed over the selected kernels."""
    mask = np.asarray(mask, dtype=bool)
    level_energy = np.array([lv.energy_per_byte_j for lv in hw.caches] + [hw.dram_energy_per_byte_j])
    memory = (terms.placement.bytes_by_level[mask] * level_energy).sum(axis=0)
    if terms.kernel_memory_joules is not None:  # the streaming power's raise, on the DRAM level
        memory[-1] += float(terms.kernel_memory_joules[mask].sum() - memory.sum())
    dynamic = terms.dynamic_joules[mask]
    return DeviceTerms(
        t_compute=terms.t_compute[mask],
        beyond_l1_bytes=terms.beyond_l1_bytes[mask],
        launches=terms.launches[mask],
        dynamic_joules=dynamic,
        compute_joules=float(dynamic.sum() - memory.sum()),
        memory_joules=memory,
        placement=terms.placement,
        unshaped=0,
        kernel_memory_joules=None if terms.kernel_memory_joules is None else terms.kernel_memory_joules[mask],
    )


def energy_prior_v2(
    kernels: KernelReport,
    hw: HardwareProfile,
    *,
    dtype: str | None = None,
    runtime: Runtime | None = None,
    threads: int | None = None,
    constants: V2Constants | None = None,
) -> PriorResult:
    """Joules and seconds of one inference by the v2 prior (see the module docstring).

    Args:
        kernels: fused kernels of the graph, as the runtime launches them.
        hw: the hardware profile; CPU and SoC profiles get v1's answer.
        dtype: element type to run float kernels in; None keeps the graph's types.
        runtime: the runtime; None means the profile's default runtime.
        threads: CPU threads (passed to v1 on CPU profiles; unused on GPUs).
        constants: the estimated constants; None uses the shipped defaults.
    """
    if hw.kind != "gpu":
        return energy_prior(kernels, hw, dtype=dtype, runtime=runtime, threads=threads)
    runtime = runtime or get_runtime(hw.default_runtime)
    return assemble(device_terms(kernels, hw, runtime, dtype), hw, runtime, constants)


def assemble(
    terms: DeviceTerms, hw: HardwareProfile, runtime: Runtime, constants: V2Constants | None = None
) -> PriorResult:
    """The v2 result from a graph's :class:`DeviceTerms` and the constants (host, floor, ramp, TDP clamp)."""
    c = constants or V2Constants()
    h = runtime.host_dispatch_s if c.host_dispatch_s is None else c.host_dispatch_s
    call = runtime.host_call_s if c.host_call_s is None else c.host_call_s
    launched = terms.launches > 0
    beyond_l1 = terms.beyond_l1_bytes
    fraction = bandwidth_fraction(
        beyond_l1, hw.dram_bandwidth_bytes_per_s, hw.achievable_bandwidth_fraction, c.bandwidth_ramp_s
    )
    t_memory = np.divide(
        beyond_l1,
        hw.dram_bandwidth_bytes_per_s * fraction,
        out=np.zeros(len(beyond_l1)),
        where=beyond_l1 > 0,
    )
    t_floor = np.where(launched, c.gpu_kernel_floor_s, 0.0)
    stacked = np.stack([terms.t_compute, t_memory, t_floor])
    g = np.where(launched, stacked.max(axis=0), 0.0)
    bound_code = stacked.argmax(axis=0)  # index into BOUND_NAMES: compute, memory, launch
    dynamic = terms.dynamic_joules
    total_dynamic = float(dynamic.sum())

    p_busy = static_power_w(hw, hw.compute_units)
    p_wait = hw.idle_with_context_w
    busy = float(g.sum())
    throttled = False
    if busy > 0 and p_busy < hw.tdp_w and (p_busy * busy + total_dynamic) / busy > hw.tdp_w:
        stretched = total_dynamic / (hw.tdp_w - p_busy)
        g = g * (stretched / busy)
        busy = stretched
        throttled = True

    issue = np.cumsum(h * terms.launches)
    end = pipeline_end_times(g, issue)
    last = float(end[-1]) if len(end) else 0.0
    # An inference costs at least one dispatch and one kernel, even when every node is a view or a constant.
    seconds = call + max(last, h + c.gpu_kernel_floor_s)
    kernel_seconds = end.copy()  # each kernel's slot: its end minus the previous one's
    kernel_seconds[1:] -= end[:-1]
    in_first = call if call > 0 and launched.any() else 0.0
    if in_first:
        # The per-call host time comes before the first dispatch: the GPU waits through it in the first
        # kernel's slot, so the kernels' times and joules add up to the inference's (the per-layer view shows
        # it as its own row: PriorResult.call_joules).
        kernel_seconds[int(np.argmax(launched))] += call
    wait = np.maximum(kernel_seconds - g, 0.0)
    # A kernel's slot is host-bound when the GPU waited for the dispatch longer than the kernel ran.
    bound_code[launched & (wait > g)] = 2
    bound = BOUND_NAMES[bound_code]
    idle_time = max(seconds - busy, 0.0)
    kernel_j = dynamic + p_busy * g + p_wait * wait
    notes = ()
    if terms.unshaped:
        notes = (
            f"{terms.unshaped} contraction kernel(s) without a known output shape: timed at full tile "
            "efficiency (a lower bound on their time)",
        )
    return PriorResult(
        joules=p_busy * busy + p_wait * idle_time + total_dynamic,
        seconds=seconds,
        static_joules=p_busy * busy + p_wait * idle_time,
        compute_joules=terms.compute_joules,
        memory_joules=terms.memory_joules,
        kernel_joules=kernel_j,
        kernel_seconds=kernel_seconds,
        kernel_bound=bound,
        throttled=throttled,
        placement=terms.placement,
        level_names=terms.placement.level_names,
        threads=hw.compute_units,
        boundary=hw.measurement_boundary,
        name=PRIOR_V2_NAME,
        host_seconds=call + h * float(terms.launches.sum()),
        wait_seconds=idle_time,
        notes=notes,
        call_seconds=in_first,
        call_joules=p_wait * in_first,
    )
