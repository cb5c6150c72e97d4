"""The feature schema of the cross-device GPU correction: :data:`GPU_FEATURE_NAMES`, relative to the device.

A model trained on several GPUs has to transfer to a GPU it has never seen, so its features say where a network
sits *relative to the device* rather than what the device is: arithmetic intensity against the device's ridge
point, working set against its L2, the shares of the v2 prior's time spent dispatching on the host, computing,
moving memory and waiting, the prior's power against the board's TDP, and the measurement boundary and runtime
as one-hot columns. The prior's joules and seconds *per sample* are columns too: a source that timed its host
input pipeline (decoding each image) pays a cost per sample that the forward-pass prior lacks, so its residual
is log(a + c x batch / prior joules) - one column carries it, where the trees found it only by combining
log_prior_joules with log_batch (on Fischer's RTX 4090 CNNs, leave-one-family-out, the model's MAPE went from
52% to 39% with these two columns alone, 2026-12-02; the hyper-parameters in gpu_training.GPU_PARAMS did the
rest). No absolute device constant (peak FLOP/s, bandwidth, TDP) is a column: a tree cannot
extrapolate in it to a device outside the training range, while the ratios fall inside the range other GPUs
span. Everything comes from the graph, the profile, the runtime and the prior - nothing measured at run time.

This schema is separate from :data:`estimator.learn.features.FEATURE_NAMES` (the CPU/SoC models' schema), so
that the shipped CPU and SoC models keep loading; a GPU model's sidecar names ``GPU_FEATURE_NAMES``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from estimator.cost.kernels import MATRIX_KINDS, KernelReport
from estimator.dtypes import dtype_bits
from estimator.energy.hardware import HardwareProfile
from estimator.energy.physics import PriorResult, kernel_arrays, peak_live_activation_bytes
from estimator.energy.runtimes import Runtime

#: Boundaries of GPU measurements with a one-hot column (the boundary a row's energy was read at).
GPU_BOUNDARIES = ("gpu-board-nvml", "gpu-boards-summed", "codecarbon-total", "machine-total", "wall-system")
#: GPU runtimes with a one-hot column.
GPU_RUNTIMES = (
    "pytorch-cuda",
    "tensorflow-gpu",
    "tensorflow-xla-gpu",
    "hf-pipeline",
    "onnxruntime-cuda",
    "tensorrt",
)
#: Granularities of a measured unit (IrEne measures models, modules and primitive ops).
LEVELS = ("model", "module", "op")

#: Column order of every GPU feature matrix. Change it only with a retrain: sidecars record it.
GPU_FEATURE_NAMES: tuple[str, ...] = (
    # the v2 prior's answer and how its time and energy split
    "log_prior_joules",
    "log_prior_seconds",
    "log_prior_joules_per_sample",
    "log_prior_seconds_per_sample",
    "share_joules_static",
    "share_joules_compute",
    "share_joules_memory",
    "share_time_host_dispatch",
    "share_time_gpu_waiting",
    "share_time_compute_bound",
    "share_time_memory_bound",
    "share_time_launch_bound",
    "log_gpu_busy_over_host",
    "prior_power_over_tdp",
    # the network against the device
    "log_intensity_over_ridge",
    "share_flops_below_ridge",
    "matrix_flops_share",
    "log_weights_over_l2",
    "log_peak_live_over_l2",
    "log_ideal_compute_s",
    "log_ideal_memory_s",
    "log_kernel_time_over_dispatch",
    # the network itself
    "log_flops",
    "log_launches",
    "log_batch",
    "log_input_elements_per_sample",
    "dtype_bits",
    # the device's power shape (ratios only)
    "idle_context_over_tdp",
    "static_over_tdp",
    # what was measured
    *(f"level_{lv}" for lv in LEVELS[1:]),
    "log_boards",
    "input_pipeline_timed",
    *(f"boundary_{b}" for b in GPU_BOUNDARIES),
    *(f"runtime_{r}" for r in GPU_RUNTIMES),
)
_INDEX = {name: i for i, name in enumerate(GPU_FEATURE_NAMES)}


@dataclass(frozen=True)
class GraphAggregates:
    """What the GPU features need of a network on one device and runtime, computed once (prior-independent).

    Attributes:
        flops: arithmetic of one inference, FLOP.
        bytes_moved: weights read + activations read + writes, B.
        matrix_flops: FLOPs of contraction and attention kernels, FLOP.
        flops_below_ridge: FLOPs of kernels whose intensity is below the device's ridge point, FLOP.
        weight_bytes: weight bytes of the network, B.
        peak_live_bytes: largest run-time tensor bytes alive at once, B.
        launches: kernels launched per inference.
        batch: samples per inference.
        input_elements: run-time input elements at ``batch``.
        dtype_bits: bits of the dominant element type.
        ridge: the device's ridge point for that type, FLOP/B.
        l2_bytes: the device's last cache level, B.
        ideal_compute_s: FLOPs over the matrix peak, s.
        ideal_memory_s: bytes over DRAM bandwidth, s.
    """

    flops: float
    bytes_moved: float
    matrix_flops: float
    flops_below_ridge: float
    weight_bytes: float
    peak_live_bytes: float
    launches: float
    batch: int
    input_elements: float
    dtype_bits: int
    ridge: float
    l2_bytes: float
    ideal_compute_s: float
    ideal_memory_s: float


def graph_aggregates(kernels: KernelReport, hw: HardwareProfile, dtype: str | None = None) -> GraphAggregates:
    """The :class:`GraphAggregates` of fused ``kernels`` on ``hw`` (``dtype`` re-types float kernels)."""
    ka = kernel_arrays(kernels, dtype)
    dt = dtype or kernels.dominant_dtype
    dt = dt if dtype_bits(dt) else "float32"
    ridge = hw.ridge_point_flop_per_byte(dt, matrix=True)
    moved = ka.weight_bytes + ka.activation_bytes + ka.write_bytes
    with np.errstate(divide="ignore", invalid="ignore"):
        intensity = np.where(moved > 0, ka.flops / np.maximum(moved, 1e-30), np.inf)
    matrix = np.array([k.kind in MATRIX_KINDS for k in kernels.kernels], dtype=bool)
    graph = kernels.costs.graph
    inputs = sum(t.numel for t in (graph.tensor(n) for n in graph.inputs) if t is not None and t.numel)
    sizes = [c.size_bytes for c in hw.caches]
    flops, total = float(ka.flops.sum()), float(moved.sum())
    return GraphAggregates(
        flops=flops,
        bytes_moved=total,
        matrix_flops=float(ka.flops[matrix].sum()) if len(matrix) else 0.0,
        flops_below_ridge=float(ka.flops[intensity < ridge].sum()),
        weight_bytes=float(ka.weight_bytes.sum()),
        peak_live_bytes=float(peak_live_activation_bytes(kernels)),
        launches=float(ka.launches.sum()),
        batch=int(graph.batch),
        input_elements=float(inputs),
        dtype_bits=int(dtype_bits(dt) or 32),
        ridge=float(ridge),
        l2_bytes=float(sizes[-1]) if sizes else 1.0,
        ideal_compute_s=flops / hw.peak_flops_per_s(dt, matrix=True),
        ideal_memory_s=total / hw.dram_bandwidth_bytes_per_s,
    )


def gpu_feature_row(
    agg: GraphAggregates,
    prior: PriorResult,
    hw: HardwareProfile,
    runtime: Runtime,
    *,
    boundary: str = "gpu-board-nvml",
    boards: int = 1,
    level: str = "model",
    input_pipeline: bool = False,
) -> np.ndarray:
    """One row of :data:`GPU_FEATURE_NAMES` for a network (its aggregates and v2 prior) on ``hw``.

    Args:
        agg: from :func:`graph_aggregates` on the same device, runtime and dtype.
        prior: the v2 prior's result (with the constants the model was trained over).
        boundary: the boundary the energy is wanted at (a row's own boundary in training).
        boards: GPU boards summed in the energy (``gpu-boards-summed``); at ``wall-system`` the accelerators
            behind the wall reading (their host is shared); else 1.
        level: ``model``, ``module`` or ``op``.
        input_pipeline: the measurement's timed loop included the host input pipeline (data loading,
            decoding) - a property of how a source measured, like the boundary; False for one forward pass.
    """
    r = np.zeros(len(GPU_FEATURE_NAMES))
    seconds, joules = max(prior.seconds, 1e-30), max(prior.joules, 1e-30)
    r[_INDEX["log_prior_joules"]] = np.log(joules)
    r[_INDEX["log_prior_seconds"]] = np.log(seconds)
    per_sample = np.log(max(agg.batch, 1))
    r[_INDEX["log_prior_joules_per_sample"]] = np.log(joules) - per_sample
    r[_INDEX["log_prior_seconds_per_sample"]] = np.log(seconds) - per_sample
    r[_INDEX["share_joules_static"]] = prior.static_joules / joules
    r[_INDEX["share_joules_compute"]] = prior.compute_joules / joules
    r[_INDEX["share_joules_memory"]] = float(np.sum(prior.memory_joules)) / joules
    r[_INDEX["share_time_host_dispatch"]] = min(prior.host_seconds / seconds, 1.0)
    r[_INDEX["share_time_gpu_waiting"]] = min(prior.wait_seconds / seconds, 1.0)
    for bound in ("compute", "memory", "launch"):
        t = float(prior.kernel_seconds[prior.kernel_bound == bound].sum())
        r[_INDEX[f"share_time_{bound}_bound"]] = t / seconds
    busy = max(seconds - prior.wait_seconds, 1e-12)
    r[_INDEX["log_gpu_busy_over_host"]] = np.log(busy / max(prior.host_seconds, 1e-9))
    r[_INDEX["prior_power_over_tdp"]] = joules / seconds / hw.tdp_w
    moved = max(agg.bytes_moved, 1.0)
    r[_INDEX["log_intensity_over_ridge"]] = np.log((agg.flops + 1.0) / moved / agg.ridge)
    r[_INDEX["share_flops_below_ridge"]] = agg.flops_below_ridge / agg.flops if agg.flops > 0 else 1.0
    r[_INDEX["matrix_flops_share"]] = agg.matrix_flops / agg.flops if agg.flops > 0 else 0.0
    r[_INDEX["log_weights_over_l2"]] = np.log((agg.weight_bytes + 1.0) / agg.l2_bytes)
    r[_INDEX["log_peak_live_over_l2"]] = np.log((agg.peak_live_bytes + 1.0) / agg.l2_bytes)
    r[_INDEX["log_ideal_compute_s"]] = np.log(agg.ideal_compute_s + 1e-12)
    r[_INDEX["log_ideal_memory_s"]] = np.log(agg.ideal_memory_s + 1e-12)
    dispatch = max(runtime.host_dispatch_s, 1e-7)
    per_kernel = max(agg.ideal_compute_s, agg.ideal_memory_s) / max(agg.launches, 1.0)
    r[_INDEX["log_kernel_time_over_dispatch"]] = np.log(per_kernel / dispatch + 1e-9)
    r[_INDEX["log_flops"]] = np.log1p(agg.flops)
    r[_INDEX["log_launches"]] = np.log1p(agg.launches)
    r[_INDEX["log_batch"]] = np.log(max(agg.batch, 1))
    r[_INDEX["log_input_elements_per_sample"]] = np.log1p(agg.input_elements / max(agg.batch, 1))
    r[_INDEX["dtype_bits"]] = agg.dtype_bits
    r[_INDEX["idle_context_over_tdp"]] = hw.idle_with_context_w / hw.tdp_w
    r[_INDEX["static_over_tdp"]] = hw.static_w / hw.tdp_w
    if level in LEVELS[1:]:
        r[_INDEX[f"level_{level}"]] = 1.0
    r[_INDEX["log_boards"]] = np.log(max(boards, 1))
    r[_INDEX["input_pipeline_timed"]] = 1.0 if input_pipeline else 0.0
    if f"boundary_{boundary}" in _INDEX:
        r[_INDEX[f"boundary_{boundary}"]] = 1.0
    if f"runtime_{runtime.name}" in _INDEX:
        r[_INDEX[f"runtime_{runtime.name}"]] = 1.0
    return r
