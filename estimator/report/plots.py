"""Pictures a user can put in a report (SVG or PNG): where the energy goes, the device's roofline with each
kernel on it, energy per sample against batch size, and a Pareto chart of several models.

matplotlib is an optional extra (``pip install 'onnx-energy-estimator[plot]'``), imported on first use; without
it every function raises :class:`PlotError` with one line saying how to install it. Each ``*_figure`` function
returns a matplotlib Figure; :func:`save_figure` writes it atomically as SVG or PNG (by suffix) and
:func:`svg_text` returns the SVG for inlining in HTML. The numbers come from ``*_data`` functions that need no
matplotlib.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimator.cost.kernels import KernelReport
from estimator.energy.hardware import HardwareProfile
from estimator.energy.physics import kernel_arrays, runs_on_gpu
from estimator.errors import EstimatorError
from estimator.fileio import atomic_write_bytes
from estimator.report.modules import TOP_LEVEL, module_of

#: Colours per limiter, shared by the roofline and the bars (colour-blind-safe Okabe-Ito hues).
BOUND_COLOURS = {"compute": "#0072B2", "memory": "#E69F00", "launch": "#009E73"}
BOUND_LABELS = {
    "compute": "compute-bound",
    "memory": "memory-bound",
    "launch": "dispatch-bound (launch overhead)",
}
_FORMATS = {".svg": "svg", ".png": "png"}


class PlotError(EstimatorError):
    """A picture cannot be drawn: matplotlib is missing, the format is unknown, or there is nothing to draw."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError(
            "pictures need matplotlib, an optional extra: pip install 'onnx-energy-estimator[plot]'"
        ) from None
    plt.rcParams["svg.fonttype"] = "none"  # text stays text in SVG: searchable, and checkable by tests
    plt.rcParams["svg.hashsalt"] = "estimator"  # stable ids: the same figure gives the same file
    return plt


def save_figure(fig, path: str | Path, *, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (``.svg`` or ``.png``) atomically and close it; returns the path."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PlotError(f"cannot write a picture as '{path.suffix}'; use a .svg or .png file name")
    if not path.parent.is_dir():
        raise PlotError(f"folder {path.parent} does not exist; create it or choose another path")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def svg_text(fig) -> str:
    """``fig`` as an SVG document (without the XML prolog, for inlining in HTML); closes the figure."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _label(name: str, nodes: Sequence[str], width: int = 44) -> str:
    where = module_of(nodes, 99) if nodes else ""
    text = f"{name} · {where}" if where and where != TOP_LEVEL else name
    return text if len(text) <= width else text[: width - 1] + "…"


# --- where the energy goes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One bar: a label, joules, share of the whole, and its joules split by limiter (compute, memory, launch)."""

    label: str
    joules: float
    share: float
    by_bound: dict[str, float]


def energy_bars_data(estimate, *, top: int = 15, by: str = "kernel", depth: int = 2) -> list[Bar]:
    """The ``top`` largest kernels (``by="kernel"``) or modules (``by="module"``, cut at ``depth``) by energy,
    then one bar for all the rest; shares of the sum over all kernels."""
    layers = estimate.layers
    total = sum(layer.joules for layer in layers)
    if total <= 0:
        raise PlotError("the estimate has no kernel energy to draw")

    def bar(label: str, members: Sequence) -> Bar:
        joules = sum(m.joules for m in members)
        split = {k: sum(m.joules for m in members if m.bound == k) for k in BOUND_COLOURS}
        return Bar(label, joules, joules / total, split)

    if by == "module":
        groups: dict[str, list] = {}
        for layer in layers:
            groups.setdefault(module_of(layer.nodes, depth), []).append(layer)
        items = sorted((bar(name, members) for name, members in groups.items()), key=lambda b: -b.joules)
        shown, rest = items[:top], items[top:]
        if rest:
            others = [
                m for name, members in groups.items() if name not in {b.label for b in shown} for m in members
            ]
            shown.append(bar(f"{len(rest)} other module{'s' if len(rest) > 1 else ''}", others))
        return shown
    if by != "kernel":
        raise PlotError(f"unknown grouping '{by}'; use kernel or module")
    ordered = sorted(layers, key=lambda x: -x.joules)
    shown = [bar(_label(x.name, x.nodes), [x]) for x in ordered[:top]]
    if len(ordered) > top:
        shown.append(
            bar(f"{len(ordered) - top} other kernel{'s' if len(ordered) - top > 1 else ''}", ordered[top:])
        )
    return shown


def energy_bars_figure(estimate, *, top: int = 15, by: str = "kernel", depth: int = 2, title: str = ""):
    """Horizontal bars of energy per kernel or module with its share, largest at the top."""
    plt = _pyplot()
    bars = energy_bars_data(estimate, top=top, by=by, depth=depth)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(bars) + 1.6), layout="constrained")
    y = np.arange(len(bars))[::-1]
    millij = np.array([b.joules for b in bars]) * 1e3
    left = np.zeros(len(bars))
    for k, colour in BOUND_COLOURS.items():
        part = np.array([b.by_bound[k] for b in bars]) * 1e3
        if part.any():
            ax.barh(y, part, left=left, color=colour, label=BOUND_LABELS[k])
            left += part
    ax.set_yticks(y, [b.label for b in bars], fontsize=8)
    for yi, v, b in zip(y, millij, bars, strict=True):
        ax.text(v, yi, f" {b.share:.1%}", va="center", fontsize=8)
    ax.set_xlim(0, millij.max() * 1.18)
    ax.set_xlabel("energy per inference (mJ)")
    ax.set_ylabel("module" if by == "module" else "kernel")
    unit = "module" if by == "module" else "kernel"
    ax.set_title(title or f"Where the energy goes, by {unit} ({estimate.hardware}, batch {estimate.batch})")
    fig.legend(
        loc="outside lower center", ncol=3, fontsize=8, frameon=False, title="limited by", title_fontsize=8
    )
    ax.spines[["top", "right"]].set_visible(False)
    return fig


