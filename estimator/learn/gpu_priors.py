"""The GPU priors alone against the measurements: each source's median predicted / measured joules, and the v2
prior's own physics-only interval on GPUs (shipped in ``estimator/energy/prior_interval.json`` under ``gpu``).
Part of the GPU evaluation report (:mod:`estimator.learn.gpu_evaluation`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from estimator.fileio import atomic_write_bytes
from estimator.learn.gpu_training import PRIOR_BOUNDARY, GpuSet, baselines, input_pipeline
from estimator.learn.training import INTERVAL_LEVEL, conformal_quantiles


def median_ratio(predicted: np.ndarray, measured: np.ndarray) -> float | None:
    """Median predicted / median measured over the rows with a prediction (None when there is none)."""
    ok = ~np.isnan(predicted)
    return float(np.median(predicted[ok]) / np.median(measured[ok])) if ok.any() else None


def prior_medians(gs: GpuSet, fitted: dict[str, np.ndarray] | None = None) -> dict:
    """Per source and boundary: median predicted / median measured joules of the v1 and v2 priors (shipped),
    and of v2 with constants fitted per fold (``fitted``: per row, its held-out prediction in a split)."""
    base = baselines(gs)
    t = gs.table
    out = {}
    for (source, boundary), idx in t.groupby(["source", "boundary"]).indices.items():
        measured = float(np.median(gs.measured_j[idx]))
        out[f"{source}/{boundary}"] = {
            "rows": len(idx),
            "v2_over_measured": float(np.median(base["prior_v2_shipped"][idx])) / measured,
            "v1_over_measured": float(np.median(base["prior_v1"][idx])) / measured,
            **{
                f"v2_fitted_{split}_over_measured": median_ratio(pred[idx], gs.measured_j[idx])
                for split, pred in (fitted or {}).items()
            },
            "prior_boundary": boundary == PRIOR_BOUNDARY,
            "input_pipeline_timed": bool(input_pipeline(gs)[idx].any()),
        }
    return out


def physics_only_interval(gs: GpuSet) -> dict:
    """The v2 prior's own 90% interval on GPUs: split-conformal quantiles of measured / predicted (shipped
    constants, nothing fitted, so every row is held out) over the rows at the prior's boundary that time one
    forward pass (not a source's input pipeline), each source weighted equally (a source with many rows does not
    set the interval alone)."""
    at = (gs.table["boundary"] == PRIOR_BOUNDARY).to_numpy() & ~input_pipeline(gs)
    if not at.any():
        return {}
    ratio = np.log(gs.measured_j[at] / baselines(gs)["prior_v2_shipped"][at])
    sources = gs.table["source"].astype(str).to_numpy()[at]
    per_source = [np.sort(ratio[sources == s]) for s in sorted(set(sources))]
    # equal weight: resample every source to the size of the largest by quantiles of its own ratios
    n = max(len(r) for r in per_source)
    pooled = np.concatenate([np.quantile(r, (np.arange(n) + 0.5) / n) for r in per_source])
    lo, hi = conformal_quantiles(pooled, INTERVAL_LEVEL)
    names = ", ".join(f"{s} ({(sources == s).sum()} rows)" for s in sorted(set(sources)))
    return {
        "level": INTERVAL_LEVEL,
        "low_factor": float(np.exp(lo)),
        "high_factor": float(np.exp(hi)),
        "basis": f"spread of measured/predicted of the v2 prior (shipped constants) on {PRIOR_BOUNDARY} rows of "
        f"{names}, sources weighted equally (docs/evaluation_gpu.md)",
    }


def write_prior_interval(report: dict, path: Path) -> Path | None:
    """Store the GPU physics-only interval under the key ``gpu`` of the shipped ``prior_interval.json``."""
    iv = report.get("physics_only_interval_gpu")
    if not iv:
        return None
    shipped = json.loads(path.read_text())
    shipped["gpu"] = iv
    atomic_write_bytes(path, (json.dumps(shipped, indent=2) + "\n").encode())
    return path


__all__ = ["median_ratio", "physics_only_interval", "prior_medians", "write_prior_interval"]
