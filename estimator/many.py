"""Many estimates at once: several models x batch sizes x dtypes (x hardware profiles), over cores or a cluster.

The unit of work is one model at one batch size: it is loaded and costed once, fused once per fusion style, and
estimated for every profile and dtype (costs do not depend on hardware). Units run through :class:`joblib.Parallel`
without naming a backend, so the caller's ``joblib.parallel_config`` decides where they run::

    rows = estimate_grid(models, ["a100", "h100", "rpi5"], batches=[1, 8, 64], n_jobs=2)   # two local cores

    from dask.distributed import Client
    client = Client("tcp://scheduler:8786")
    with joblib.parallel_config(backend="dask"):   # every worker of the cluster, no other change
        rows = estimate_grid(models, ["a100", "h100"], batches=[1, 8, 64], n_jobs=-1)

(Ray: ``from ray.util.joblib import register_ray; register_ray()`` then ``parallel_config(backend="ray")``.)
Results come back in the order of the arguments - models, then batch sizes, then profiles, then dtypes - and are
the same numbers whatever the backend, the number of workers, or the order in which units finish.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import onnx

from estimator.api import Estimate, Estimator, _gc_paused
from estimator.cost.kernels import KernelReport, fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.errors import InvalidDimensionError
from estimator.graph.load import load_graph

ModelSource = str | os.PathLike[str] | bytes | onnx.ModelProto

#: Columns of :func:`summary_row`, in order (units in the names).
ROW_COLUMNS: tuple[str, ...] = (
    "model",
    "hardware",
    "runtime",
    "batch",
    "batch_requested",
    "dtype",
    "joules_per_inference",
    "joules_per_sample",
    "inferences_per_joule",
    "latency_s",
    "avg_power_w",
    "interval_low_joules",
    "interval_high_joules",
    "interval_level",
    "calibrated",
    "boundary",
    "macs",
    "params",
    "not_costed",
)


def summary_row(estimate: Estimate, model: str, batch_requested: int | None = None) -> dict[str, Any]:
    """One flat table row of ``estimate`` (columns :data:`ROW_COLUMNS`); ``inferences_per_joule`` counts
    samples (``1 / joules_per_sample``); ``not_costed`` lists op types the cost engine could not cost;
    ``batch`` is the batch the graph runs at, ``batch_requested`` what was asked (they differ when the
    model's batch dimension is fixed)."""
    t = estimate.costs.totals
    return {
        "model": model,
        "hardware": estimate.hardware,
        "runtime": estimate.runtime,
        "batch": estimate.batch,
        "batch_requested": estimate.batch if batch_requested is None else batch_requested,
        "dtype": estimate.dtype,
        "joules_per_inference": estimate.joules,
        "joules_per_sample": estimate.joules_per_sample,
        "inferences_per_joule": 1.0 / estimate.joules_per_sample if estimate.joules_per_sample > 0 else 0.0,
        "latency_s": estimate.seconds,
        "avg_power_w": estimate.avg_power_w,
        "interval_low_joules": estimate.interval[0],
        "interval_high_joules": estimate.interval[1],
        "interval_level": estimate.interval_level,
        "calibrated": estimate.calibrated,
        "boundary": estimate.boundary,
        "macs": t.macs,
        "params": t.params,
        "not_costed": ";".join(f"{op}x{n}" for op, n in sorted(estimate.not_costed.items())),
    }


def model_names(models: Sequence[ModelSource] | Mapping[str, ModelSource]) -> list[tuple[str, ModelSource]]:
    """(name, model) pairs: a mapping's keys, a path as given, a ModelProto's graph name (or ``model<i>``)."""
    if isinstance(models, Mapping):
        return [(str(k), v) for k, v in models.items()]
    out = []
    for i, m in enumerate(models):
        if isinstance(m, (str, os.PathLike)):
            out.append((str(m), m))
        elif isinstance(m, onnx.ModelProto) and m.graph.name:
            out.append((m.graph.name, m))
        else:
            out.append((f"model{i}", m))
    return out


def _unit(
    estimators: Sequence[Estimator],
    name: str,
    model: ModelSource,
    batch: int | None,
    dtypes: Sequence[str | None],
    shapes: Mapping[str, Sequence[int]] | None,
    threads: int | None,
    strict: bool,
    rows: bool,
) -> list:
    """Every profile x dtype estimate of one model at one batch size (load and cost once)."""
    with _gc_paused():
        costs = count_costs(load_graph(model, batch=batch, shapes=shapes), strict=strict)
        fused: dict[bool | str, KernelReport] = {}
        out = []
        for est in estimators:
            fuse = est.runtime.fusion
            if fuse not in fused:
                fused[fuse] = fuse_kernels(costs, fuse=fuse)
            for dtype in dtypes:
                e = est.estimate_kernels(fused[fuse], dtype=dtype, threads=threads)
                out.append(summary_row(e, name, batch) if rows else e)
    return out


def run_units(
    estimators: Sequence[Estimator],
    models: Sequence[ModelSource] | Mapping[str, ModelSource],
    *,
    batches: Sequence[int | None] = (None,),
    dtypes: Sequence[str | None] = (None,),
    shapes: Mapping[str, Sequence[int]] | None = None,
    threads: int | None = None,
    strict: bool = False,
    n_jobs: int | None = None,
    rows: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list:
    """Estimates (or :func:`summary_row` rows) of every model x batch x estimator x dtype, in that order.

    Args:
        n_jobs: joblib workers (None: 1, or what an enclosing ``joblib.parallel_config`` says; -1: all cores).
        progress: called as ``progress(done, total)`` after each model-and-batch unit, in order.
    """
    for b in batches:
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise InvalidDimensionError(f"batch sizes must be positive integers, got {b!r}")
    if not estimators or not batches or not dtypes:
        return []
    units = [(name, m, b) for name, m in model_names(models) for b in batches]
    args = (tuple(dtypes), shapes, threads, strict, rows)
    from joblib import Parallel, delayed

    # No backend named here: an enclosing joblib.parallel_config (dask, ray, threads) decides where units run.
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    done: list[list] = []
    for part in parallel(delayed(_unit)(estimators, n, m, b, *args) for n, m, b in units):
        done.append(part)
        if progress is not None:
            progress(len(done), len(units))
    return [r for part in done for r in part]


def estimate_grid(
    models: Sequence[ModelSource] | Mapping[str, ModelSource],
    hardware: Sequence[str | os.PathLike[str] | Estimator],
    *,
    runtime: str | None = None,
    batches: Sequence[int | None] = (None,),
    dtypes: Sequence[str | None] = (None,),
    shapes: Mapping[str, Sequence[int]] | None = None,
    threads: int | None = None,
    strict: bool = False,
    calibrated: bool = True,
    models_dir: str | os.PathLike[str] | None = None,
    prior: str | None = None,
    n_jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Table rows (:data:`ROW_COLUMNS`) of every model x batch x hardware profile x dtype.

    Args:
        hardware: profile names or paths (each with ``runtime``, else its default runtime), or Estimators.
        runtime: runtime for every profile given by name (None: each profile's default).
        prior: the physics prior for every profile given by name (None: as :class:`Estimator` chooses).
        n_jobs: joblib workers; under ``joblib.parallel_config(backend="dask")`` the units run on the cluster.
        progress: ``progress(done, total)`` after each model-and-batch unit.
    Other arguments as :meth:`Estimator.estimate`.
    """
    estimators = [
        h
        if isinstance(h, Estimator)
        else Estimator(h, runtime=runtime, calibrated=calibrated, models_dir=models_dir, prior=prior)
        for h in hardware
    ]
    return run_units(
        estimators,
        models,
        batches=batches,
        dtypes=dtypes,
        shapes=shapes,
        threads=threads,
        strict=strict,
        n_jobs=n_jobs,
        rows=True,
        progress=progress,
    )
