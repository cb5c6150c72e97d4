"""From measurement tables to a trained residual model, and the evaluation protocol of EVALUATION.md.

Pipeline: rows of the measurement schema -> graphs (``estimator.zoo`` spec or an ONNX path) -> kernels as the
row's runtime runs them -> features (:mod:`estimator.learn.features`) -> ``y = log(measured J) - log(prior J)`` ->
:class:`~estimator.learn.regressor.ResidualRegressor`. Predictions are ``prior * exp(residual)``.

* ``graph`` granularity: one row per measured network (HW-NAS-Bench-360).
* ``kernel`` granularity: trained on single-layer networks, predicts a network as the sum over its kernels
  (Getzner et al.: whole-network CPU energy is the sum of its layers within ~1%).

Intervals are split-conformal on grouped out-of-fold residuals: the ``(1-level)/2`` and ``1-(1-level)/2``
quantiles of ``y - prediction`` on groups the model did not see.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date

import numpy as np

from estimator.errors import DataError
from estimator.learn.features import FEATURE_NAMES
from estimator.learn.featurize import REPO_ROOT, TrainingSet, build_model, featurize, featurize_cached  # noqa: F401
from estimator.learn.regressor import (
    SIDECAR_SCHEMA,
    ResidualRegressor,
    TrainedModel,
    data_hash,
    default_models_dir,
    group_hashes,
    library_versions,
)

#: Nominal coverage of the prediction intervals.
INTERVAL_LEVEL = 0.9
__all__ = [
    "TrainingSet",
    "default_models_dir",
    "featurize",
    "featurize_cached",
    "fit",
    "metrics",
    "metrics_table",
    "pct",
    "predict_log",
    "train_model",
]


def grouped_folds(groups: np.ndarray, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Boolean test masks of ``k`` folds in which every group falls in exactly one fold (shuffled)."""
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    fold_of = {g: i % k for i, g in enumerate(uniq)}
    assignment = np.array([fold_of[g] for g in groups])
    return [assignment == i for i in range(k)]


def fit(ts: TrainingSet, params: dict | None = None) -> ResidualRegressor:
    """Fit the residual regressor on a training set."""
    return ResidualRegressor(**(params or {})).fit(ts.X, ts.y_log - ts.prior_log)


def predict_log(reg: ResidualRegressor, ts: TrainingSet, granularity: str) -> np.ndarray:
    """Predicted log joules of each row: graph-level, or the sum over kernels."""
    if granularity == "kernel" and ts.kernel_X is not None:
        out = np.empty(len(ts.y_log))
        sizes = [len(k) for k in ts.kernel_X]
        stacked = np.concatenate(ts.kernel_X) if sum(sizes) else np.zeros((0, len(FEATURE_NAMES)))
        resid = reg.predict(stacked) if len(stacked) else np.zeros(0)
        start = 0
        priors = np.concatenate(ts.kernel_prior) if sum(sizes) else np.zeros(0)
        graph_level = ts.prior_log + reg.predict(ts.X)
        for i, n in enumerate(sizes):
            # A network that launches no kernel (a lone Dropout, a view) is predicted from its graph row.
            out[i] = (
                np.log(np.sum(priors[start : start + n] * np.exp(resid[start : start + n])))
                if n
                else graph_level[i]
            )
            start += n
        return out
    return ts.prior_log + reg.predict(ts.X)


