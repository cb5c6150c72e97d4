"""Rendering of cost reports as readable tables, JSON and CSV (no arithmetic here)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence

import typer

from estimator.cost.kernels import KernelReport
from estimator.cost.nodes import CostReport
from estimator.report.modules import TOP_LEVEL, group_rows, kernel_place, module_name, module_parts
from estimator.report.wording import baseline_name, boundary_sentence, interval_sentence

#: Columns of a per-row layer table, in order: (key, header).
LAYER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "name"),
    ("op", "op"),
    ("status", "status"),
    ("shape", "output shape"),
    ("macs", "MACs"),
    ("flops", "FLOPs"),
    ("params", "params"),
    ("weight_bytes", "weight B"),
    ("activation_read_bytes", "act read B"),
    ("write_bytes", "write B"),
)
_NUMERIC = ("macs", "flops", "params", "weight_bytes", "activation_read_bytes", "write_bytes")


def si(value: float, unit: str = "") -> str:
    """``value`` with an SI prefix and three significant digits: ``4.09G``, ``5.54us``, ``39.3mJ``.

    Whole numbers below 1000 print whole; fractions use m, u (micro), n and p.
    """
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    if float(value).is_integer():
        return f"{int(value)}{unit}"
    for factor, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def layer_rows(costs: CostReport, kernels: KernelReport | None, by: str, depth: int = 2) -> list[dict]:
    """Rows of the layer table: one per node, per kernel, per op type, or per module path cut at ``depth``
    (``by``), numbers exact."""
    if by == "module":
        nodes = layer_rows(costs, None, "node")
        groups = group_rows(nodes, lambda r: module_name(module_parts(r["name"]), depth), _NUMERIC)
        all_flops = sum(r["flops"] for r in nodes)
        return [
            {"name": g["module"], "count": g["count"], "share": g["flops"] / all_flops if all_flops else 0.0}
            | {k: g[k] for k in _NUMERIC}
            for g in groups
        ]
    if by == "node":
        return [
            {
                "name": n.name,
                "op": n.qualified_op,
                "status": n.status,
                "shape": "x".join(map(str, n.output_shapes[0]))
                if n.output_shapes and n.output_shapes[0]
                else "",
                **{k: getattr(n, k) for k in _NUMERIC},
            }
            for n in costs.nodes
        ]
    if by == "kernel":
        if kernels is None:
            raise ValueError("kernel rows need a KernelReport")
        rows = []
        for k in kernels.kernels:
            last = costs.nodes[k.nodes[-1]]
            shape = last.output_shapes[0] if last.output_shapes else None
            rows.append(
                {
                    "name": f"k{k.index}",
                    "op": k.name,
                    "status": k.kind,
                    "shape": "x".join(map(str, shape)) if shape else "",
                    **{f: getattr(k, f) for f in _NUMERIC},
                }
            )
        return rows
    if by == "op":
        agg: dict[str, dict] = {}
        counts: dict[str, int] = {}
        for n in costs.nodes:
            op = n.qualified_op
            counts[op] = counts.get(op, 0) + 1
            row = agg.setdefault(
                op, {"name": "", "op": op, "status": n.status, "shape": "", **dict.fromkeys(_NUMERIC, 0)}
            )
            for k in _NUMERIC:
                row[k] += getattr(n, k)
        for op, row in agg.items():
            row["name"] = f"{counts[op]} nodes"
        return sorted(agg.values(), key=lambda r: -r["flops"])
    raise ValueError(f"unknown grouping {by!r}")


#: Columns dropped first when a table is wider than the terminal (the name column shrinks last).
_DROP_ORDER = ("activation_read_bytes", "write_bytes", "weight_bytes", "macs", "shape", "status")
#: Columns of the table of modules (``--by module``).
MODULE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "module"),
    ("count", "nodes"),
    ("share", "FLOPs %"),
    ("macs", "MACs"),
    ("flops", "FLOPs"),
    ("params", "params"),
    ("weight_bytes", "weight B"),
    ("activation_read_bytes", "act read B"),
    ("write_bytes", "write B"),
)


def terminal_width(default: int = 80) -> int:
    """Columns of the terminal (``$COLUMNS`` wins; ``default`` when not a terminal), at least 40."""
    return max(shutil.get_terminal_size((default, 24)).columns, 40)


def shorten(text: str, width: int, *, keep: str = "end") -> str:
    """``text`` cut to ``width`` characters with an ellipsis, keeping its ``end`` (paths) or ``start``."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    return "…" + text[-(width - 1) :] if keep == "end" else text[: width - 1] + "…"


