"""The GPU evaluation of EVALUATION.md: per source first, then leave-one-device-out; written to
``docs/evaluation_gpu.md`` and ``.json`` by ``estimate evaluate --gpu``.

Splits (every fold fits the v2 host constants and the residual on its training rows only; rows of one run
under two boundaries share their group, so a held-out network is out under both boundaries):

* **per source, per device**: leave-one-group-out inside one source and device (IrEne: leave-model-out;
  the CNN sets: leave-family-out) - the calibrated model of a (device, runtime) with data;
* **leave-one-device-out**: train on every row of every other GPU (all sources), predict every row of the
  held-out GPU - the cross-device model on a GPU without data;
* **leave-one-source-out**: every row of one source (its GPUs and its measuring method) out.

Every figure is reported per boundary beside the baselines: the v1 prior, the v2 prior alone (shipped
constants, and with the fold's fitted constants), FLOPs-linear (a * FLOPs + b, least squares on the fold's
training rows of the same device and boundary; in leave-one-device-out, of the same boundary on the other
devices, as the held-out device has none) and Desislavov et al. Intervals come from out-of-fold log
residuals of an inner grouped split of the training rows (by group inside a device; by device in
leave-one-device-out when two or more devices train), as a unit's bias plus the spread inside a unit, every
unit weighted equally (:mod:`estimator.learn.gpu_interval`), applied to the held-out rows.

Why this module is long: the three splits, their tables and the targets they are judged against are one report;
split apart, each piece would re-derive the same fold bookkeeping and the Markdown layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.fileio import atomic_write_bytes
from estimator.learn.gpu_cross import CROSS_DEVICE_ANSWER, cross_device_split
from estimator.learn.gpu_kshot import kshot_markdown, kshot_report
from estimator.learn.gpu_modules import module_markdown, module_target_lines, run_module_evaluation
from estimator.learn.gpu_priors import physics_only_interval, prior_medians
from estimator.learn.gpu_training import (
    OPTIONAL_GPU_TABLES,
    GpuSet,
    baselines,
    build_gpu_set,
    device_folds,
    flops_of,
    load_gpu_table,
    predict_split,
)
from estimator.learn.training import INTERVAL_LEVEL, metrics, metrics_table
from estimator.learn.training import pct as _pct

#: ``cross_device`` (the product's answer on a GPU without data, :mod:`estimator.learn.gpu_cross`) exists in
#: leave-one-device-out and leave-one-source-out only.
SYSTEMS = (
    "cross_device",
    "model",
    "prior_v2_fitted",
    "prior_v2_shipped",
    "prior_v1",
    "flops_linear",
    "desislavov",
)
#: Grouping column per source for leave-one-group-out (IrEne by model, the CNN sets by family; ML.ENERGY's
#: diffusion rows by denoiser architecture, so that SDXL base and sdxl-turbo leave together).
GROUP_COLUMN = {
    "irene": "group",
    "fischer_eff22": "family",
    "fischer_rtx4090": "family",
    "power_hungry": "family",
    "mlenergy_diffusion": "family",
}


def _flops_linear(gs: GpuSet, train: np.ndarray, test: np.ndarray, same_device: bool) -> np.ndarray:
    """a * FLOPs + b per boundary (and per device when ``same_device``), least squares on training rows."""
    flops, j = flops_of(gs), gs.measured_j
    out = np.full(test.sum(), np.nan)
    t = gs.table
    test_idx = np.flatnonzero(test)
    for pos, i in enumerate(test_idx):
        m = train & (t["boundary"].to_numpy() == t["boundary"].iat[i])
        if same_device:
            m &= t["hardware"].to_numpy() == t["hardware"].iat[i]
        if m.sum() < 2:
            continue
        A = np.stack([flops[m], np.ones(m.sum())], axis=1)
        coef, *_ = np.linalg.lstsq(A, j[m], rcond=None)
        out[pos] = max(coef[0] * flops[i] + coef[1], 1e-12)
    return out


def _collect(gs: GpuSet, folds: list[tuple[np.ndarray, np.ndarray, np.ndarray]], same_device: bool) -> dict:
    """Every system's held-out predictions over ``folds`` (train, test, inner labels); with ``same_device``
    False (devices held out) also the cross-device answer, which is then the one whose interval is judged."""
    n = len(gs.table)
    answers = ("model",) if same_device else ("cross_device", "model")
    pred = {s: np.full(n, np.nan) for s in SYSTEMS if s != "cross_device" or not same_device}
    bounds = {s: (np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)) for s in answers}
    base = baselines(gs)
    constants, calibrations = [], []
    for train, test, inner in folds:
        out = predict_split(gs, train, test, inner)
        results = {"model": {"pred": out["model"], "interval": out["interval"], "floored": out["floored"]}}
        if not same_device:
            results["cross_device"] = cross_device_split(gs, train, test, inner, out)
            calibrations.append(results["cross_device"]["calibration"])
        for system, r in results.items():
            pred[system][test] = r["pred"]
            lo, hi, floored = bounds[system]
            lo[test], hi[test] = r["interval"]
            floored[test] = r["floored"]
        pred["prior_v2_fitted"][test] = out["prior_v2_fitted"]
        pred["flops_linear"][test] = _flops_linear(gs, train, test, same_device)
        constants.append(out["constants"])
    for name in ("prior_v1", "prior_v2_shipped", "desislavov"):
        pred[name] = base[name]
    return {
        "pred": pred,
        "bounds": bounds,
        "answer": answers[0],
        "constants": constants,
        "calibrations": calibrations,
    }


def _interval_entry(res: dict, system: str, done: np.ndarray, measured: np.ndarray) -> dict:
    lo, hi, _ = res["bounds"][system]
    lo, hi = lo[done], hi[done]
    has = ~np.isnan(lo)
    y, pl = np.log(measured), np.log(res["pred"][system][done])
    covered = (y >= pl + lo) & (y <= pl + hi)
    return {
        "system": system,
        "level": INTERVAL_LEVEL,
        "rows": int(has.sum()),
        "coverage": float(covered[has].mean()) if has.any() else float("nan"),
        "mean_width_factor": float(np.exp(hi[has] - lo[has]).mean()) if has.any() else float("nan"),
    }


def _report(gs: GpuSet, mask: np.ndarray, res: dict, by_source: bool = True) -> dict:
    """Metrics of every system on the rows of ``mask``, per boundary (and per source where a boundary has
    several, unless ``by_source`` is False), with interval coverage: ``interval`` of the answer
    (``res['answer']``: the calibrated model, or the cross-device answer), ``intervals`` of each."""
    t = gs.table
    out = {}
    answer = res["answer"]
    for key, m in _parts(t, mask, by_source):
        done = m & ~np.isnan(res["pred"][answer])
        if not done.any():
            continue
        measured = gs.measured_j[done]
        tasks = (t["hardware"].astype(str) + "/" + t["task"].astype(str)).to_numpy()[done]
        entry = {}
        for system in (s for s in SYSTEMS if s in res["pred"]):
            p = res["pred"][system][done]
            ok = ~np.isnan(p)
            entry[system] = metrics(measured[ok], p[ok], tasks[ok]) if ok.sum() > 1 else None
        entry["intervals"] = {s: _interval_entry(res, s, done, measured) for s in res["bounds"]}
        entry["interval"] = entry["intervals"][answer]
        entry["power_floor_binds"] = int(res["bounds"][answer][2][done].sum())
        out[key] = entry
    return out


def _parts(t: pd.DataFrame, mask: np.ndarray, by_source: bool) -> list[tuple[str, np.ndarray]]:
    """The rows of ``mask`` per boundary and, with ``by_source``, per source where a boundary has several
    (``"gpu-board-nvml, source mlenergy_diffusion"``), so that no source's figure hides inside another's."""
    boundaries, sources = t["boundary"].astype(str).to_numpy(), t["source"].astype(str).to_numpy()
    parts = []
    for boundary in sorted(set(boundaries[mask])):
        m = mask & (boundaries == boundary)
        names = sorted(set(sources[m]))
        if not by_source or len(names) == 1:
            parts.append((boundary, m))
            continue
        parts += [(f"{boundary}, source {name}", m & (sources == name)) for name in names]
    return parts


def _leave_one_source_out(gs: GpuSet, say: Callable[[str], None]) -> dict:
    """Every row of one source out (its devices and its measuring method); the interval calibrated by the
    other devices. Empty with fewer than two sources."""
    sources = gs.table["source"].astype(str).to_numpy()
    devices = gs.table["hardware"].astype(str).to_numpy()
    uniq = sorted(set(sources))
    if len(uniq) < 2:
        return {}
    trainable = gs.trainable
    folds = [((sources != s) & trainable, sources == s, devices) for s in uniq]
    say(f"leave-one-source-out over {len(uniq)} sources")
    res = _collect(gs, folds, same_device=False)
    return {
        source: {
            "trained_on": sorted(set(sources[train])),
            "devices": sorted(set(devices[sources == source])),
            "by_boundary": _report(gs, sources == source, res),
        }
        for source, (train, _test, _inner) in zip(uniq, folds, strict=True)
    }


def run_gpu_evaluation(
    progress: Callable[[str], None] | None = None, gs: GpuSet | None = None, modules: bool = True
) -> dict:
    """Run both splits on the committed GPU tables (or ``gs``), and IrEne's module level unless ``modules`` is
    False (:mod:`estimator.learn.gpu_modules`); returns the report as a JSON-ready dict."""
    say = progress or (lambda _line: None)
    gs = gs or build_gpu_set(load_gpu_table(judged=True), progress=say)
    t = gs.table
    devices = t["hardware"].astype(str).to_numpy()
    sources = t["source"].astype(str).to_numpy()
    trainable = gs.trainable  # rows a fold may train on (a judged-only source's never)
    report: dict = {
        "date": date.today().isoformat(),
        "rows": len(t),
        "rows_without_graph": gs.missing,
        "sources": sorted(set(sources)),
        "judged_only_sources": sorted(set(sources[~trainable])),
        "per_source": {},
        "leave_one_device_out": {},
        "physics_only_interval_gpu": physics_only_interval(gs),
    }
    # The v2 prior alone with constants fitted on each fold's training rows, per held-out row (NaN elsewhere).
    fitted = {"calibrated": np.full(len(t), np.nan), "other_devices": np.full(len(t), np.nan)}
    for source in sorted(set(sources)):
        column = GROUP_COLUMN.get(source, "group")
        for device in sorted(set(devices[sources == source])):
            rows = (sources == source) & (devices == device)
            groups = t[column].astype(str).to_numpy()
            uniq = sorted(set(groups[rows]))
            if len(uniq) < 3:
                continue
            say(f"{source} on {device}: leave-one-{column}-out over {len(uniq)} groups")
            folds = [(rows & (groups != g), rows & (groups == g), groups) for g in uniq]
            res = _collect(gs, folds, same_device=True)
            fitted["calibrated"][rows] = res["pred"]["prior_v2_fitted"][rows]
            report["per_source"][f"{source}/{device}"] = {
                "split": f"leave-one-{column}-out ({len(uniq)} groups)",
                "by_boundary": _report(gs, rows, res),
                "constants_first_fold": res["constants"][0],
            }
    groups = t["group"].astype(str).to_numpy()
    report["leave_one_source_out"] = _leave_one_source_out(gs, say)
    uniq_devices = sorted(set(devices))
    if len(uniq_devices) >= 2:
        folds = device_folds(devices, trainable, groups)
        say(f"leave-one-device-out over {len(uniq_devices)} GPUs")
        res = _collect(gs, folds, same_device=False)
        fitted["other_devices"] = res["pred"]["prior_v2_fitted"]
        for device, (train, _test, _inner) in zip(uniq_devices, folds, strict=True):
            report["leave_one_device_out"][device] = {
                "trained_on": sorted(set(devices[train])),
                "by_boundary": _report(gs, devices == device, res),
            }
        report["leave_one_device_out_pooled"] = _report(gs, np.ones(len(t), bool), res, by_source=False)
        say("leave-one-device-out with k measurements of the held-out GPU")
        report["leave_one_device_out_kshot"] = kshot_report(
            gs,
            devices,
            res["pred"]["cross_device"],
            dict(zip(uniq_devices, res["calibrations"], strict=True)),
        )
    report["prior_medians"] = prior_medians(gs, fitted)
    report["module_level"] = run_module_evaluation(say) if modules else None
    return report


def write_gpu_report(report: dict, out_dir: Path) -> list[Path]:
    """Write ``evaluation_gpu.json`` and ``evaluation_gpu.md`` into ``out_dir`` (atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "evaluation_gpu.json", out_dir / "evaluation_gpu.md"
    atomic_write_bytes(js, (json.dumps(report, indent=1, sort_keys=True, default=_json) + "\n").encode())
    atomic_write_bytes(md, render_markdown(report).encode())
    return [md, js]


def _json(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x))


