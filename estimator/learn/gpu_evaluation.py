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

The Markdown of the report is :mod:`estimator.learn.gpu_report`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.fileio import atomic_write_bytes
from estimator.learn.gpu_cross import cross_device_split
from estimator.learn.gpu_kshot import kshot_report
from estimator.learn.gpu_modules import run_module_evaluation
from estimator.learn.gpu_priors import physics_only_interval, prior_medians
from estimator.learn.gpu_report import SYSTEMS, data_gaps, render_markdown
from estimator.learn.gpu_training import (
    GpuSet,
    baselines,
    build_gpu_set,
    device_folds,
    flops_of,
    load_gpu_table,
    predict_split,
)
from estimator.learn.training import INTERVAL_LEVEL, metrics

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
        "data_gaps": data_gaps(t),
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
