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
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.hardware import load_profile
from estimator.energy.physics import DTYPE_CHOICES, desislavov_joules, tdp_roofline_joules
from estimator.energy.runtimes import get_runtime
from estimator.errors import DataError
from estimator.graph.load import load_graph
from estimator.learn.features import FEATURE_NAMES, build_features
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
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
__all__ = [
    "TrainingSet",
    "default_models_dir",
    "featurize",
    "featurize_cached",
    "fit",
    "metrics",
    "predict_log",
    "train_model",
]


@dataclass(frozen=True)
class TrainingSet:
    """Featurised measurements of one hardware (one or several runtimes), rows aligned.

    Attributes:
        X: graph-level features (rows x FEATURE_NAMES).
        y_log: log of the measured joules per inference.
        prior_log: log of the physics prior's joules per inference.
        kernel_X: per row, its kernels' feature rows (kernel granularity), else None.
        kernel_prior: per row, its kernels' prior joules, else None.
        flops, desislavov_j, tdp_roofline_j: per-row work and baseline estimates.
        table: the measurement rows used, aligned with X.
    """

    X: np.ndarray
    y_log: np.ndarray
    prior_log: np.ndarray
    kernel_X: list[np.ndarray] | None
    kernel_prior: list[np.ndarray] | None
    flops: np.ndarray
    desislavov_j: np.ndarray
    tdp_roofline_j: np.ndarray
    table: pd.DataFrame

    def subset(self, mask: np.ndarray) -> TrainingSet:
        """The rows where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        return TrainingSet(
            self.X[idx],
            self.y_log[idx],
            self.prior_log[idx],
            [self.kernel_X[i] for i in idx] if self.kernel_X is not None else None,
            [self.kernel_prior[i] for i in idx] if self.kernel_prior is not None else None,
            self.flops[idx],
            self.desislavov_j[idx],
            self.tdp_roofline_j[idx],
            self.table.iloc[idx].reset_index(drop=True),
        )

    @property
    def groups(self) -> np.ndarray:
        """Architecture group of each row (for grouped splits)."""
        return self.table["group"].astype(str).to_numpy()

    @property
    def measured_j(self) -> np.ndarray:
        """Measured joules per inference."""
        return np.exp(self.y_log)


def build_model(model_ref: str, batch: int, dtype: str | None = None):
    """The ONNX graph a measurement row refers to: a zoo spec or an ONNX file (relative to the repo)."""
    from estimator.zoo import build_from_spec

    if model_ref.endswith(".onnx"):
        path = Path(model_ref)
        return path if path.is_absolute() or path.exists() else REPO_ROOT / path
    element = DTYPE_CHOICES.get(dtype or "", dtype)
    kwargs = {"dtype": element} if element in ("float16",) else {}
    return build_from_spec(model_ref, batch=batch, **kwargs)


def _featurize_chunk(keys: list[tuple], hardware: str, runtimes: list[str], kernel_rows: bool) -> list:
    """Worker: features of each (model_ref, batch, dtype, threads) key for each runtime."""
    hw = load_profile(hardware)
    out = []
    for model_ref, batch, dtype, threads in keys:
        model = build_model(model_ref, int(batch), dtype)
        costs = count_costs(load_graph(model, batch=int(batch) if str(model_ref).endswith(".onnx") else None))
        by_fusion = {}
        per_runtime = {}
        element = DTYPE_CHOICES.get(dtype, dtype) if dtype and dtype != "float32" else None
        for name in runtimes:
            rt = get_runtime(name)
            if rt.fuses not in by_fusion:
                by_fusion[rt.fuses] = fuse_kernels(costs, fuse=rt.fuses)
            kernels = by_fusion[rt.fuses]
            t = (
                None
                if threads is None or (isinstance(threads, float) and math.isnan(threads))
                else int(threads)
            )
            f = build_features(kernels, hw, rt, dtype=element, threads=t)
            per_runtime[name] = (
                f.graph,
                f.kernels if kernel_rows else None,
                f.kernel_prior_joules if kernel_rows else None,
                f.prior.joules,
                float(costs.totals.flops),
                desislavov_joules(kernels, hw, element),
                tdp_roofline_joules(kernels, hw, prior=f.prior),
            )
        out.append(((model_ref, batch, dtype, threads), per_runtime))
    return out


def featurize(
    table: pd.DataFrame,
    hardware: str,
    *,
    kernel_rows: bool = False,
    n_jobs: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingSet:
    """Features of every row of ``table`` (one hardware); graphs are costed once per (model, batch, dtype).

    Raises DataError when the table holds rows of another hardware or an unknown runtime.
    """
    if table.empty:
        raise DataError("no measurement rows to train on; check --hw / --runtime against the table")
    if set(table["hardware"]) != {hardware}:
        raise DataError(
            f"the rows must all be of hardware '{hardware}', found {sorted(set(table['hardware']))}"
        )
    table = table.reset_index(drop=True)
    threads = table["threads"] if "threads" in table else pd.Series([None] * len(table))
    dtypes = table["dtype"].fillna("float32") if "dtype" in table else pd.Series(["float32"] * len(table))
    keys = list(
        zip(
            table["model_ref"],
            table["batch"].astype(int),
            dtypes,
            [None if pd.isna(t) else int(t) for t in threads],
            strict=True,
        )
    )
    runtimes = sorted(set(table["runtime"]))
    for r in runtimes:
        get_runtime(r)
    unique = list(dict.fromkeys(keys))
    chunks = [unique[i : i + 200] for i in range(0, len(unique), 200)]
    results: dict[tuple, dict] = {}
    done = 0
    if n_jobs > 1 and len(chunks) > 1:
        from joblib import Parallel, delayed

        for part in Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_featurize_chunk)(c, hardware, runtimes, kernel_rows) for c in chunks
        ):
            results.update(dict(part))
            done += len(part)
            if progress:
                progress(done, len(unique))
    else:
        for c in chunks:
            part = _featurize_chunk(c, hardware, runtimes, kernel_rows)
            results.update(dict(part))
            done += len(part)
            if progress:
                progress(done, len(unique))
    rows = [results[k][r] for k, r in zip(keys, table["runtime"], strict=True)]
    return TrainingSet(
        X=np.stack([r[0] for r in rows]),
        y_log=np.log(table["joules_per_inference"].to_numpy(dtype=float)),
        prior_log=np.log(np.array([r[3] for r in rows])),
        kernel_X=[r[1] for r in rows] if kernel_rows else None,
        kernel_prior=[r[2] for r in rows] if kernel_rows else None,
        flops=np.array([r[4] for r in rows]),
        desislavov_j=np.array([r[5] for r in rows]),
        tdp_roofline_j=np.array([r[6] for r in rows]),
        table=table,
    )


def featurize_cached(
    table: pd.DataFrame,
    hardware: str,
    *,
    kernel_rows: bool = False,
    n_jobs: int = 2,
    progress: Callable[[int, int], None] | None = None,
    cache_dir: Path | None = None,
) -> TrainingSet:
    """:func:`featurize` with an on-disk cache keyed by the table's content, the hardware and a hash of this
    package's code and profiles (a changed rule or profile never serves stale features). The cache lives in
    ``$ESTIMATOR_CACHE_DIR`` or ``~/.cache/estimator``; it is written atomically."""
    import hashlib
    import tempfile

    import joblib

    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(table.reset_index(drop=True), index=False).values.tobytes())
    digest.update(f"{hardware}|{kernel_rows}|{','.join(FEATURE_NAMES)}".encode())
    digest.update(_code_hash().encode())
    directory = cache_dir or Path(os.environ.get("ESTIMATOR_CACHE_DIR", Path.home() / ".cache" / "estimator"))
    path = directory / f"features-{hardware}-{digest.hexdigest()[:24]}.joblib"
    if path.exists():
        try:
            return joblib.load(path)
        except Exception:  # a cache that cannot be read is recomputed, never trusted
            path.unlink(missing_ok=True)
    ts = featurize(table, hardware, kernel_rows=kernel_rows, n_jobs=n_jobs, progress=progress)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        os.close(fd)
        joblib.dump(ts, tmp)
        os.replace(tmp, path)
    except OSError:
        pass  # caching is an optimisation: a read-only home still trains
    return ts


#: Code that cannot change a feature value (front ends, storage, measurement, reporting), as paths inside the
#: package; a folder excludes everything under it.
_NOT_FEATURE_CODE = (
    "cli/",
    "data/",
    "api.py",
    "learn/evaluation.py",
    "learn/model_store.py",
    "learn/regressor.py",
)


def _code_hash() -> str:
    """Hash of the source and profile files that features depend on."""
    import hashlib

    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    files = [*package.rglob("*.py"), *package.rglob("*.toml")]
    for f in sorted(f for f in files if not f.relative_to(package).as_posix().startswith(_NOT_FEATURE_CODE)):
        digest.update(f.relative_to(package).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


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