def _table(by_boundary: dict) -> list[str]:
    lines = []
    for boundary, entry in by_boundary.items():
        iv = entry["interval"]
        others = [
            f"`{name}`'s: {_pct(o['coverage'])}, mean width x{o['mean_width_factor']:.2f}"
            for name, o in entry.get("intervals", {}).items()
            if name != iv.get("system", "model")
        ]
        lines += [
            f"Boundary `{boundary}`: 90% interval of `{iv.get('system', 'model')}` covers {_pct(iv['coverage'])} "
            f"of {iv['rows']} rows, mean width x{iv['mean_width_factor']:.2f}"
            + (f" ({'; '.join(others)})" if others else "")
            + f"; the power floor raised {entry.get('power_floor_binds', 0)} of its predictions.",
            "",
        ]
        lines += metrics_table(entry, [s for s in SYSTEMS if s in entry], "tasks")
        lines.append("")
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _targets(report: dict) -> list[str]:
    """Issue 8's targets beside the figures reached (the model's, on held-out rows)."""
    lines = ["## Targets of issue 8", "", "| target | figure reached | |", "|---|---|---|"]
    for name, entry in report["per_source"].items():
        goal = 0.07 if name.startswith("irene/") else 0.10 if name.startswith("fischer_rtx4090/") else None
        for boundary, e in entry["by_boundary"].items():
            if goal is None or e["model"] is None:
                continue
            mape = e["model"]["mape"]
            lines.append(
                f"| {name} {boundary}, {entry['split']}: MAPE <= {goal:.0%} | {_pct(mape)} "
                f"({e['model']['n']} rows) | {_met(mape <= goal)} |"
            )
    lines += module_target_lines(report.get("module_level"))
    for device, entry in report["leave_one_device_out"].items():
        for boundary, e in entry["by_boundary"].items():
            iv = e["interval"]
            m = e[iv.get("system", "model")]
            ok = m["median_ape"] <= 0.2 and m["p90_ape"] <= 0.5 and 0.85 <= iv["coverage"] <= 0.95
            lines.append(
                f"| leave-one-device-out {device} {boundary} (`{iv.get('system', 'model')}`): median APE <= 20%, "
                f"P90 <= 50%, 90% interval covers 85-95% | {_pct(m['median_ape'])}, {_pct(m['p90_ape'])}, "
                f"{_pct(iv['coverage'])} | {_met(ok)} |"
            )
    how = {
        "": "shipped constants",
        "_fitted_calibrated": "constants fitted on the other groups of its source and device",
        "_fitted_other_devices": "constants fitted on the other devices",
    }
    for name, e in report["prior_medians"].items():
        for key in how if e["prior_boundary"] else ():
            if (r := e.get(f"v2{key}_over_measured")) is None:
                continue
            lines.append(
                f"| v2 prior alone within x1.5 of the measured median: {name}"
                f"{' (input pipeline timed)' if e.get('input_pipeline_timed') else ''}, {how[key]} | x{r:.2f} | "
                f"{_met(1 / 1.5 <= r <= 1.5)} |"
            )
    return [*lines, ""]


