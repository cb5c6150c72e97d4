"""GPU measurement rows -> the v2 prior with constants fitted on training rows only -> the cross-device residual.

Pipeline: every row of the committed GPU tables whose graph can be built (a ``hf:`` zoo spec, or a committed
``data/graphs/<name>.onnx``) is costed once per (network, batch, dtype, device, runtime) into the v2 prior's
:class:`~estimator.energy.prior_v2.DeviceTerms` and the :class:`~estimator.learn.gpu_features.GraphAggregates`
(cached on disk, keyed by this package's code; a new graph joins on the next run). Then, for any split:

1. :func:`fit_runtime_constants` fits the v2 host constants per runtime on the split's *training* rows measured
   at the prior's own boundary (``gpu-board-nvml``), never on the held-out rows;
2. :func:`prior_and_features` assembles the prior with those constants and the GPU feature rows;
3. :func:`fit_gpu` trains the xgboost residual ``log(measured) - log(prior v2)`` on the training rows, with the
   boundary a feature (one model learns several boundaries; each row's target is its own boundary).

Rows whose graph is missing are counted and reported, never silently dropped from the figures' denominators.

Why this module is long: costing, the per-fold constant fit, the features and the split that ties them together
share one cached set of configurations; apart, every caller would have to thread the cache and the fold masks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.hardware import HardwareProfile, load_profile
from estimator.energy.physics import DTYPE_CHOICES, desislavov_joules, energy_prior
from estimator.energy.prior_fit import BOUNDS, FitCase, fit_constants
from estimator.energy.prior_v2 import DeviceTerms, V2Constants, assemble, device_terms
from estimator.energy.runtimes import get_runtime
from estimator.errors import EstimatorError
from estimator.graph.load import load_graph
from estimator.learn.featurize import REPO_ROOT, build_model
from estimator.learn.gpu_cache import ConfigCache
from estimator.learn.gpu_features import GPU_FEATURE_NAMES, GraphAggregates, gpu_feature_row, graph_aggregates
from estimator.learn.gpu_interval import mondrian
from estimator.learn.gpu_model import power_floor_joules
from estimator.learn.regressor import ResidualRegressor

#: The committed GPU training tables (whole networks); module/op rows are reported apart.
GPU_TABLES: tuple[tuple[str, str], ...] = (
    ("irene", "data/irene.csv.gz"),
    ("fischer_eff22", "data/fischer_eff22.csv.gz"),
    ("fischer_rtx4090", "data/fischer_rtx4090.csv.gz"),
)
#: Committed GPU tables left out of training and evaluation unless asked for (``--with-source NAME``), and why.
#: Power Hungry Processing (A100-SXM4-80GB, transformers pipelines at batch 1): trained on, it made every held-out
#: GPU worse in leave-one-device-out on 2026-12-02 (RTX 4090 median APE 124% -> 381%, Quadro 43% -> 51%, GTX
#: 1080 Ti board 16% -> 22%, A100-40GB 52% -> 56%), and inside its own source the learned model (median APE 65%)
#: lost to the v2 prior alone (47%): its pipelines' CPU pre-processing (image decoding and resizing, 800 x 1066
#: detection inputs) is most of a query and no graph feature sees it. docs/evaluation_gpu_power_hungry.md.
OPTIONAL_GPU_TABLES: dict[str, str] = {"power_hungry": "data/power_hungry.csv.gz"}
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
#: Sources whose timed loop included the host input pipeline (ImageNet decoding and resizing), per
#: data/PROVENANCE.md: their energy is not one forward pass. The flag is a feature (like the boundary) and the
#: host constants are fitted apart for them; estimates are made with it off.
INPUT_PIPELINE_SOURCES = frozenset({"fischer_eff22", "fischer_rtx4090", "power_hungry"})
#: Constants fitted per runtime, and the most rows one fit uses (a deterministic subsample beyond it).
FITTED = ("host_dispatch_s", "host_call_s")
FIT_MAX_ROWS = 60
#: Golden-section steps per constant in a fit (one coordinate-descent sweep).
FIT_STEPS = 16


@dataclass(frozen=True)
class Config:
    """A network on a device as a runtime runs it (prior-independent): the v2 device terms and aggregates.

    Attributes:
        terms: the v2 prior's device terms.
        agg: the GPU feature aggregates.
        v1_joules: the v1 prior's joules (a baseline), J.
        desislavov_joules: Desislavov et al.'s baseline, J.
    """

    terms: DeviceTerms
    agg: GraphAggregates
    v1_joules: float
    desislavov_joules: float


@dataclass
class GpuSet:
    """Featurisable GPU rows and their configurations, rows aligned with ``table``.

    Attributes:
        table: the measurement rows kept (one boundary each), with a ``config`` key column.
        configs: config key -> :class:`Config`.
        missing: rows dropped, by "source: reason" (graph not committed, or not costed and why).
    """

    table: pd.DataFrame
    configs: dict[tuple, Config]
    missing: dict[str, int]

    @property
    def measured_j(self) -> np.ndarray:
        """Measured joules per inference."""
        return self.table["joules_per_inference"].to_numpy(dtype=float)


def config_key(row: pd.Series | dict, root: Path = REPO_ROOT) -> tuple:
    """The key of a row's configuration: (model_ref, batch, dtype, hardware, runtime, variant). The variant is
    the graph file's digest (empty for zoo specs: a re-exported graph is never served from the cache) and, for
    an ONNX graph with a symbolic sequence, ``;seq=N`` from the row's ``seq_len``."""
    dtype = row.get("dtype")
    dtype = "float32" if dtype is None or (isinstance(dtype, float) and math.isnan(dtype)) else str(dtype)
    ref = str(row["model_ref"])
    variant = _file_digest(root / ref) if ref.endswith(".onnx") else ""
    seq = row.get("seq_len")
    if ref.endswith(".onnx") and seq is not None and not pd.isna(seq):
        variant += f";seq={int(seq)}"
    return (ref, int(row["batch"]), dtype, str(row["hardware"]), str(row["runtime"]), variant)


