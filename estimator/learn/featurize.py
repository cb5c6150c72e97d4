"""Measurement rows -> featurised training sets: each row's graph (an ``estimator.zoo`` spec or an ONNX path) is
costed, fused as the row's runtime runs it and featurised (:mod:`estimator.learn.features`), with the prior and
the baselines beside it; features are cached on disk, keyed by table, hardware and feature code."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
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

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


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
            if rt.fusion not in by_fusion:
                by_fusion[rt.fusion] = fuse_kernels(costs, fuse=rt.fusion)
            kernels = by_fusion[rt.fusion]
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
    "learn/gpu_",
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