def _cell(key: str, value) -> str:
    if key == "share":
        return f"{value:.1%}"
    if key in _NUMERIC:
        return si(value)
    return str(value)


def render_table(
    rows: Sequence[dict],
    totals: dict,
    header_note: str = "",
    *,
    columns: Sequence[tuple[str, str]] = LAYER_COLUMNS,
    width: int | None = None,
) -> str:
    """A fixed-width text table of ``rows`` followed by the totals, fitted to ``width`` columns.

    When the table is wider than ``width`` (default: the terminal's), byte columns are dropped first, then the
    name column is shortened with an ellipsis that keeps the end of the name.
    """
    width = width or terminal_width()
    cols = list(columns)
    cells = [[h for _, h in cols]] + [[_cell(k, r[k]) for k, _ in cols] for r in rows]
    natural = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    right = {i for i, (k, _) in enumerate(cols) if k in _NUMERIC or k in ("share", "count")}

    def total(ws: list[int]) -> int:
        return sum(ws) + 2 * (len(ws) - 1)

    keep = list(range(len(cols)))
    widths = [min(w, 48) if cols[i][0] == "name" else w for i, w in enumerate(natural)]
    for key in _DROP_ORDER:
        if total([widths[i] for i in keep]) <= width:
            break
        keep = [i for i in keep if cols[i][0] != key]
    text = [i for i in keep if i not in right]
    name_i = next((i for i in text if cols[i][0] == "name"), None)
    if name_i is not None:  # the name column takes any room left, up to its natural width
        widths[name_i] = min(
            natural[name_i], widths[name_i] + max(width - total([widths[i] for i in keep]), 0)
        )
    while total([widths[i] for i in keep]) > width:  # still too wide: shorten the widest text column
        widest = max(text, key=lambda i: widths[i], default=None)
        if widest is None or widths[widest] <= 8:
            break
        widths[widest] -= 1
    lines = []
    for j, row in enumerate(cells):
        parts = []
        for i in keep:
            cell = shorten(row[i], widths[i])
            parts.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * widths[i] for i in keep))
    dropped = [h for i, (_, h) in enumerate(cols) if i not in keep]
    lines.append("")
    if dropped:
        note = f"not shown at this width: {', '.join(dropped)} (see --format csv)"
        lines.extend(textwrap.wrap(note, width))
    if header_note:
        lines.append(header_note)
    lines.extend(f"{k:>22}: {v}" for k, v in totals.items())
    return "\n".join(lines)


def render_csv(rows: Sequence[dict], columns: Sequence[tuple[str, str]] = LAYER_COLUMNS) -> str:
    """Rows as CSV with exact numbers."""
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=[k for k, _ in columns], lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def render_json(payload: dict) -> str:
    """``payload`` as indented JSON."""
    return json.dumps(payload, indent=2, sort_keys=False)


def _use_colour() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def warning(text: str) -> str:
    """``text`` in yellow on a terminal, plain otherwise (pipes, files, NO_COLOR)."""
    return typer.style(text, fg="yellow", bold=True) if _use_colour() else text


def _field(label: str, text: str, width: int) -> list[str]:
    """``label`` in a 10-wide column and ``text`` wrapped under it."""
    return textwrap.wrap(
        text, width, initial_indent=f"{label:<10} ", subsequent_indent=" " * 11, break_on_hyphens=False
    ) or [label]


def _triple(t: tuple[float, float, float], fmt) -> str:
    return f"{fmt(t[0])} ({fmt(t[1])} .. {fmt(t[2])})"


