"""The device's roofline with each kernel of an estimate placed on it: arithmetic intensity (FLOPs per byte the
prior times beyond L1) against the rate the physics prior gives the kernel, coloured by what bounds it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from estimator.cost.kernels import KernelReport
from estimator.energy.hardware import HardwareProfile
from estimator.energy.physics import kernel_arrays, runs_on_gpu
from estimator.report.plots import BOUND_COLOURS, BOUND_LABELS, PlotError, _pyplot


@dataclass(frozen=True)
class RooflineData:
    """Kernels placed on the device's roofline.

    Attributes:
        intensity: FLOPs per byte served beyond L1 (the bytes the prior times), per kernel drawn; ``inf`` for a
            kernel served from L1 alone (the prior gives it no memory time; drawn at the right edge).
        achieved_flops_per_s: FLOPs / the prior's kernel time, per kernel drawn.
        bound: limiter per kernel drawn.
        joules: energy per kernel drawn, J.
        compute_roof_flops_per_s: achievable peak on the matrix path (``vector_roof_flops_per_s``: vector path).
        memory_roof_bytes_per_s: achievable DRAM bandwidth.
        launch_overhead_s: time of one dispatch.
        without_flops: kernels not drawn because they do no arithmetic (copies, pooling by comparisons); they
            still cost energy.
    """

    intensity: np.ndarray
    achieved_flops_per_s: np.ndarray
    bound: np.ndarray
    joules: np.ndarray
    compute_roof_flops_per_s: float
    vector_roof_flops_per_s: float
    memory_roof_bytes_per_s: float
    launch_overhead_s: float
    dtype: str
    without_flops: int


def roofline_data(
    estimate, kernels: KernelReport, hw: HardwareProfile, dtype: str | None = None
) -> RooflineData:
    """Place every kernel of ``estimate`` (made from ``kernels`` on ``hw``, with ``dtype`` as given to the
    estimate) on the roofline the physics prior uses."""
    ka = kernel_arrays(kernels, dtype)
    prior = estimate.prior
    bytes_beyond_l1 = (
        prior.placement.bytes_by_level[:, 1:].sum(axis=1) if len(hw.caches) else ka.activation_bytes
    )
    launched = ka.launches > 0
    seconds, joules = prior.kernels_alone(launched)  # the host's per-call wait is no kernel's work
    drawn = launched & (ka.flops > 0) & (seconds > 0)
    with np.errstate(divide="ignore"):
        intensity = np.where(bytes_beyond_l1 > 0, ka.flops / np.maximum(bytes_beyond_l1, 1e-300), np.inf)
    share = 1.0 if runs_on_gpu(hw) else prior.threads / hw.compute_units
    dt = dtype or kernels.dominant_dtype
    return RooflineData(
        intensity=intensity[drawn],
        achieved_flops_per_s=ka.flops[drawn] / seconds[drawn],
        bound=np.asarray(prior.kernel_bound)[drawn],
        joules=joules[drawn],
        compute_roof_flops_per_s=hw.peak_flops_per_s(dt, matrix=True)
        * share
        * hw.achievable_compute_fraction,
        vector_roof_flops_per_s=hw.peak_flops_per_s(dt, matrix=False)
        * share
        * hw.achievable_compute_fraction,
        memory_roof_bytes_per_s=hw.dram_bandwidth_bytes_per_s * hw.achievable_bandwidth_fraction,
        launch_overhead_s=hw.launch_overhead_s,
        dtype=dt,
        without_flops=int((launched & ~drawn).sum()),
    )


def _rate(value: float, unit: str) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def roofline_figure(
    estimate, kernels: KernelReport, hw: HardwareProfile, dtype: str | None = None, title: str = ""
):
    """The device's roofline (memory roof, compute roofs) with each kernel at its arithmetic intensity and
    achieved rate, coloured by what bounds it; marker area follows its energy."""
    plt = _pyplot()
    d = roofline_data(estimate, kernels, hw, dtype)
    if not len(d.intensity):
        raise PlotError("no kernel of this model does arithmetic; there is nothing to place on a roofline")
    fig, ax = plt.subplots(figsize=(8, 5.6), layout="constrained")
    ridge = d.compute_roof_flops_per_s / d.memory_roof_bytes_per_s
    finite = np.isfinite(d.intensity)
    lo = min(d.intensity[finite].min(initial=ridge), ridge) / 4
    hi = max(d.intensity[finite].max(initial=ridge), ridge) * 4
    shown_x = np.where(finite, d.intensity, hi / 1.3)
    x = np.geomspace(lo, hi, 200)
    ax.axvspan(lo, ridge, color=BOUND_COLOURS["memory"], alpha=0.07, lw=0)
    ax.axvspan(ridge, hi, color=BOUND_COLOURS["compute"], alpha=0.07, lw=0)
    ax.plot(
        x,
        np.minimum(d.memory_roof_bytes_per_s * x, d.compute_roof_flops_per_s),
        color="black",
        lw=1.6,
        label=f"roof: {_rate(d.memory_roof_bytes_per_s, 'B/s')} memory, "
        f"{_rate(d.compute_roof_flops_per_s, 'FLOP/s')} matrix path",
    )
    if d.vector_roof_flops_per_s < d.compute_roof_flops_per_s * 0.99:
        ax.plot(
            x,
            np.minimum(d.memory_roof_bytes_per_s * x, d.vector_roof_flops_per_s),
            color="black",
            lw=1,
            ls="--",
            label=f"roof of the vector path: {_rate(d.vector_roof_flops_per_s, 'FLOP/s')}",
        )
    ymin = min(d.achieved_flops_per_s.min(), d.memory_roof_bytes_per_s * lo) / 3
    ymax = d.compute_roof_flops_per_s * 6
    for text, xpos, colour in (
        ("memory-bound region", math.sqrt(lo * ridge), "#8a5a00"),
        ("compute-bound region", math.sqrt(ridge * hi), "#004c7a"),
    ):
        ax.text(xpos, d.compute_roof_flops_per_s * 2.2, text, ha="center", fontsize=9, color=colour)
    size = 12 + 220 * d.joules / d.joules.max()
    for bound in ("memory", "compute", "launch"):
        sel = d.bound == bound
        if sel.any():
            ax.scatter(
                shown_x[sel],
                d.achieved_flops_per_s[sel],
                s=size[sel],
                color=BOUND_COLOURS[bound],
                alpha=0.75,
                edgecolor="white",
                linewidth=0.5,
                label=f"kernels: {BOUND_LABELS[bound]} ({int(sel.sum())})",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(ymin, ymax)
    ax.set_xlabel("arithmetic intensity (FLOPs per byte beyond L1)")
    ax.set_ylabel("achieved rate (FLOP/s)")
    ax.set_title(title or f"Roofline of {hw.display_name} ({d.dtype}); marker area = energy", fontsize=11)
    note = f"; not shown: {d.without_flops} kernels without FLOPs" if d.without_flops else ""
    fig.legend(
        loc="outside lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
        title="dispatch-bound kernels (waiting for their launch) sit below the roof"
        + note
        + (
            "\nkernels served from L1 alone (no memory time) are drawn at the right edge"
            if (~finite).any()
            else ""
        ),
        title_fontsize=8,
    )
    ax.grid(True, which="major", lw=0.3, alpha=0.5)
    return fig
