"""Rendering of cost reports as readable tables, JSON and CSV (no arithmetic here)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from estimator.cost.kernels import KernelReport
from estimator.cost.nodes import CostReport

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


def layer_rows(costs: CostReport, kernels: KernelReport | None, by: str) -> list[dict]:
    """Rows of the layer table: one per node, per kernel, or per op type (``by``), numbers exact."""
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


def render_table(rows: Sequence[dict], totals: dict, header_note: str = "") -> str:
    """A fixed-width text table of ``rows`` followed by the totals."""
    cells = [[h for _, h in LAYER_COLUMNS]]
    for r in rows:
        cells.append([si(r[k]) if k in _NUMERIC else str(r[k]) for k, _ in LAYER_COLUMNS])
    widths = [min(max(len(row[i]) for row in cells), 48) for i in range(len(LAYER_COLUMNS))]
    lines = []
    for j, row in enumerate(cells):
        parts = []
        for i, cell in enumerate(row):
            cell = cell if len(cell) <= widths[i] else cell[: widths[i] - 1] + "…"
            parts.append(cell.rjust(widths[i]) if LAYER_COLUMNS[i][0] in _NUMERIC else cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    if header_note:
        lines.append(header_note)
    lines.extend(f"{k:>22}: {v}" for k, v in totals.items())
    return "\n".join(lines)


def render_csv(rows: Sequence[dict]) -> str:
    """Rows as CSV with exact numbers."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[k for k, _ in LAYER_COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def render_json(payload: dict) -> str:
    """``payload`` as indented JSON."""
    return json.dumps(payload, indent=2, sort_keys=False)