def _kernels(root: Path, model_ref: str, batch: int, dtype: str, variant: str, fuse: bool):
    """Fused kernels of a configuration's graph (a zoo spec, or an ONNX file bound at ``batch`` and ``seq``)."""
    return fuse_kernels(count_costs(config_graph(root, model_ref, batch, dtype, variant)), fuse=fuse)


def config_graph(root: Path, model_ref: str, batch: int, dtype: str, variant: str):
    """The shaped graph of a configuration: a zoo spec built at ``batch`` / ``dtype``, or an ONNX file bound at
    ``batch`` and, when ``variant`` carries ``;seq=N``, its symbolic ``sequence`` dimension at N tokens."""
    if model_ref.endswith(".onnx"):
        # a symbolic dimension is bound by name with a 1-tuple (load_graph's ``{dim_param: (value,)}``)
        shapes = {"sequence": (int(variant.split(";seq=")[1]),)} if ";seq=" in variant else None
        return load_graph(root / model_ref, batch=batch, shapes=shapes)
    return load_graph(build_model(model_ref, batch, dtype))


_DIGESTS: dict[Path, str] = {}


def _file_digest(path: Path) -> str:
    if path not in _DIGESTS:
        _DIGESTS[path] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return _DIGESTS[path]


def graph_available(model_ref: str, root: Path = REPO_ROOT) -> bool:
    """Whether the graph a row names can be built here (a zoo ``hf:`` spec, or a committed ONNX file)."""
    if model_ref.endswith(".onnx"):
        return (root / model_ref).exists()
    return model_ref.startswith("hf:")


def load_gpu_table(
    root: Path = REPO_ROOT,
    tables: tuple[tuple[str, str], ...] = GPU_TABLES,
    with_sources: Sequence[str] = (),
) -> pd.DataFrame:
    """The whole-network rows of the committed GPU tables (``level`` empty or ``model``), plus those of the
    :data:`OPTIONAL_GPU_TABLES` named in ``with_sources`` (DataError for a name that is not one)."""
    from estimator.data.measurements import read_measurements
    from estimator.errors import DataError

    unknown = sorted(set(with_sources) - set(OPTIONAL_GPU_TABLES))
    if unknown:
        raise DataError(
            f"--with-source {unknown[0]!r} is not an optional GPU source; choose from "
            f"{', '.join(sorted(OPTIONAL_GPU_TABLES))}"
        )
    tables = (*tables, *((name, OPTIONAL_GPU_TABLES[name]) for name in dict.fromkeys(with_sources)))
    frames = []
    for _name, path in tables:
        t = read_measurements(root / path)
        if "level" in t:
            t = t[t["level"].isna() | (t["level"].astype(str) == "model")]
        frames.append(t)
    return pd.concat(frames, ignore_index=True)


