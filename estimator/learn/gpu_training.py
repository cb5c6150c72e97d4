"""GPU measurement rows -> the v2 prior with constants fitted on training rows only -> the cross-device residual.

Every row of the committed GPU tables whose graph can be built is costed once (:mod:`estimator.learn.gpu_set`,
whose names are re-exported here). Then, for any split:

1. :func:`fit_runtime_constants` fits the v2 host constants per runtime on the split's *training* rows measured
   at the prior's own boundary (``gpu-board-nvml``), never on the held-out rows;
2. :func:`prior_and_features` assembles the prior with those constants and the GPU feature rows;
   :func:`fit_pipeline_terms` adds, at the other boundaries, what a machine's host adds to the forward pass
   (energy per image and per call, host power over the prior's time), fitted on that machine's training rows
   (:func:`fitted_prior` does both);
3. :func:`fit_gpu` trains the xgboost residual ``log(measured) - log(prior v2)`` on the training rows, with the
   boundary a feature (one model learns several boundaries; each row's target is its own boundary).

Rows whose graph is missing are counted and reported, never silently dropped from the figures' denominators.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from estimator.energy.prior_fit import BOUNDS, FitCase, fit_constants, scaled_host
from estimator.energy.prior_v2 import V2Constants, assemble
from estimator.energy.runtimes import get_runtime
from estimator.learn.gpu_features import GPU_FEATURE_NAMES, gpu_feature_row
from estimator.learn.gpu_interval import mondrian
from estimator.learn.gpu_model import power_floor_joules
from estimator.learn.gpu_pipeline import PipelineTerms, fit_pipeline_term, host_layout
from estimator.learn.gpu_set import (  # noqa: F401 - re-exported: callers import them from here
    GPU_TABLES,
    JUDGED_GPU_TABLES,
    OPTIONAL_GPU_TABLES,
    Config,
    GpuSet,
    _kernels,
    _profile,
    build_gpu_set,
    config_graph,
    config_key,
    device_folds,
    feature_boards,
    graph_available,
    held_out_split,
    load_gpu_table,
)
from estimator.learn.regressor import ResidualRegressor

#: The boundary the v2 prior predicts and the host constants are fitted at.
PRIOR_BOUNDARY = "gpu-board-nvml"
#: Hyper-parameters of the GPU residual (small data: shallower trees than the CPU/SoC models; one thread:
#: on a shared machine two xgboost threads on a few hundred rows were 10x slower than one).
GPU_PARAMS = {
    "n_estimators": 300,
    "max_depth": 4,
    "learning_rate": 0.05,
    "min_child_weight": 2.0,
    "n_jobs": 1,
}
#: A fit on fewer rows than this - one Fischer CNN device's own ~36 networks - takes :data:`SMALL_FIT_PARAMS`.
SMALL_FIT_ROWS = 100
#: ``reg_lambda`` shrinks each leaf toward the rest of the model (a round moves a leaf's rows by
#: eta * n / (n + lambda) of their gap, n their summed weight, from the intercept - the rows' mean residual), so
#: a leaf of a network or two keeps less of what it says; ``min_child_weight`` 5 keeps such leaves out. Chosen on
#: 2026-12-02 by leave-one-family-out on the three CNN devices (MAPE RTX 4090 / A100 / Quadro, with the
#: per-sample prior columns, no intervals): lambda 1, mcw 2: 39 / 23 / 29%; lambda 5: 33 / 24 / 30%; lambda 20:
#: 25 / 24 / 30%; lambda 50: 24 / 24 / 29%; lambda 100: 27 / 26 / 28%; mcw 5: 32 / 21 / 30%; lambda 20 + mcw 5:
#: 25 / 21 / 29%; depth 3: 40 / 23 / 30%. Chosen on any two devices, lambda 20 + mcw 5 or lambda 50 wins and the
#: third then reads 25 / 24 / 29%. On every fit they cost elsewhere: IrEne's module level on the GTX 1080 Ti
#: (board) 9.5% -> 10.1%, leave-one-device-out A100 median APE 52% -> 64%; hence only small fits.
SMALL_FIT_PARAMS = {"reg_lambda": 20.0, "min_child_weight": 5.0}
#: Sources whose timed loop included the host input pipeline (ImageNet decoding and resizing), per
#: data/PROVENANCE.md: their energy is not one forward pass. The flag is a feature (like the boundary) and the
#: host constants are fitted apart for them; estimates are made with it off.
INPUT_PIPELINE_SOURCES = frozenset({"fischer_eff22", "fischer_rtx4090", "power_hungry"})
#: Constants fitted per runtime, and the most rows one fit uses (a deterministic subsample beyond it).
FITTED = ("host_dispatch_s", "host_call_s")
FIT_MAX_ROWS = 60
#: Golden-section steps per constant in a fit (one coordinate-descent sweep).
FIT_STEPS = 16


def input_pipeline(gs: GpuSet) -> np.ndarray:
    """Per row: whether the source timed the host input pipeline with the inference."""
    return gs.table["source"].astype(str).isin(INPUT_PIPELINE_SOURCES).to_numpy()


def constants_key(runtime: str, pipeline: bool) -> str:
    """Key of a set of fitted constants: the runtime whose host path it shares (``Runtime.constants_name``),
    ``+input-pipeline`` for rows that timed it."""
    name = get_runtime(runtime).constants_name
    return f"{name}+input-pipeline" if pipeline else name


def _constants_keys(gs: GpuSet) -> list[str]:
    return [
        constants_key(r, p) for r, p in zip(gs.table["runtime"].astype(str), input_pipeline(gs), strict=True)
    ]


def fit_runtime_constants(gs: GpuSet, train: np.ndarray) -> dict[str, V2Constants]:
    """v2 host constants per runtime (and apart for sources that timed their input pipeline), fitted on the
    ``train`` rows measured at :data:`PRIOR_BOUNDARY` only.

    A key without such training rows keeps the shipped constants (``fitted_on`` says so). Rows that timed their
    input pipeline scale them by their host layout (``gpu_pipeline``; ``host_call_s`` is then per image).
    """
    keys = np.array(_constants_keys(gs))
    t = gs.table.assign(**host_layout(gs.table, input_pipeline(gs)))[train]
    out: dict[str, V2Constants] = {}
    for runtime_name in sorted({str(k) for k in keys}):
        rows = t[(keys[train] == runtime_name) & (t["boundary"] == PRIOR_BOUNDARY).to_numpy()]
        if rows.empty:
            out[runtime_name] = V2Constants(
                fitted_on="shipped defaults (no training rows at the prior's boundary)"
            )
            continue
        if len(rows) > FIT_MAX_ROWS:
            rows = rows.sample(FIT_MAX_ROWS, random_state=0)
        cases = [_case(gs, r) for r in rows.to_dict("records")]
        devices = ", ".join(sorted(set(rows["hardware"].astype(str))))
        out[runtime_name] = _fit_identifiable(
            cases, f"{len(cases)} {runtime_name} rows on {devices}", runtime_name.endswith("+input-pipeline")
        )
    return out


#: Median share of the prior's time on the host below which the host dispatch time is not fitted (the rows
#: barely depend on it: a fit would move it to wherever the other terms' errors push it).
HOST_SHARE_TO_FIT = 0.2


def _fit_identifiable(cases: list[FitCase], description: str, per_image: bool = False) -> V2Constants:
    """Fit the host constants the rows can tell: ``host_dispatch_s`` only when the rows are host-bound enough
    (:data:`HOST_SHARE_TO_FIT`), and any constant that ends at the edge of its search range (not identified by
    the rows) keeps its shipped value (with ``per_image``, a kept ``host_call_s`` is None: per call)."""
    shipped = [assemble(c.terms, c.hw, c.runtime, c.scaled(None)) for c in cases]
    share = float(np.median([p.host_seconds / p.seconds for p in shipped]))
    names = FITTED if share >= HOST_SHARE_TO_FIT else tuple(n for n in FITTED if n != "host_dispatch_s")
    fitted = fit_constants(cases, names, sweeps=1, steps=FIT_STEPS, description=description).constants
    kept = []
    for name in names:
        lo, hi = BOUNDS[name]
        value = getattr(fitted, name)
        if (
            value is not None
            and value > 0
            and min(abs(math.log(value / lo)), abs(math.log(value / hi))) < 0.05
        ):
            kept_value = None if per_image and name == "host_call_s" else getattr(cases[0].runtime, name)
            fitted = replace(fitted, **{name: kept_value})
            kept.append(name)
    note = f"; {', '.join(kept)} at the edge of the search range, kept as shipped" if kept else ""
    unfitted = "" if "host_dispatch_s" in names else f"; host_dispatch_s not fitted (host share {share:.0%})"
    unit = "; host_call_s per image of the input pipeline" if per_image else ""
    return replace(fitted, fitted_on=fitted.fitted_on + unfitted + note + unit)


def fit_pipeline_terms(
    gs: GpuSet, train: np.ndarray, log_prior: np.ndarray, log_seconds: np.ndarray
) -> PipelineTerms:
    """What a source's host adds to the forward pass (:class:`PipelineTerm`), per (constants key, boundary,
    device), at the boundaries the prior does not predict (at ``gpu-board-nvml`` the fitted host constants carry
    the pipeline; a pooled term there made the A100 and Quadro worse, docs/evaluation_gpu.md).

    CodeCarbon's total is NVML's GPU energy, RAPL's CPU energy (TDP x 0.5 without RAPL) and RAM at 3/8 W per GB,
    each over the tracker's whole duration (mlco2/codecarbon @ v2.8.3, 46789d3, ``codecarbon/external/
    hardware.py``). With the pipeline not overlapping the board, a call costs ``prior + j_per_sample x batch +
    host_w x t_prior + j_per_call``, fitted on the ``train`` rows of that machine (:func:`fit_pipeline_term`;
    ``log_prior``, ``log_seconds``: the v2 prior of every row, log J, log s). The host is in no profile, so a
    term is never carried to another device. RTX 4090 leave-one-family-out (2026-12-02), model / prior + term:
    ``c x batch`` alone 13.3% / 18.5%, this form 12.2% / 12.8% (docs/fischer_rtx4090.md).
    """
    keys = np.array(_constants_keys(gs))
    boundary = gs.table["boundary"].astype(str).to_numpy()
    devices = gs.table["hardware"].astype(str).to_numpy()
    batch = gs.table["batch"].to_numpy(dtype=float)
    rows = train & input_pipeline(gs) & (boundary != PRIOR_BOUNDARY)
    out: PipelineTerms = {}
    for key, b, d in sorted(set(zip(keys[rows], boundary[rows], devices[rows], strict=True))):
        m = rows & (keys == key) & (boundary == b) & (devices == d)
        out[key, b, d] = fit_pipeline_term(
            np.exp(log_prior[m]), batch[m], np.exp(log_seconds[m]), np.asarray(gs.measured_j)[m]
        )
    return out


def with_pipeline(
    gs: GpuSet, log_prior: np.ndarray, log_seconds: np.ndarray, terms: PipelineTerms
) -> np.ndarray:
    """``log_prior`` (log J) with each input-pipeline row's fitted :class:`PipelineTerm` added at its batch and
    prior seconds (``log_seconds``, log s; :func:`fit_pipeline_terms`); rows without a term keep the forward
    pass alone."""
    out = log_prior.copy()
    if not terms:
        return out
    keys = _constants_keys(gs)
    boundary = gs.table["boundary"].astype(str).to_numpy()
    devices = gs.table["hardware"].astype(str).to_numpy()
    batch = gs.table["batch"].to_numpy(dtype=float)
    for i in np.flatnonzero(input_pipeline(gs)):
        term = terms.get((keys[i], boundary[i], devices[i]))
        if term is not None:
            out[i] = math.log(math.exp(log_prior[i]) + term.joules(batch[i], math.exp(log_seconds[i])))
    return out


def fitted_prior(
    gs: GpuSet, train: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, V2Constants], PipelineTerms]:
    """(log v2 prior J with the input-pipeline terms, GPU features, host constants, pipeline terms), every
    constant fitted on the ``train`` rows only (:func:`fit_runtime_constants`, :func:`fit_pipeline_terms`)."""
    constants = fit_runtime_constants(gs, train)
    log_prior, X = prior_and_features(gs, constants)
    log_seconds = X[:, GPU_FEATURE_NAMES.index("log_prior_seconds")]
    terms = fit_pipeline_terms(gs, train, log_prior, log_seconds)
    return with_pipeline(gs, log_prior, log_seconds, terms), X, constants, terms


def prior_and_features(
    gs: GpuSet, constants: dict[str, V2Constants] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(log v2 prior joules, GPU feature matrix) of every row, the prior assembled with ``constants`` per
    runtime (shipped defaults where absent) and scaled by each row's host layout (``gpu_pipeline``)."""
    constants = constants or {}
    priors: dict[tuple, object] = {}
    log_prior = np.empty(len(gs.table))
    X = np.empty((len(gs.table), len(GPU_FEATURE_NAMES)))
    boards = feature_boards(gs)
    levels = gs.table["level"] if "level" in gs.table else pd.Series([None] * len(gs.table))
    pipelines = input_pipeline(gs)
    images, n_issue = host_layout(gs.table, pipelines).values()
    for i, (key, boundary, n_boards, level, pipeline) in enumerate(
        zip(gs.table["config"], gs.table["boundary"], boards, levels, pipelines, strict=True)
    ):
        cfg = gs.configs[key]
        hw, runtime = _profile(key[3]), get_runtime(key[4])
        ckey = constants_key(key[4], bool(pipeline))
        layout = (key, ckey, images[i], n_issue[i])
        if layout not in priors:
            row_constants = scaled_host(constants.get(ckey), runtime, float(images[i]), float(n_issue[i]))
            priors[layout] = assemble(cfg.terms, hw, runtime, row_constants)
        prior = priors[layout]
        log_prior[i] = math.log(prior.joules)
        X[i] = gpu_feature_row(
            cfg.agg,
            prior,
            hw,
            runtime,
            boundary=str(boundary),
            boards=int(n_boards),
            level="model" if pd.isna(level) else str(level),
            input_pipeline=bool(pipeline),
        )
    return log_prior, X


