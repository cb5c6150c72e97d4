"""Training the shipped GPU models (``estimate train --gpu``): calibrated per (device, runtime) with data, and
one cross-device model, written through :func:`estimator.learn.regressor.save_model`.

* calibrated ``<device>__<runtime>``: trained on every row of that device (its runtimes and boundaries, the
  boundary a feature); written only where the device has rows of that runtime at ``gpu-board-nvml`` (the
  boundary estimates answer at) that time one forward pass (not a source's input pipeline); its 90% interval from leave-one-group-out residuals on the device's rows;
* cross-device ``any-gpu__any``: trained on every GPU row, each GPU weighing the same; its interval from
  leave-one-device-out residuals (each fold fits its constants without the held-out device) as a GPU's bias
  plus the spread inside one (:mod:`estimator.learn.gpu_interval`), so it says how far to trust an unseen GPU.
  Its sidecar's ``prior_answer`` holds the interval of the fitted v2 prior alone, which is what answers at the
  prior's boundary (:mod:`estimator.learn.gpu_cross`).

The v2 constants each model was trained over are fitted on all of its training rows and stored in its sidecar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.learn.gpu_cross import at_prior_boundary, prior_interval, prior_residuals
from estimator.learn.gpu_features import GPU_FEATURE_NAMES
from estimator.learn.gpu_interval import calibrate
from estimator.learn.gpu_model import CROSS_DEVICE, is_gpu_sidecar
from estimator.learn.gpu_training import (
    GPU_PARAMS,
    PRIOR_BOUNDARY,
    GpuSet,
    device_weights,
    fit_gpu,
    fitted_prior,
    input_pipeline,
    predict_split,
)
from estimator.learn.regressor import SIDECAR_SCHEMA, TrainedModel, data_hash, library_versions, save_model
from estimator.learn.training import INTERVAL_LEVEL, metrics

#: Networks (groups) a calibrated GPU model needs: its interval comes from leaving one network out.
MIN_NETWORKS = 3


def oof_log_residuals(gs: GpuSet, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log(measured) - log(predicted) of every row of ``rows``, each predicted with its ``labels`` value held
    out (constants and residual fitted without it)."""
    out = np.full(len(gs.table), np.nan)
    for label in np.unique(labels[rows]):
        test = rows & (labels == label)
        pred = predict_split(gs, rows & ~test, test, np.zeros(len(gs.table)))["model"]  # no inner calibration
        out[test] = np.log(gs.measured_j[test]) - np.log(pred)
    return out[rows]


def train_one(
    gs: GpuSet, rows: np.ndarray, labels: np.ndarray, name: tuple[str, str], basis: str
) -> TrainedModel:
    """The model on ``rows`` stored as ``name`` (hardware, runtime), its interval from held-out ``labels``."""
    resid = oof_log_residuals(gs, rows, labels)
    # estimates are one forward pass: the spread inside a unit from the rows that timed one (all rows when too
    # few), the biases between units from all of them, each unit weighing the same (gpu_interval)
    forward = ~input_pipeline(gs)[rows]
    iv = calibrate(resid, labels[rows], forward if forward.sum() >= 10 else None)
    # the same prior as the held-out residuals above: host constants and a machine's own input-pipeline terms
    # fitted on ``rows`` (the terms touch only rows at boundaries the prior does not predict)
    log_prior, X, constants, pipeline_terms = fitted_prior(gs, rows)
    y = np.log(gs.measured_j)
    devices = gs.table["hardware"].astype(str).to_numpy()[rows]
    reg = fit_gpu(X[rows], y[rows] - log_prior[rows], weights=device_weights(devices))
    t = gs.table[rows]
    measured = gs.measured_j[rows]
    lines = t[["model_ref", "batch", "hardware", "runtime", "boundary", "joules_per_inference"]].astype(str)
    sidecar = {
        "schema": SIDECAR_SCHEMA,
        "hardware": name[0],
        "runtime": name[1],
        "boundary": PRIOR_BOUNDARY,
        "boundaries": sorted(set(t["boundary"].astype(str))),
        "granularity": "graph",
        "prior": "energy-roofline v2",
        "v2_constants": {rt: asdict(c) for rt, c in constants.items()},
        "input_pipeline_terms": [
            [*key, {"j_per_sample": c.j_per_sample, "host_w": c.host_w, "j_per_call": c.j_per_call}]
            for key, c in sorted(pipeline_terms.items())
        ],
        "feature_names": list(GPU_FEATURE_NAMES),
        "hyperparameters": {k: v for k, v in vars(reg).items() if not k.endswith("_")},
        "library_versions": library_versions(),
        "training_rows": int(rows.sum()),
        "training_groups": int(t["group"].nunique()),
        "training_data_sha256": data_hash(lines.agg("|".join, axis=1).tolist()),
        "sources": sorted(set(t["source"].astype(str))),
        "devices": sorted(set(t["hardware"].astype(str))),
        "trained_on": date.today().isoformat(),
        "sample_weights": "every device weighs the same",
        "interval": {
            "level": INTERVAL_LEVEL,
            "low_log": iv.low,
            "high_log": iv.high,
            "basis": f"{basis}: {iv.basis}",
        },
        "metrics": {"held_out": metrics(measured, measured / np.exp(resid))},
        "domain": {
            n: [float(X[rows, i].min()), float(X[rows, i].max())] for i, n in enumerate(GPU_FEATURE_NAMES)
        },
    }
    return TrainedModel(reg, sidecar)