def _sources_line(report: dict) -> str:
    """Which sources trained and were judged, the judged-only ones (JUDGED_GPU_TABLES) and the optional ones
    left out (OPTIONAL_GPU_TABLES says why)."""
    used = report.get("sources", [])
    judged = report.get("judged_only_sources", [])
    left = [name for name in OPTIONAL_GPU_TABLES if name not in used]
    out = f"Sources: {', '.join(used)}."
    if judged:
        out += (
            f" Judged but never trained on (in no leave-one-device-out or leave-one-source-out training fold: "
            f"they fit no constant and train no tree, and calibrate only the `cross_device` interval of another "
            f"GPU and source; their own per-source split trains on their other networks; why: "
            f"`JUDGED_GPU_TABLES` in `estimator/learn/gpu_set.py`): {', '.join(judged)}."
        )
    if left:
        out += (
            f" Left out of training and of every figure (`--with-source NAME` adds one; why: "
            f"`OPTIONAL_GPU_TABLES` in `estimator/learn/gpu_set.py`): {', '.join(left)}."
        )
    return out


def _shared_devices_line(by_source: dict) -> str:
    """What leave-one-source-out holds out: a source's devices with its method, or - for a device whose rows
    from another source train in that fold - only the method."""
    devices = {source: set(entry["devices"]) for source, entry in by_source.items()}
    kept = []
    for source, entry in by_source.items():
        for device in sorted(devices[source]):
            others = [t for t in entry["trained_on"] if t != source and device in devices.get(t, ())]
            if others:
                kept.append(f"{device} held out with {source} (its {', '.join(others)} rows train)")
    if not kept:
        return (
            "No held-out source's device has rows of another source in training, so this holds out a source's "
            "devices with its method."
        )
    return (
        f"Devices whose rows from another source stay in training when one source is held out: {'; '.join(kept)}. "
        "For those this split measures the method, not an unseen device (leave-one-device-out holds every "
        "source's rows of a device out)."
    )