# --- the roofline ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RooflineData:
    """Kernels placed on the device's roofline.

    Attributes:
        intensity: FLOPs per byte served beyond L1 (the bytes the prior times), per kernel drawn.
        achieved_flops_per_s: FLOPs / the prior's kernel time, per kernel drawn.
        bound: limiter per kernel drawn.
        joules: energy per kernel drawn, J.
        compute_roof_flops_per_s: achievable peak on the matrix path (``vector_roof_flops_per_s``: vector path).
        memory_roof_bytes_per_s: achievable DRAM bandwidth.
        launch_overhead_s: time of one dispatch.
        without_flops: kernels not drawn because they do no arithmetic (copies, views); they still cost energy.
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
    seconds = prior.kernel_seconds
    launched = ka.launches > 0
    drawn = launched & (ka.flops > 0) & (bytes_beyond_l1 > 0) & (seconds > 0)
    share = 1.0 if runs_on_gpu(hw) else prior.threads / hw.compute_units
    dt = dtype or kernels.dominant_dtype
    return RooflineData(
        intensity=ka.flops[drawn] / bytes_beyond_l1[drawn],
        achieved_flops_per_s=ka.flops[drawn] / seconds[drawn],
        bound=np.asarray(prior.kernel_bound)[drawn],
        joules=np.asarray(estimate.prior.kernel_joules)[drawn],
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
    lo = min(d.intensity.min(), ridge) / 4
    hi = max(d.intensity.max(), ridge) * 4
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
                d.intensity[sel],
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
    note = (
        f"; not shown: {d.without_flops} kernels without FLOPs or traffic beyond L1"
        if d.without_flops
        else ""
    )
    fig.legend(
        loc="outside lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
        title=f"dispatch-bound kernels sit below the roof: launch overhead {_rate(d.launch_overhead_s * 1e6, 'us')}"
        + note,
        title_fontsize=8,
    )
    ax.grid(True, which="major", lw=0.3, alpha=0.5)
    return fig


# --- energy against batch size --------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPoint:
    """Energy per sample at one batch size, with the interval, J."""

    batch: int
    joules_per_sample: float
    low: float
    high: float
    seconds: float


def batch_sweep(estimator, model, batches: Sequence[int], **kwargs) -> list[BatchPoint]:
    """Estimate ``model`` at each batch size with ``estimator`` (an :class:`~estimator.api.Estimator`)."""
    points = []
    for b in batches:
        e = estimator.estimate(model, batch=b, **kwargs)
        points.append(
            BatchPoint(b, e.joules_per_sample, e.interval[0] / e.batch, e.interval[1] / e.batch, e.seconds)
        )
    return points


def batch_figure(points: Sequence[BatchPoint], *, title: str = "", label: str = ""):
    """Energy per sample (mJ) against batch size (log 2 axis), with the interval as a band."""
    plt = _pyplot()
    if not points:
        raise PlotError("no batch sizes to draw")
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    b = np.array([p.batch for p in points])
    j = np.array([p.joules_per_sample for p in points]) * 1e3
    ax.fill_between(
        b,
        [p.low * 1e3 for p in points],
        [p.high * 1e3 for p in points],
        color="#0072B2",
        alpha=0.15,
        label="interval",
    )
    ax.plot(b, j, marker="o", color="#0072B2", label=label or "estimate")
    ax.set_xscale("log", base=2)
    ax.set_xticks(b, [str(x) for x in b])
    ax.set_xlabel("batch size")
    ax.set_ylabel("energy per sample (mJ)")
    ax.set_ylim(bottom=0)
    ax.set_title(title or "Energy per sample against batch size")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(True, lw=0.3, alpha=0.5)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


# --- several models: the Pareto chart -------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPoint:
    """One model on the Pareto chart: its energy per sample (J, with interval) and the user's metric."""

    name: str
    joules: float
    low: float
    high: float
    metric: float