def train_gpu_models(gs: GpuSet, directory: Path, progress: Callable[[str], None] | None = None) -> list[str]:
    """Train and write the calibrated and cross-device GPU models; one summary line per model written.

    Rows of a judged-only source (``gs.trainable`` False) train no model and fit no constant; they only
    calibrate the interval of the cross-device answer at the prior's boundary (:func:`prior_answer`)."""
    say = progress or (lambda _line: None)
    t = gs.table
    devices = t["hardware"].astype(str).to_numpy()
    groups = t["group"].astype(str).to_numpy()
    trainable = gs.trainable
    lines = []
    # a calibrated model answers one forward pass at the board: it needs such rows of its device and runtime
    at_prior = (t["boundary"].to_numpy() == PRIOR_BOUNDARY) & ~input_pipeline(gs) & trainable
    for device, runtime in sorted(
        set(zip(devices[at_prior], t["runtime"][at_prior].astype(str), strict=True))
    ):
        rows = (devices == device) & trainable
        if len(np.unique(groups[rows])) < MIN_NETWORKS:
            lines.append(
                f"{device}/{runtime}: fewer than {MIN_NETWORKS} networks measured; no calibrated model"
            )
            continue
        say(f"training calibrated {device}/{runtime} on {rows.sum()} rows")
        model = train_one(
            gs,
            rows,
            groups,
            (device, runtime),
            "leave-one-network-out residuals of this device",
        )
        save_model(model, directory)
        lines.append(_summary(model))
    if len(set(devices[trainable])) >= 2:
        rows = trainable
        say(f"training the cross-device model on {rows.sum()} rows of {len(set(devices[rows]))} GPUs")
        model = train_one(gs, rows, devices, CROSS_DEVICE, "leave-one-device-out residuals")
        model.sidecar["prior_answer"] = prior_answer(gs, rows, devices, also=~trainable)
        save_model(model, directory)
        lines.append(_summary(model))
    return lines


