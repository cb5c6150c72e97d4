"""One self-contained HTML page per estimate: the numbers, what the boundary covers, the interval in plain
words, carbon and cost when asked, the pictures inlined as SVG (no external assets, no scripts) and the layer
table by kernel and by module."""

from __future__ import annotations

import html
from collections.abc import Sequence

from estimator.cost.kernels import KernelReport
from estimator.energy.hardware import HardwareProfile
from estimator.report.carbon import Footprint
from estimator.report.modules import TOP_LEVEL, kernel_place, module_of
from estimator.report.plots import (
    BatchPoint,
    PlotError,
    batch_figure,
    energy_bars_figure,
    svg_text,
)
from estimator.report.roofline import roofline_figure
from estimator.report.wording import baseline_name, boundary_sentence, interval_sentence

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 2rem auto; max-width: 64rem;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.sub { color: #555; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.9rem; min-width: 10rem; }
.card .v { font-size: 1.35rem; font-weight: 600; } .card .k { color: #555; font-size: 0.85rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.warn { background: #fff4e0; border-left: 4px solid #e69f00; padding: 0.4rem 0.8rem; margin: 0.5rem 0; }
.note { color: #555; font-size: 0.9rem; }
figure { margin: 1rem 0; } figure svg { width: 100%; height: auto; }
.bar { display: inline-block; height: 0.7rem; background: #0072B2; vertical-align: middle; }
"""


def _si(value: float, unit: str = "") -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    for factor, prefix in ((1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _e(text: object) -> str:
    return html.escape(str(text))


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _card(label: str, value: str) -> str:
    return f'<div class="card"><div class="v">{_e(value)}</div><div class="k">{_e(label)}</div></div>'


def _figure(make, caption: str) -> str:
    try:
        svg = svg_text(make())
    except PlotError as exc:
        return f'<p class="note">{_e(caption)}: not drawn ({_e(exc)}).</p>'
    return f"<figure>{svg}<figcaption class='note'>{_e(caption)}</figcaption></figure>"


def _footprint_rows(fp: Footprint) -> str:
    def row(label: str, t: tuple[float, float, float] | None, unit: str) -> str:
        if t is None:
            return ""
        return (
            f"<tr><td>{_e(label)}</td><td class='n'>{_e(_si(t[0], unit))}</td>"
            f"<td class='n'>{_e(_si(t[1], unit))} .. {_e(_si(t[2], unit))}</td></tr>"
        )

    money = fp.currency or "(currency)"
    cost = fp.cost_per_million
    cost_row = (
        ""
        if cost is None
        else f"<tr><td>cost per million inferences</td><td class='n'>{cost[0]:.3g} {_e(money)}</td>"
        f"<td class='n'>{cost[1]:.3g} .. {cost[2]:.3g} {_e(money)}</td></tr>"
    )
    wh = tuple(v * 1000 for v in fp.kwh_per_million)
    return (
        "<table><tr><th></th><th class='n'>estimate</th><th class='n'>interval</th></tr>"
        + row("energy per million inferences", wh, "Wh")
        + row("CO2e per inference", fp.grams_per_inference, "g")
        + row("CO2e per million inferences", fp.grams_per_million, "g")
        + cost_row
        + "</table>"
        + f"<p class='note'>Grid: {_e(fp.grid)} (source: {_e(fp.grid_source)}). PUE {fp.pue:g}. Covers the energy "
        "inside the measurement boundary times PUE only: no embodied carbon, no idle time between inferences.</p>"
    )


def _kernel_table(estimate, top: int) -> str:
    total = sum(layer.joules for layer in estimate.layers) or 1.0
    rows = []
    for layer in estimate.layers[:top]:
        share = layer.joules / total
        where = kernel_place(layer.nodes) if layer.nodes else ""
        if where == TOP_LEVEL:
            where = ", ".join(layer.nodes[:3]) + (", …" if len(layer.nodes) > 3 else "")
        rows.append(
            f"<tr><td class='n'>{share:.1%}</td><td><span class='bar' style='width:{share * 8:.2f}rem'></span></td>"
            f"<td class='n'>{_e(_si(layer.joules, 'J'))}</td><td class='n'>{_e(_si(layer.seconds, 's'))}</td>"
            f"<td>{_e(layer.bound)}</td><td>{_e(layer.level)}</td><td>{_e(layer.name)}</td><td>{_e(where)}</td></tr>"
        )
    more = len(estimate.layers) - top
    tail = f"<p class='note'>{more} smaller kernels not listed.</p>" if more > 0 else ""
    return (
        "<table><tr><th class='n'>share</th><th></th><th class='n'>energy</th><th class='n'>time</th>"
        "<th>bound</th><th>level</th><th>kernel</th><th>module or nodes</th></tr>"
        + "".join(rows)
        + "</table>"
        + tail
    )


def _module_table(estimate, depth: int) -> str:
    total = sum(layer.joules for layer in estimate.layers) or 1.0
    groups: dict[str, list] = {}
    for layer in estimate.layers:
        groups.setdefault(module_of(layer.nodes, depth), []).append(layer)
    if set(groups) == {TOP_LEVEL}:
        return "<p class='note'>The node names carry no module paths (the exporter did not keep them).</p>"
    rows = []
    for name, members in sorted(groups.items(), key=lambda kv: -sum(m.joules for m in kv[1])):
        joules = sum(m.joules for m in members)
        rows.append(
            f"<tr><td>{_e(name)}</td><td class='n'>{len(members)}</td><td class='n'>{joules / total:.1%}</td>"
            f"<td class='n'>{_e(_si(joules, 'J'))}</td><td class='n'>"
            f"{_e(_si(sum(m.seconds for m in members), 's'))}</td></tr>"
        )
    return (
        "<table><tr><th>module</th><th class='n'>kernels</th><th class='n'>share</th><th class='n'>energy</th>"
        "<th class='n'>time</th></tr>" + "".join(rows) + "</table>"
    )


def render_report(
    estimate,
    kernels: KernelReport,
    profile: HardwareProfile,
    model_name: str,
    *,
    dtype: str | None = None,
    footprint: Footprint | None = None,
    batch_points: Sequence[BatchPoint] | None = None,
    batch_note: str = "",
    pictures: bool = True,
    depth: int = 2,
    top: int = 40,
    version: str = "",
) -> str:
    """The HTML page of ``estimate`` (made from ``kernels`` on ``profile``), self-contained.

    Args:
        dtype: the element type the estimate was asked for (places kernels on the right roofline).
        footprint: carbon and cost, when asked for.
        batch_points: energy per sample at several batch sizes, for the batch picture (``batch_note`` says why
            there is none).
        pictures: draw the pictures (needs matplotlib); when False the page says how to get them.
        depth: module depth of the module table and picture; top: kernels listed.
    """
    e = estimate
    lo, hi = e.interval
    t = e.costs.totals
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Energy of {_e(model_name)} on {_e(profile.display_name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Energy of {_e(model_name)} on {_e(profile.display_name)}</h1>",
        f"<p class='sub'>batch {e.batch}, {_e(e.dtype)}, runtime {_e(e.runtime)}; {_e(e.method)}"
        + ("" if e.calibrated else " (not calibrated on measurements of this device)")
        + "</p>",
        "<div class='cards'>",
        _card("energy per inference", _si(e.joules, "J")),
        _card("energy per sample", _si(e.joules_per_sample, "J")),
        _card(f"{e.interval_level:.0%} interval", f"{_si(lo, 'J')} – {_si(hi, 'J')}"),
        _card("latency", _si(e.seconds, "s")),
        _card("average power", _si(e.avg_power_w, "W")),
        _card("work", f"{_si(t.macs, 'MAC')}, {_si(t.params)} params"),
        "</div>",
        f"<p><b>Boundary ({_e(e.boundary)}).</b> {_e(boundary_sentence(e.boundary))}</p>",
        f"<p><b>Interval.</b> {_e(_capital(interval_sentence(e.joules, e.interval, e.interval_level, e.calibrated, e.correction)))} "
        f"<span class='note'>Basis: {_e(e.interval_basis)}.</span></p>",
    ]
    if e.not_costed:
        missing = ", ".join(f"{op} ×{c}" for op, c in sorted(e.not_costed.items()))
        parts.append(f"<div class='warn'>Not costed, so the energy is a lower bound: {_e(missing)}</div>")
    if e.extrapolated:
        parts.append(
            f"<div class='warn'>{len(e.extrapolated)} features lie outside the trained model's data; the calibrated "
            f"answer is extrapolated. The physics prior alone says {_e(_si(e.prior.joules, 'J'))}.</div>"
        )
    parts += [f"<div class='warn'>{_e(_capital(note))}.</div>" for note in getattr(e, "bounds", ())]
    parts.append("<h2>Baselines</h2><table>")
    parts += [
        f"<tr><td>{_e(baseline_name(k))}</td><td class='n'>{_e(_si(v, 'J'))}</td></tr>"
        for k, v in e.baselines.items()
    ]
    parts.append("</table>")
    if footprint is not None:
        parts += ["<h2>Carbon and cost</h2>", _footprint_rows(footprint)]
    parts.append("<h2>Where the energy goes</h2>")
    if pictures:
        parts.append(_figure(lambda: energy_bars_figure(e), "Energy per kernel, split by what limits it."))
        # Module names, judged on the largest kernel (the host's per-call row has no nodes).
        largest = next((layer.nodes for layer in e.layers if layer.nodes), ())
        if module_of(largest, 1) != TOP_LEVEL:
            parts.append(
                _figure(
                    lambda: energy_bars_figure(e, by="module", depth=depth, top=12),
                    f"Energy per module (depth {depth}).",
                )
            )
        parts.append("<h2>Roofline</h2>")
        parts.append(
            _figure(
                lambda: roofline_figure(e, kernels, profile, dtype),
                "Each kernel at its arithmetic intensity and the rate the physics prior gives it.",
            )
        )
        parts.append("<h2>Energy per sample against batch size</h2>")
        if batch_points:
            parts.append(
                _figure(lambda: batch_figure(batch_points), "Estimate with its interval at each batch.")
            )
        else:
            parts.append(f"<p class='note'>{_e(batch_note or 'No batch sweep was asked for.')}</p>")
    else:
        parts.append(
            "<p class='note'>Pictures need matplotlib: pip install 'onnx-energy-estimator[plot]'.</p>"
        )
    parts += [f"<h2>Modules (depth {depth})</h2>", _module_table(e, depth)]
    parts += ["<h2>Kernels by energy</h2>", _kernel_table(e, top)]
    parts.append(
        f"<p class='note'>onnx-energy-estimator {_e(version)}; hardware profile {_e(profile.name)} "
        f"({_e(profile.source_path)}).</p></body></html>"
    )
    return "\n".join(parts)