def pareto_front(points: Sequence[ModelPoint], *, higher_is_better: bool = True) -> list[ModelPoint]:
    """The points no other point beats on both energy (lower) and metric, by increasing energy."""
    front = []
    best = -math.inf
    for p in sorted(points, key=lambda p: (p.joules, -p.metric if higher_is_better else p.metric)):
        m = p.metric if higher_is_better else -p.metric
        if m > best:
            front.append(p)
            best = m
    return front


def pareto_figure(
    points: Sequence[ModelPoint], *, metric_label: str, higher_is_better: bool = True, title: str = ""
):
    """Energy per sample (log x, with intervals) against the metric; the Pareto front joined by a step line."""
    plt = _pyplot()
    if len(points) < 1:
        raise PlotError("no models to draw")
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    front = pareto_front(points, higher_is_better=higher_is_better)
    on_front = {id(p) for p in front}
    for p in points:
        colour = "#D55E00" if id(p) in on_front else "#777777"
        ax.errorbar(
            p.joules * 1e3,
            p.metric,
            xerr=[[max(p.joules - p.low, 0) * 1e3], [max(p.high - p.joules, 0) * 1e3]],
            fmt="o",
            color=colour,
            ecolor=colour,
            elinewidth=0.8,
            capsize=2,
        )
        ax.annotate(p.name, (p.joules * 1e3, p.metric), xytext=(4, 4), textcoords="offset points", fontsize=8)
    if len(front) > 1:
        ax.step(
            [p.joules * 1e3 for p in front],
            [p.metric for p in front],
            where="post",
            color="#D55E00",
            lw=1,
            label="Pareto front",
        )
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("energy per sample (mJ, log scale; bars: interval)")
    ax.set_ylabel(metric_label + (" (higher is better)" if higher_is_better else " (lower is better)"))
    ax.set_title(title or f"Energy against {metric_label}")
    ax.grid(True, lw=0.3, alpha=0.5)
    ax.spines[["top", "right"]].set_visible(False)
    return fig