def conformal_quantiles(residuals: np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """Split-conformal (low, high) quantiles of log residuals with the finite-sample correction."""
    r = np.sort(np.asarray(residuals))
    n = len(r)
    if n == 0:
        raise DataError("no calibration residuals: the training table is too small for an interval")
    alpha = (1 - level) / 2
    lo_rank = max(math.floor(alpha * (n + 1)) - 1, 0)
    hi_rank = min(math.ceil((1 - alpha) * (n + 1)) - 1, n - 1)
    return float(r[lo_rank]), float(r[hi_rank])


def metrics_table(entry: dict, systems: Sequence[str], tau_over: str) -> list[str]:
    """Markdown rows of one boundary's :func:`metrics` per system (``entry[system]``, None when it had no rows):
    the header, with Kendall's tau read as the minimum over ``tau_over``, and one row per system."""
    lines = [
        f"| system | n | MAPE | median APE | P90 APE | within 10% | within 20% | Kendall tau (min over {tau_over}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system in systems:
        m = entry[system]
        if m is None:
            lines.append(f"| {system} | 0 | - | - | - | - | - | - |")
            continue
        tau = m["kendall_tau_min"]
        cells = [pct(m[k]) for k in ("mape", "median_ape", "p90_ape", "hit_10", "hit_20")]
        lines.append(
            f"| {system} | {m['n']} | {' | '.join(cells)} | {'-' if math.isnan(tau) else f'{tau:.2f}'} |"
        )
    return lines


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal; '-' when unknown."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def metrics(measured: np.ndarray, predicted: np.ndarray, tasks: Iterable | None = None) -> dict:
    """EVALUATION.md's metrics of predicted vs measured joules (positive arrays)."""
    from scipy.stats import kendalltau, spearmanr

    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    ape = np.abs(predicted - measured) / measured
    predicted = np.maximum(predicted, 1e-15)  # a baseline may predict 0 J (0 FLOPs); keep the logs finite
    lm, lp = np.log(measured), np.log(predicted)
    out = {
        "n": len(measured),
        "mape": float(ape.mean()),
        "median_ape": float(np.median(ape)),
        "p90_ape": float(np.quantile(ape, 0.9)),
        "p95_ape": float(np.quantile(ape, 0.95)),
        "hit_10": float((ape <= 0.10).mean()),
        "hit_20": float((ape <= 0.20).mean()),
        "r2_log": float(1 - np.sum((lm - lp) ** 2) / np.sum((lm - lm.mean()) ** 2))
        if len(lm) > 1
        else float("nan"),
    }
    task_list = np.asarray(list(tasks)) if tasks is not None else np.zeros(len(measured))
    taus, rhos = {}, {}
    for t in np.unique(task_list):
        m = task_list == t
        if m.sum() > 2:
            taus[str(t)] = float(kendalltau(measured[m], predicted[m]).statistic)
            rhos[str(t)] = float(spearmanr(measured[m], predicted[m]).statistic)
    out["kendall_tau_by_task"] = taus
    out["spearman_by_task"] = rhos
    out["kendall_tau_min"] = min(taus.values()) if taus else float("nan")
    return out


def _flops_linear(train: TrainingSet, test: TrainingSet) -> np.ndarray:
    """FLOPs-linear baseline: energy = a * FLOPs + b, least squares on the training rows, floored at 1e-12 J."""
    A = np.stack([train.flops, np.ones_like(train.flops)], axis=1)
    coef, *_ = np.linalg.lstsq(A, train.measured_j, rcond=None)
    return np.maximum(coef[0] * test.flops + coef[1], 1e-12)


def evaluate_split(
    train: TrainingSet, test: TrainingSet, granularity: str, params: dict | None = None, seed: int = 0
) -> dict:
    """Fit on ``train``, report metrics on ``test`` for the model and every baseline, and interval coverage.

    The interval's quantiles come from a model fitted on 80% of the training groups and calibrated on the other
    20% (split conformal), so the test groups never inform them.
    """
    reg = fit(train, params)
    pred = np.exp(predict_log(reg, test, granularity))
    folds = grouped_folds(train.groups, k=5, seed=seed + 1)
    cal_mask = folds[0]
    reg_inner = fit(train.subset(~cal_mask), params)
    cal = train.subset(cal_mask)
    lo, hi = conformal_quantiles(cal.y_log - predict_log(reg_inner, cal, granularity))
    log_pred = np.log(pred)
    covered = (test.y_log >= log_pred + lo) & (test.y_log <= log_pred + hi)
    tasks = test.table["task"].to_numpy()
    predictions = {
        "model": pred,
        "prior": np.exp(test.prior_log),
        "flops_linear": _flops_linear(train, test),
        "desislavov": test.desislavov_j,
        "tdp_roofline": test.tdp_roofline_j,
    }
    result = {
        **{system: metrics(test.measured_j, p, tasks) for system, p in predictions.items()},
        "interval": {
            "level": INTERVAL_LEVEL,
            "coverage": float(covered.mean()),
            "mean_width_factor": float(np.exp(hi - lo)),
            "low_log": lo,
            "high_log": hi,
        },
    }
    return {"result": result, "predicted": pred, "predictions": predictions}


def train_model(
    ts: TrainingSet,
    *,
    hardware: str,
    runtime: str,
    granularity: str,
    params: dict | None = None,
    k: int = 5,
    sources: Sequence[str] = (),
) -> tuple[TrainedModel, dict]:
    """Grouped k-fold CV (metrics and out-of-fold residuals), then a fit on all rows.

    Returns the trained model (interval quantiles from the out-of-fold residuals) and the CV report.
    """
    if len(np.unique(ts.groups)) < k:
        raise DataError(
            f"need at least {k} architecture groups for grouped cross-validation, have "
            f"{len(np.unique(ts.groups))}"
        )
    oof = np.empty(len(ts.y_log))
    for mask in grouped_folds(ts.groups, k):
        reg = fit(ts.subset(~mask), params)
        oof[mask] = predict_log(reg, ts.subset(mask), granularity)
    lo, hi = conformal_quantiles(ts.y_log - oof)
    cv = metrics(ts.measured_j, np.exp(oof), ts.table["task"].to_numpy())
    final = fit(ts, params)
    rows = (
        ts.table[["model_ref", "batch", "runtime", "joules_per_inference"]].astype(str).agg("|".join, axis=1)
    )
    sidecar = {
        "schema": SIDECAR_SCHEMA,
        "hardware": hardware,
        "runtime": runtime,
        "boundary": str(ts.table["boundary"].iloc[0]),
        "granularity": granularity,
        "feature_names": list(FEATURE_NAMES),
        "hyperparameters": {k_: v for k_, v in vars(final).items() if not k_.endswith("_")},
        "library_versions": library_versions(),
        "training_rows": len(ts.y_log),
        "training_groups": len(np.unique(ts.groups)),
        "trained_group_hashes": group_hashes(ts.groups),
        "training_data_sha256": data_hash(rows.tolist()),
        "sources": sorted(set(sources) | set(ts.table["source"].astype(str))),
        "trained_on": date.today().isoformat(),
        "interval": {
            "level": INTERVAL_LEVEL,
            "low_log": lo,
            "high_log": hi,
            "basis": f"split-conformal on {k}-fold grouped out-of-fold residuals",
        },
        "metrics": {"grouped_cv": cv},
    }
    return TrainedModel(final, sidecar), {"grouped_cv": cv, "oof_log": oof}