def train_gpu_measurements(
    table: pd.DataFrame,
    hardware: str,
    directory: Path,
    *,
    root: Path,
    runtime: str | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """A user's measurements of one GPU (``estimate train --hw <GPU profile>``) -> its calibrated models, one per
    runtime measured at ``gpu-board-nvml`` (the boundary estimates answer at), as :func:`train_gpu_models` trains
    the shipped ones: on every row of the device, the host constants fitted on them, the interval from
    leave-one-network-out residuals. ``model_ref`` paths are read relative to ``root``. A GPU model already stored
    for the device and runtime is kept unless ``force`` (no comparison on held-out networks exists for GPU models
    yet). Raises DataError where no model can be trained (no graph, no row at the board, fewer than
    :data:`MIN_NETWORKS` networks)."""
    from estimator.errors import DataError
    from estimator.learn.gpu_set import build_gpu_set

    say = progress or (lambda _line: None)
    gs = build_gpu_set(table, root=root, progress=say)
    for why, n in sorted(gs.missing.items()):
        source = why.split(":", 1)[0]
        say(f"left out {n} rows of source {source}: their model_ref graph was not found under {root}")
    t = gs.table
    if t.empty:
        raise DataError("no row's graph could be read; model_ref must name an ONNX file or a zoo spec")
    groups = t["group"].astype(str).to_numpy()
    runtimes = t["runtime"].astype(str).to_numpy()
    at_board = (t["boundary"].astype(str).to_numpy() == PRIOR_BOUNDARY) & ~input_pipeline(gs)
    wanted = sorted(set(runtimes[at_board])) if runtime is None else [runtime]
    if not (at_board & np.isin(runtimes, wanted)).any():
        raise DataError(
            f"no row of {hardware} at {PRIOR_BOUNDARY}"
            + (f" with runtime {runtime}" if runtime else "")
            + ": GPU estimates answer at that boundary; measure with `estimate measure` (NVML's energy counter)"
        )
    rows = np.ones(len(t), bool)
    networks = len(np.unique(groups))
    if networks < MIN_NETWORKS:
        raise DataError(
            f"{networks} network(s) of {hardware} measured; a calibrated GPU model needs at least {MIN_NETWORKS} "
            "(its interval comes from leaving one network out); measure more networks"
        )
    lines = []
    for rt in wanted:
        if not force and is_gpu_sidecar(directory, hardware, rt):
            lines.append(f"{hardware}/{rt}: kept the GPU model already in {directory}; --force replaces it")
            continue
        say(f"training calibrated {hardware}/{rt} on {rows.sum()} rows, {networks} networks")
        model = train_one(gs, rows, groups, (hardware, rt), "leave-one-network-out residuals of this device")
        paths = save_model(model, directory)
        lines.append(f"{_summary(model)}; wrote {paths[0]} and {paths[1].name}")
    return lines


def prior_answer(gs: GpuSet, rows: np.ndarray, devices: np.ndarray, also: np.ndarray | None = None) -> dict:
    """The sidecar entry of the cross-device answer at the prior's boundary: the fitted v2 prior alone (host
    constants fitted on ``rows``), its interval and held-out metrics from every device held out of the constant
    fit in turn; the rows ``also`` (judged-only sources) calibrate the interval and nothing else."""
    resid = prior_residuals(gs, rows, devices, also)
    iv = prior_interval(gs, rows, devices, resid, also)
    board = rows & at_prior_boundary(gs) & ~np.isnan(resid)
    calibrating = ~np.isnan(resid)  # prior_residuals fills exactly the board rows of ``rows`` and ``also``
    measured = gs.measured_j[board]
    return {
        "boundary": PRIOR_BOUNDARY,
        "system": "energy-roofline v2 with host constants fitted on every GPU's rows at this boundary",
        "devices": sorted(set(devices[board])),
        "interval_devices": sorted(set(devices[calibrating])),
        "interval": {
            "level": INTERVAL_LEVEL,
            "low_log": iv.low,
            "high_log": iv.high,
            "basis": f"leave-one-device-out residuals of the fitted v2 prior: {iv.basis}",
        },
        "metrics": {"held_out": metrics(measured, measured / np.exp(resid[board]))},
    }


def _summary(model: TrainedModel) -> str:
    sc = model.sidecar
    m = sc["metrics"]["held_out"]
    line = (
        f"{sc['hardware']}/{sc['runtime']}: {sc['training_rows']} rows ({', '.join(sc['devices'])}); held-out "
        f"MAPE {m['mape']:.1%}, median APE {m['median_ape']:.1%}; 90% interval x{np.exp(sc['interval']['low_log']):.2f}"
        f"..x{np.exp(sc['interval']['high_log']):.2f}"
    )
    if pa := sc.get("prior_answer"):
        p, iv = pa["metrics"]["held_out"], pa["interval"]
        line += (
            f"; at {pa['boundary']} the fitted v2 prior answers: held-out median APE {p['median_ape']:.1%}, "
            f"90% interval x{np.exp(iv['low_log']):.2f}..x{np.exp(iv['high_log']):.2f}"
        )
    return line


__all__ = [
    "GPU_PARAMS",
    "MIN_NETWORKS",
    "oof_log_residuals",
    "prior_answer",
    "train_gpu_measurements",
    "train_gpu_models",
    "train_one",
]