def render_estimate(
    result, display_name: str, model: str, layers_n: int, carbon=None, *, width: int | None = None
) -> str:
    """The text form of an :class:`~estimator.api.Estimate` (and its carbon/cost ``Footprint``), fitted to
    ``width`` columns (default: the terminal's)."""
    width = width or terminal_width()
    lo, hi = result.interval
    calibration = "" if result.calibrated else ", not calibrated on measurements"
    lines = _field("model", f"{model} (batch {result.batch}, {result.dtype})", width)
    lines += _field("hardware", f"{display_name} [{result.hardware}], runtime {result.runtime}", width)
    lines += _field("method", f"{result.method}{calibration}", width)
    lines += _field("boundary", f"{result.boundary}: {boundary_sentence(result.boundary)}", width)
    lines.append("")
    lines += _field(
        "energy",
        f"{si(result.joules, 'J')} per inference, {si(result.joules_per_sample, 'J')} per sample",
        width,
    )
    lines += _field(
        "interval",
        f"{si(lo, 'J')} .. {si(hi, 'J')}: "
        + interval_sentence(
            result.joules, result.interval, result.interval_level, result.calibrated, result.correction
        ),
        width,
    )
    raised = (
        "  (at least joules / TDP; the prior's is shorter)" if result.seconds > result.prior.seconds else ""
    )
    lines += _field("latency", si(result.seconds, "s") + raised, width)
    if getattr(result.prior, "host_seconds", 0.0) > 0:
        lines += _field(
            "host",
            f"{si(result.prior.host_seconds, 's')} dispatching kernels; the device waits "
            f"{si(result.prior.wait_seconds, 's')} of it at idle-with-context power",
            width,
        )
    throttled = " (TDP-limited)" if result.prior.throttled else ""
    lines += _field("power", f"{result.avg_power_w:.3g} W average inside the boundary{throttled}", width)
    t = result.costs.totals
    lines += _field("work", f"{si(t.macs)} MACs, {si(t.params)} parameters", width)
    for i, (key, joules) in enumerate(result.baselines.items()):
        lines += _field("baselines" if i == 0 else "", f"{baseline_name(key)}: {si(joules, 'J')}", width)
    if carbon is not None:
        grams = carbon.grams_per_inference
        pue = f", PUE {carbon.pue:g}" if carbon.pue != 1.0 else ""
        wh = tuple(v * 1000 for v in carbon.kwh_per_million)
        lines += _field(
            "energy/1M", f"{_triple(wh, lambda v: si(v, 'Wh'))} per million inferences{pue}", width
        )
        if grams is not None:
            g = lambda v: si(v, "g")  # noqa: E731
            lines += _field(
                "carbon",
                f"{_triple(grams, g)} CO2e per inference, {_triple(carbon.grams_per_million, g)} per million "
                f"(grid: {carbon.grid})",
                width,
            )
        if carbon.cost_per_million is not None:
            money = lambda v: f"{v:.3g}{' ' + carbon.currency if carbon.currency else ''}"  # noqa: E731
            lines += _field(
                "cost", f"{_triple(carbon.cost_per_million, money)} per million inferences", width
            )
        lines += _field("", "covers the boundary above x PUE only: no embodied carbon, no idle time", width)
    for note in getattr(result.prior, "notes", ()):
        lines += _field("NOTE", note, width)
    for note in getattr(result, "bounds", ()):
        lines += _field("NOTE", note, width)
    if result.not_costed:
        missing = ", ".join(f"{op} x{c}" for op, c in sorted(result.not_costed.items()))
        lines += [
            warning(x) for x in _field("WARNING", f"not costed, energy is a lower bound: {missing}", width)
        ]
    if result.extrapolated:
        shown = ", ".join(result.extrapolated[:4]) + (", ..." if len(result.extrapolated) > 4 else "")
        text = (
            f"outside the trained model's data ({len(result.extrapolated)} features: {shown}); the calibrated "
            f"answer is extrapolated - compare with the physics prior ({si(result.prior.joules, 'J')})"
        )
        lines += [warning(x) for x in _field("WARNING", text, width)]
    if layers_n > 0 and result.layers:
        total = sum(layer.joules for layer in result.layers) or 1.0
        lines += ["", f"top {min(layers_n, len(result.layers))} kernels by energy:"]
        head = f"{'share':>6}  {'energy':>7}  {'time':>7}  {'bound':<7}  {'level':<5}  "
        lines.append(head + "kernel [module or nodes]")
        room = max(width - len(head), 12)
        for layer in result.layers[:layers_n]:
            where = kernel_place(layer.nodes) if layer.nodes else ""
            if where == TOP_LEVEL or not where:
                where = ", ".join(layer.nodes[:3]) + (", ..." if len(layer.nodes) > 3 else "")
            label = shorten(f"{layer.name} [{where}]" if where else layer.name, room, keep="start")
            lines.append(
                f"{layer.joules / total:6.1%}  {si(layer.joules, 'J'):>7}  {si(layer.seconds, 's'):>7}  "
                f"{layer.bound:<7}  {shorten(layer.level, 5):<5}  {label}"
            )
    return "\n".join(lines)
