"""Pictures a user can put in a report (SVG or PNG): where the energy goes, the device's roofline with each
kernel on it, energy per sample against batch size, and a Pareto chart of several models.

matplotlib is an optional extra (``pip install 'onnx-energy-estimator[plot]'``), imported on first use; without
it every function raises :class:`PlotError` with one line saying how to install it. Each ``*_figure`` function
returns a matplotlib Figure; :func:`save_figure` writes it atomically as SVG or PNG (by suffix) and
:func:`svg_text` returns the SVG for inlining in HTML. The numbers come from ``*_data`` functions that need no
matplotlib. The roofline lives in :mod:`estimator.report.roofline`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimator.errors import EstimatorError
from estimator.fileio import atomic_write_bytes
from estimator.report.modules import TOP_LEVEL, kernel_place, module_of

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
    where = kernel_place(nodes) if nodes else ""
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
            BatchPoint(
                e.batch, e.joules_per_sample, e.interval[0] / e.batch, e.interval[1] / e.batch, e.seconds
            )
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