def baselines(gs: GpuSet) -> dict[str, np.ndarray]:
    """Per row: the v1 prior, the v2 prior with shipped constants and Desislavov et al., J."""
    cfgs = [gs.configs[k] for k in gs.table["config"]]
    log_v2, _ = prior_and_features(gs, None)
    return {
        "prior_v1": np.array([c.v1_joules for c in cfgs]),
        "prior_v2_shipped": np.exp(log_v2),
        "desislavov": np.array([c.desislavov_joules for c in cfgs]),
    }


def fit_gpu(
    X: np.ndarray, y_resid: np.ndarray, params: dict | None = None, weights: np.ndarray | None = None
) -> ResidualRegressor:
    """The xgboost residual on GPU features ``X`` and log residuals ``y_resid`` (rows weighted by ``weights``):
    :data:`GPU_PARAMS`, with :data:`SMALL_FIT_PARAMS` below :data:`SMALL_FIT_ROWS` rows, then ``params``."""
    small = SMALL_FIT_PARAMS if len(X) < SMALL_FIT_ROWS else {}
    return ResidualRegressor(**{**GPU_PARAMS, **small, **(params or {})}).fit(
        X, y_resid, sample_weight=weights
    )


def device_weights(devices: np.ndarray) -> np.ndarray:
    """Per row, a weight that gives every device the same total (mean 1): IrEne's two GPUs hold most rows, and
    unweighted they set the correction that a GPU without data receives."""
    _, inverse, counts = np.unique(devices, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w * len(w) / w.sum()


def power_floor(gs: GpuSet, log_prior_seconds: np.ndarray) -> np.ndarray:
    """Per row, the least joules its boundary can read over the prior's latency (idle-with-context power of
    each board summed), J - the floor the product answer applies (:func:`estimator.learn.gpu_model.bounded`)."""
    boards = gs.table["boards"] if "boards" in gs.table else pd.Series([1] * len(gs.table))
    return np.array(
        [
            power_floor_joules(math.exp(s), _profile(k[3]), 1 if pd.isna(n) else int(n))
            for k, s, n in zip(gs.table["config"], log_prior_seconds, boards, strict=True)
        ]
    )


def flops_of(gs: GpuSet) -> np.ndarray:
    """FLOPs of one inference of each row."""
    return np.array([gs.configs[k].agg.flops for k in gs.table["config"]])


def predict_split(gs: GpuSet, train: np.ndarray, test: np.ndarray, inner: np.ndarray) -> dict:
    """Fit constants and the residual on ``train``; predict ``test``; the interval from ``inner``.

    Args:
        train, test: boolean row masks (disjoint).
        inner: per row, the inner fold label used for the interval's calibration (only train rows are read):
            residuals of each label held out, as label bias + spread inside a label, labels weighted
            equally (:mod:`estimator.learn.gpu_interval`).

    Every device weighs the same in each fit. Predictions and interval ends of rows that time one forward pass
    are floored at the power floor over the prior's latency, as the product answer is. Returns predictions of
    every system for the test rows, the interval as log offsets from the prediction and the fitted constants.
    """
    if np.any(train & test):
        raise ValueError("a row is in both the training and the test rows")
    log_prior, X, constants, terms = fitted_prior(gs, train)
    y = np.log(gs.measured_j)
    devices = gs.table["hardware"].astype(str).to_numpy()
    reg = fit_gpu(X[train], y[train] - log_prior[train], weights=device_weights(devices[train]))
    pred_log = log_prior + reg.predict(X)
    resid = np.full(len(y), np.nan)
    labels = np.unique(inner[train])
    for label in labels if len(labels) > 1 else []:
        tr, cal = train & (inner != label), train & (inner == label)
        r = fit_gpu(X[tr], y[tr] - log_prior[tr], weights=device_weights(devices[tr]))
        resid[cal] = y[cal] - log_prior[cal] - r.predict(X[cal])
    lo, hi = mondrian(resid, inner, input_pipeline(gs), train, test)
    # the product's floor over the prior's latency, only where one forward pass is timed (no pipeline is an answer)
    log_seconds = X[:, GPU_FEATURE_NAMES.index("log_prior_seconds")]
    floor = np.log(power_floor(gs, log_seconds))[test]
    floor[input_pipeline(gs)[test]] = -np.inf
    point = np.maximum(pred_log[test], floor)
    return {
        "model": np.exp(point),
        "prior_v2_fitted": np.exp(log_prior[test]),
        # per test row, log offsets of the interval's ends from the (floored) prediction, both ends floored
        "interval": (np.maximum(point + lo, floor) - point, np.maximum(point + hi, floor) - point),
        "floored": pred_log[test] < floor,
        "floor": floor,  # log J per test row (-inf where no floor applies)
        "seconds": np.exp(log_seconds[test]),  # the prior's latency per test row, s
        "constants": {
            **{rt: c.fitted_on + _constants_text(c) for rt, c in constants.items()},
            **{
                f"{key} at {b} on {d}": f"input pipeline {c.j_per_sample:.3g} J per sample, host "
                f"{c.host_w:.3g} W over the prior's seconds, {c.j_per_call:.3g} J per call, fitted on the training rows"
                for (key, b, d), c in terms.items()
            },
        },
    }


def _constants_text(c) -> str:
    parts = [
        f"{n}={getattr(c, n):.3g} s" for n in ("host_dispatch_s", "host_call_s") if getattr(c, n) is not None
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _case(gs: GpuSet, row: dict) -> FitCase:
    key = row["config"]
    latency = row.get("latency_s")
    latency = float(latency) if latency is not None and not pd.isna(latency) and latency > 0 else None
    return FitCase(
        gs.configs[key].terms,
        _profile(key[3]),
        get_runtime(key[4]),
        float(row["joules_per_inference"]),
        latency,
        *(float(row.get(scale, 1.0)) for scale in ("host_call_images", "pipeline_boards")),
    )


__all__ = [
    "GPU_TABLES",
    "JUDGED_GPU_TABLES",
    "OPTIONAL_GPU_TABLES",
    "GpuSet",
    "PipelineTerms",
    "baselines",
    "build_gpu_set",
    "device_folds",
    "device_weights",
    "feature_boards",
    "fit_gpu",
    "fit_pipeline_terms",
    "fit_runtime_constants",
    "fitted_prior",
    "held_out_split",
    "load_gpu_table",
    "prior_and_features",
    "with_pipeline",
]