def build_gpu_set(
    table: pd.DataFrame,
    *,
    root: Path = REPO_ROOT,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> GpuSet:
    """Cost every configuration of ``table`` whose graph is available (cached on disk)."""
    say = progress or (lambda _line: None)
    table = table.reset_index(drop=True)
    ok = np.array([graph_available(str(m), root) for m in table["model_ref"]], dtype=bool)
    missing = {
        f"{s}: graph not committed": n for s, n in table[~ok]["source"].astype(str).value_counts().items()
    }
    table = table[ok].reset_index(drop=True)
    keys = [config_key(r, root) for r in table.to_dict("records")]
    table = table.assign(config=keys)
    cache = ConfigCache(cache_dir)
    configs = cache.load()
    todo = [k for k in dict.fromkeys(keys) if k not in configs]
    by_graph: dict[tuple, object] = {}
    failed: dict[tuple, str] = {}
    for i, key in enumerate(todo):
        model_ref, batch, dtype, hardware, runtime_name, variant = key
        runtime = get_runtime(runtime_name)
        gkey = (model_ref, batch, dtype, runtime.fuses, variant)
        try:
            if gkey not in by_graph:
                if len(by_graph) > 64:
                    by_graph.clear()
                by_graph[gkey] = _kernels(root, model_ref, batch, dtype, variant, runtime.fuses)
            kernels = by_graph[gkey]
        except EstimatorError as exc:
            failed[key] = type(exc).__name__
            continue
        hw = _profile(hardware)
        element = DTYPE_CHOICES.get(dtype, dtype) if dtype != "float32" else None
        configs[key] = Config(
            terms=device_terms(kernels, hw, runtime, element),
            agg=graph_aggregates(kernels, hw, element),
            v1_joules=energy_prior(kernels, hw, dtype=element, runtime=runtime).joules,
            desislavov_joules=desislavov_joules(kernels, hw, element),
        )
        if (i + 1) % 25 == 0 or i + 1 == len(todo):
            say(f"costed {i + 1}/{len(todo)} GPU configurations")
            cache.save(configs)
    cache.save(configs)
    bad = table["config"].isin(set(failed))
    for (source, key), n in table[bad].groupby([table["source"].astype(str), table["config"]]).size().items():
        reason = f"{source}: graph not costed ({failed[key]})"
        missing[reason] = missing.get(reason, 0) + int(n)
    table = table[~bad].reset_index(drop=True)
    return GpuSet(table, configs, missing)


def input_pipeline(gs: GpuSet) -> np.ndarray:
    """Per row: whether the source timed the host input pipeline with the inference."""
    return gs.table["source"].astype(str).isin(INPUT_PIPELINE_SOURCES).to_numpy()


def constants_key(runtime: str, pipeline: bool) -> str:
    """Key of a set of fitted constants: the runtime, ``+input-pipeline`` for rows that timed it."""
    return f"{runtime}+input-pipeline" if pipeline else runtime


def _constants_keys(gs: GpuSet) -> list[str]:
    return [
        constants_key(r, p) for r, p in zip(gs.table["runtime"].astype(str), input_pipeline(gs), strict=True)
    ]


def fit_runtime_constants(gs: GpuSet, train: np.ndarray) -> dict[str, V2Constants]:
    """v2 host constants per runtime (and apart for sources that timed their input pipeline), fitted on the
    ``train`` rows measured at :data:`PRIOR_BOUNDARY` only.

    A key without such training rows keeps the shipped constants (``fitted_on`` says so).
    """
    keys = np.array(_constants_keys(gs))
    t = gs.table[train]
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
        out[runtime_name] = _fit_identifiable(cases, f"{len(cases)} {runtime_name} rows on {devices}")
    return out


#: Median share of the prior's time on the host below which the host dispatch time is not fitted (the rows
#: barely depend on it: a fit would move it to wherever the other terms' errors push it).
HOST_SHARE_TO_FIT = 0.2


def _fit_identifiable(cases: list[FitCase], description: str) -> V2Constants:
    """Fit the host constants the rows can tell: ``host_dispatch_s`` only when the rows are host-bound enough
    (:data:`HOST_SHARE_TO_FIT`), and any constant that ends at the edge of its search range (not identified by
    the rows) keeps its shipped value."""
    shipped = [assemble(c.terms, c.hw, c.runtime) for c in cases]
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
            fitted = replace(fitted, **{name: getattr(cases[0].runtime, name)})
            kept.append(name)
    note = f"; {', '.join(kept)} at the edge of the search range, kept as shipped" if kept else ""
    unfitted = "" if "host_dispatch_s" in names else f"; host_dispatch_s not fitted (host share {share:.0%})"
    return replace(fitted, fitted_on=fitted.fitted_on + unfitted + note)


def prior_and_features(
    gs: GpuSet, constants: dict[str, V2Constants] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(log v2 prior joules, GPU feature matrix) of every row, the prior assembled with ``constants`` per
    runtime (shipped defaults where absent)."""
    constants = constants or {}
    priors: dict[tuple, object] = {}
    log_prior = np.empty(len(gs.table))
    X = np.empty((len(gs.table), len(GPU_FEATURE_NAMES)))
    boards = gs.table["boards"] if "boards" in gs.table else pd.Series([1] * len(gs.table))
    levels = gs.table["level"] if "level" in gs.table else pd.Series([None] * len(gs.table))
    pipelines = input_pipeline(gs)
    for i, (key, boundary, n_boards, level, pipeline) in enumerate(
        zip(gs.table["config"], gs.table["boundary"], boards, levels, pipelines, strict=True)
    ):
        cfg = gs.configs[key]
        hw, runtime = _profile(key[3]), get_runtime(key[4])
        ckey = constants_key(key[4], bool(pipeline))
        if (key, ckey) not in priors:
            priors[key, ckey] = assemble(cfg.terms, hw, runtime, constants.get(ckey))
        prior = priors[key, ckey]
        log_prior[i] = math.log(prior.joules)
        X[i] = gpu_feature_row(
            cfg.agg,
            prior,
            hw,
            runtime,
            boundary=str(boundary),
            boards=1 if pd.isna(n_boards) else int(n_boards),
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
    """The xgboost residual on GPU features ``X`` and log residuals ``y_resid`` (rows weighted by ``weights``)."""
    return ResidualRegressor(**{**GPU_PARAMS, **(params or {})}).fit(X, y_resid, sample_weight=weights)


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


def held_out_split(devices: np.ndarray, held_out: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) masks of leave-one-device-out: every row of ``held_out`` is in test, none in train."""
    test = devices == held_out
    return ~test, test


def predict_split(gs: GpuSet, train: np.ndarray, test: np.ndarray, inner: np.ndarray) -> dict:
    """Fit constants and the residual on ``train``; predict ``test``; the interval from ``inner``.

    Args:
        train, test: boolean row masks (disjoint).
        inner: per row, the inner fold label used for the interval's calibration (only train rows are read):
            residuals of each label held out, as label bias + spread inside a label, labels weighted
            equally (:mod:`estimator.learn.gpu_interval`).

    Every device weighs the same in each fit. Predictions and interval ends of rows that time one forward pass
    are floored at the power floor over the prior's latency, as the product answer is. Returns predictions of every system for the test rows,
    the interval as log offsets from the prediction and the fitted constants.
    """
    if np.any(train & test):
        raise ValueError("a row is in both the training and the test rows")
    constants = fit_runtime_constants(gs, train)
    log_prior, X = prior_and_features(gs, constants)
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
    # the floor over the prior's latency, as the product answers: only for rows that time one forward pass (a
    # source's input pipeline is no product answer, and its "latency" is a host constant fitted elsewhere)
    floor = np.log(power_floor(gs, X[:, GPU_FEATURE_NAMES.index("log_prior_seconds")]))[test]
    floor[input_pipeline(gs)[test]] = -np.inf
    point = np.maximum(pred_log[test], floor)
    return {
        "model": np.exp(point),
        "prior_v2_fitted": np.exp(log_prior[test]),
        # per test row, log offsets of the interval's ends from the (floored) prediction, both ends floored
        "interval": (np.maximum(point + lo, floor) - point, np.maximum(point + hi, floor) - point),
        "floored": pred_log[test] < floor,
        "floor": floor,  # log J per test row (-inf where no floor applies)
        "constants": {rt: c.fitted_on + _constants_text(c) for rt, c in constants.items()},
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
    )


_PROFILES: dict[str, HardwareProfile] = {}


def _profile(name: str) -> HardwareProfile:
    if name not in _PROFILES:
        _PROFILES[name] = load_profile(name)
    return _PROFILES[name]


__all__ = [
    "GPU_TABLES",
    "OPTIONAL_GPU_TABLES",
    "GpuSet",
    "baselines",
    "build_gpu_set",
    "device_weights",
    "fit_gpu",
    "fit_runtime_constants",
    "load_gpu_table",
    "prior_and_features",
]