def render_markdown(report: dict) -> str:
    """The Markdown report (regenerated by ``estimate evaluate --gpu``)."""
    lines = [
        "# GPU evaluation (issue 8): v2 prior, the calibrated residual and the cross-device answer",
        "",
        "Regenerate with `estimate evaluate --gpu` (written by `estimator.learn.gpu_evaluation`). "
        f"Run {report['date']}; {report['rows']} whole-network rows with a buildable graph.",
        "Rows without a graph yet (not in any figure): "
        + (", ".join(f"{k}: {v}" for k, v in sorted(report["rows_without_graph"].items())) or "none")
        + ".",
        _sources_line(report),
        "",
        f"Systems: `cross_device` = what `estimate --hw` answers on a GPU without data: {CROSS_DEVICE_ANSWER} "
        "(`estimator/learn/gpu_cross.py`; leave-one-device-out and leave-one-source-out only); "
        "`model` = xgboost residual over the v2 prior (GPU feature schema, boundary and runtime as "
        "features); `prior_v2_fitted` = v2 alone with host constants fitted on the fold's training rows and, for a "
        "source that timed its input pipeline at a boundary other than `gpu-board-nvml`, that machine's "
        "pipeline energy per sample fitted on its own training rows (never carried to another GPU; "
        "`fit_pipeline_terms` in `estimator/learn/gpu_training.py`); "
        "`prior_v2_shipped` = v2 with its shipped constants; `prior_v1` = energy-roofline v1; `flops_linear` = "
        "a * FLOPs + b fitted on the fold's training rows; `desislavov` = FLOPs x TDP / peak. The priors "
        "predict `gpu-board-nvml`; at other boundaries only the model knows the boundary (a feature), so the "
        "baselines' errors there include the boundary difference. In every fit each GPU weighs the same.",
        "",
        "Intervals: out-of-fold log residuals of an inner split by unit (a GPU in leave-one-device-out, a network "
        "group inside one device), read as a unit's bias plus the spread inside a unit: quantiles of every unit's "
        "median residual added to every centred residual, each unit weighted equally "
        "(`estimator/learn/gpu_interval.py`). A unit is one GPU in one category of row (one forward pass, or a "
        "source's input pipeline timed): where three or more GPUs have rows of the test row's category, the "
        "interval is theirs alone; otherwise the biases of every unit and the spread of the row's category. A "
        "widening factor learned by nested leave-one-device-out was tried on the 825 rows of 2026-12-01 and "
        "over-covered every held-out GPU (100%, intervals up to x2,860 wide), so it is not used. The "
        "`cross_device` answer's interval at the prior's boundary reads a new GPU's bias through a normal model of "
        "the training GPUs' biases (Student's t prediction interval, k-1 degrees of freedom; "
        "`estimator/learn/gpu_cross.py`), since three or four GPUs' empirical quantiles cannot reach 90%; the "
        "judged-only sources' rows outside the fold's test rows calibrate it too (GPUs that time one forward "
        "pass), and nothing else. A GPU's residuals share one bias, so a GPU is covered almost wholly or hardly at "
        "all: per-GPU coverage of 85-95% is not what a handful of GPUs can show; the pooled figure is the test.",
        "",
        "Power floor: the prediction of a row that times one forward pass, and its interval's ends, are raised to "
        "the board's idle-with-context power x the prior's latency (x boards summed), as the product answer is; "
        "rows that timed an input pipeline are not floored (no product answer is one, and their latency is a host "
        "constant fitted on other rows). Each table says how many predictions the floor raised.",
        "",
        *_targets(report),
        "## Per source and device (calibrated: the device's own other networks train)",
        "",
    ]
    for name, entry in report["per_source"].items():
        lines += [f"### {name}: {entry['split']}", ""]
        lines += _table(entry["by_boundary"])
        lines += [
            "Fitted constants (first fold): "
            + "; ".join(f"{k}: {v}" for k, v in entry["constants_first_fold"].items()),
            "",
        ]
    lines += [
        "## Leave-one-device-out (the cross-device answer on a GPU without data)",
        "",
        "Every row of the held-out GPU is out of training, and so is every constant fitted from it. The interval "
        "judged is `cross_device`'s: at the prior's boundary from the fitted prior's residuals on the training "
        "GPUs, each held out of the constant fit in turn; elsewhere the model's.",
        "",
    ]
    for device, entry in report["leave_one_device_out"].items():
        lines += [f"### held out: {device} (trained on {', '.join(entry['trained_on'])})", ""]
        lines += _table(entry["by_boundary"])
    if report.get("leave_one_device_out_pooled"):
        lines += ["### all held-out devices together, per boundary", ""]
        lines += _table(report["leave_one_device_out_pooled"])
    lines += kshot_markdown(report.get("leave_one_device_out_kshot"))
    if report.get("leave_one_source_out"):
        lines += [
            "## Leave-one-source-out (a source's devices and method all unseen)",
            "",
            _shared_devices_line(report["leave_one_source_out"]),
            "",
        ]
        for source, entry in report["leave_one_source_out"].items():
            lines += [
                f"### held out: {source} ({', '.join(entry['devices'])}; trained on "
                f"{', '.join(entry['trained_on'])})",
                "",
            ]
            lines += _table(entry["by_boundary"])
    lines += module_markdown(report.get("module_level"))
    lines += [
        "## The priors alone against each source's measured median",
        "",
        "Median predicted / median measured joules over a source's rows (shipped constants, no fit; the targets "
        "above also give v2 with its host constants fitted per fold on training rows only). The priors "
        "predict `gpu-board-nvml`; a row at another boundary is compared as it is (no conversion exists for "
        "`machine-total` and `codecarbon-total`), so only `gpu-board-nvml` rows test the x1.5 target; a source that "
        "timed its host input pipeline (Fischer: ImageNet decoding in the loop) measured more than a forward pass, "
        "which no conversion removes.",
        "",
        "| source / boundary | rows | v2 / measured | v1 / measured | prior's own boundary | input pipeline timed |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in report["prior_medians"].items():
        lines.append(
            f"| {name} | {e['rows']} | {e['v2_over_measured']:.2f} | {e['v1_over_measured']:.2f} | "
            f"{'yes' if e['prior_boundary'] else 'no'} | {'yes' if e.get('input_pipeline_timed') else 'no'} |"
        )
    iv = report.get("physics_only_interval_gpu")
    if iv:
        lines += [
            "",
            f"Physics-only 90% interval of the v2 prior on GPUs (shipped in `estimator/energy/prior_interval.json`"
            f" under `gpu`): measured / predicted between {iv['low_factor']:.3g} and {iv['high_factor']:.3g}; "
            f"{iv['basis']}.",
        ]
    lines.append("")
    return "\n".join(lines)
