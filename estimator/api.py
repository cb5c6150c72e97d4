"""The library's front door: an :class:`Estimator` keeps a hardware profile (and a trained model, when one
exists for the profile and runtime) loaded between calls, for use in neural-architecture-search loops.

    est = Estimator("a100")
    result = est.estimate("model.onnx", batch=8)
    result.joules, result.joules_per_sample, result.seconds, result.interval

Why this module is long: it is the one front door, the Estimate result with its stable JSON form and the Estimator
that keeps a profile, a trained model and per-report caches, and chooses among three answers (physics only, a
calibrated model, the cross-device GPU model); many-at-once work lives in :mod:`estimator.many`.
"""

from __future__ import annotations

import gc
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import onnx

from estimator.cost.kernels import KernelReport, fuse_kernels
from estimator.cost.nodes import CostReport, count_costs
from estimator.energy.hardware import HardwareProfile, check_finite_answer, is_shipped_profile, load_profile
from estimator.energy.physics import (
    DTYPE_CHOICES,
    PRIOR_NAME,
    PriorResult,
    desislavov_joules,
    runs_on_gpu,
    tdp_roofline_joules,
)
from estimator.energy.prior_v2 import canonical_prior_name, default_prior, run_prior
from estimator.energy.runtimes import Runtime, get_runtime
from estimator.errors import GraphStructureError, ProfileError
from estimator.graph.load import load_graph
from estimator.layers import LayerEnergy, LayerRows
from estimator.learn.features import (
    FEATURE_NAMES,
    build_features,
    fixed_columns,
    launched_kernels,
    static_additive,
)
from estimator.learn.gpu_model import gpu_answer, is_gpu_sidecar, load_gpu_model, sidecar_constants
from estimator.learn.regressor import TrainedModel, default_models_dir, load_model


@dataclass(frozen=True)
class Estimate:
    """Energy of one inference (one forward pass at ``batch``) on a hardware profile.

    Attributes:
        joules: energy per inference at ``boundary``, J.
        joules_per_sample: ``joules / batch``, J.
        seconds: latency of one inference, s.
        avg_power_w: average power over the inference, W.
        interval: (low, high) joules of the prediction interval at ``interval_level``.
        interval_level: nominal coverage of ``interval`` (e.g. 0.9).
        interval_basis: how the interval was obtained.
        calibrated: True when a model trained on measurements corrected the prior.
        method: ``physics-only (<prior name>)`` or the trained model's name.
        hardware, runtime, boundary, batch, dtype: what the answer is for.
        prior: the physics prior's full result.
        baselines: named baseline estimators' joules (Desislavov et al., TDP x roofline time).
        layers: kernels by energy, largest first (:class:`~estimator.layers.LayerRows`, built when first read).
        costs: the hardware-free cost report.
        not_costed: op types the cost engine could not cost (then joules is a lower bound).
        extrapolated: features outside the trained model's training range (empty when inside or uncalibrated).
        correction: which learned correction answered: ``none`` (physics only), ``calibrated`` (a model trained
            on measurements of this device and runtime) or ``cross-device`` (a GPU model trained on other GPUs).
        bounds: physical bounds that changed the answer (e.g. the GPU power floor), one line each.
    """

    joules: float
    joules_per_sample: float
    seconds: float
    avg_power_w: float
    interval: tuple[float, float]
    interval_level: float
    interval_basis: str
    calibrated: bool
    method: str
    hardware: str
    runtime: str
    boundary: str
    batch: int
    dtype: str
    prior: PriorResult
    baselines: Mapping[str, float]
    layers: Sequence[LayerEnergy]
    costs: CostReport = field(repr=False)
    not_costed: Mapping[str, int] = field(default_factory=dict)
    extrapolated: tuple[str, ...] = ()
    correction: str = "none"
    bounds: tuple[str, ...] = ()

    def __repr__(self) -> str:
        lo, hi = self.interval
        kind = "calibrated" if self.calibrated else "physics-only"
        return (
            f"Estimate({self.joules:.4g} J per inference [{lo:.3g} .. {hi:.3g}] at batch {self.batch}, "
            f"{self.seconds:.3g} s, {self.hardware}/{self.runtime}, {self.dtype}, {kind}, "
            f"boundary {self.boundary}, {len(self.layers)} kernels)"
        )

    def to_dict(self) -> dict:
        """The estimate as plain Python values (the JSON schema with every kernel listed)."""
        return self.to_json(top=len(self.layers))

    def to_dataframe(self):
        """One row per kernel (largest energy first) as a pandas DataFrame: kernel, name, nodes, joules, share,
        latency_s, bound, memory_level. pandas is imported on first call."""
        import pandas as pd

        return pd.DataFrame(self.to_dict()["top_layers"])

    def to_json(self, top: int = 10) -> dict:
        """The documented, stable JSON form of the estimate (schema ``estimator.estimate/1``)."""
        t = self.costs.totals
        return {
            "schema": "estimator.estimate/1",
            "hardware": self.hardware,
            "runtime": self.runtime,
            "boundary": self.boundary,
            "batch": self.batch,
            "dtype": self.dtype,
            "method": self.method,
            "calibrated": self.calibrated,
            "correction": self.correction,
            "extrapolated_features": list(self.extrapolated),
            "bounds": list(self.bounds),
            "joules_per_inference": self.joules,
            "joules_per_sample": self.joules_per_sample,
            "latency_s": self.seconds,
            "avg_power_w": self.avg_power_w,
            "interval": {
                "level": self.interval_level,
                "low_joules": self.interval[0],
                "high_joules": self.interval[1],
                "basis": self.interval_basis,
            },
            "prior": {
                "name": self.prior.name,
                "joules": self.prior.joules,
                "latency_s": self.prior.seconds,
                "static_joules": self.prior.static_joules,
                "compute_joules": self.prior.compute_joules,
                "memory_joules": dict(
                    zip(self.prior.level_names, map(float, self.prior.memory_joules), strict=True)
                ),
                "throttled": self.prior.throttled,
                "host_seconds": self.prior.host_seconds,
                "wait_seconds": self.prior.wait_seconds,
                "notes": list(self.prior.notes),
            },
            "baselines_joules": dict(self.baselines),
            "model": {
                "macs": t.macs,
                "flops": t.flops,
                "params": t.params,
                "param_bytes": t.param_bytes,
                "nodes": len(self.costs.nodes),
                "share_of_nodes_costed": self.costs.coverage,
                "not_costed": dict(self.not_costed),
            },
            "top_layers": [
                {
                    "kernel": layer.kernel,
                    "name": layer.name,
                    "nodes": list(layer.nodes),
                    "joules": layer.joules,
                    "share": layer.joules / self.joules if self.joules else 0.0,
                    "latency_s": layer.seconds,
                    "bound": layer.bound,
                    "memory_level": layer.level,
                }
                for layer in self.layers[:top]
            ],
        }


#: Interval of the physics prior alone, from its errors on public measurements (docs/sanity.md).
_PRIOR_INTERVAL_FILE = "prior_interval.json"


def prior_interval() -> dict:
    """The physics-only interval factors (low, high multipliers and their basis), shipped as package data."""
    text = resources.files("estimator.energy").joinpath(_PRIOR_INTERVAL_FILE).read_text(encoding="utf-8")
    return json.loads(text)


class Estimator:
    """Energy estimates for one hardware profile, with its profile (and trained model) kept loaded.

    Args:
        hw: a profile name (``a100``) or the path of a profile TOML file, or a loaded profile.
        runtime: runtime name; defaults to the profile's default runtime.
        models_dir: folder of trained models (default: ``$ESTIMATOR_MODELS_DIR`` or ``trained_models/``).
        calibrated: use a trained model when one exists for the profile and runtime (True) or the prior only.
        prior: ``v1`` / ``energy-roofline-v1`` or ``v2`` / ``energy-roofline-v2``; default: the prior a trained
            model was trained over (its sidecar's ``prior``, v1 when absent), else v2 on GPU profiles and v1 on
            CPU and SoC profiles (where v2 gives v1's answer).
    """

    def __init__(
        self,
        hw: str | os.PathLike[str] | HardwareProfile,
        runtime: str | None = None,
        *,
        models_dir: str | os.PathLike[str] | None = None,
        calibrated: bool = True,
        prior: str | None = None,
    ) -> None:
        self.profile: HardwareProfile = hw if isinstance(hw, HardwareProfile) else load_profile(hw)
        self.runtime: Runtime = get_runtime(runtime or self.profile.default_runtime)
        if self.runtime.device_kind != ("gpu" if runs_on_gpu(self.profile) else "cpu"):
            raise ProfileError(
                f"runtime '{self.runtime.name}' runs on a {self.runtime.device_kind}, but profile "
                f"'{self.profile.name}' is a {self.profile.kind}; pick a runtime for that device"
            )
        shipped = prior_interval()
        # GPU profiles: the physics-only interval of the v2 prior from GPU measurements (when shipped).
        self._interval = shipped.get("gpu", shipped) if runs_on_gpu(self.profile) else shipped
        self.model: TrainedModel | None = None
        #: ``none``, ``calibrated`` or ``cross-device`` (GPU models), see :class:`Estimate`.
        self.correction = "none"
        # Trained models belong to the shipped profiles: a user's file, even one named like a shipped
        # profile, gets one only when its content is the shipped file's (docs/training.md).
        if calibrated and is_shipped_profile(self.profile):
            directory = Path(models_dir) if models_dir is not None else default_models_dir()
            found = (
                load_gpu_model(directory, self.profile, self.runtime) if runs_on_gpu(self.profile) else None
            )
            if found is not None:
                self.model, self.correction = found
            elif not is_gpu_sidecar(directory, self.profile.name, self.runtime.name):
                self.model = load_model(directory, self.profile.name, self.runtime.name, FEATURE_NAMES)
                self.correction = "none" if self.model is None else "calibrated"
        if (
            prior is not None
            and self.model is not None
            and "v2_constants" in self.model.sidecar
            and canonical_prior_name(prior) != canonical_prior_name(self.model.sidecar["prior"])
        ):
            # A GPU model corrects v2 only; another prior asked for by name answers alone (for comparison).
            self.model, self.correction = None, "none"
        self.prior_name: str = self._choose_prior(prior)
        self._fixed_memo: dict[tuple[int, int, str], np.ndarray] = {}

    def _choose_prior(self, prior: str | None) -> str:
        """The prior's full name: asked for, or the trained model's, or the profile's default."""
        asked = canonical_prior_name(prior) if prior is not None else None
        if asked is not None and self.profile.kind != "gpu":
            asked = PRIOR_NAME  # v2 is v1 on CPU and SoC profiles
        trained_over = (
            canonical_prior_name(self.model.sidecar.get("prior", PRIOR_NAME))
            if self.model is not None
            else None
        )
        if asked is not None and trained_over is not None and asked != trained_over:
            raise ProfileError(
                f"the trained model for {self.profile.name}/{self.runtime.name} corrects the prior "
                f"'{trained_over}', not '{asked}'; drop --prior, or ask for the prior alone (calibrated=False)"
            )
        return asked or trained_over or default_prior(self.profile)

    def kernels(
        self,
        model: str | os.PathLike[str] | bytes | onnx.ModelProto,
        *,
        batch: int | None = None,
        shapes: Mapping[str, Sequence[int]] | None = None,
        strict: bool = False,
    ) -> KernelReport:
        """Load, cost and fuse ``model`` as this estimator's runtime would run it."""
        costs = count_costs(load_graph(model, batch=batch, shapes=shapes), strict=strict)
        return fuse_kernels(costs, fuse=self.runtime.fusion)

    def estimate(
        self,
        model: str | os.PathLike[str] | bytes | onnx.ModelProto,
        *,
        batch: int | None = None,
        shapes: Mapping[str, Sequence[int]] | None = None,
        dtype: str | None = None,
        threads: int | None = None,
        strict: bool = False,
    ) -> Estimate:
        """Joules, latency and power of one inference of ``model`` (a path, bytes or a ModelProto).

        Args:
            batch: binds symbolic leading dimensions (the answer is per forward pass at this batch).
            shapes: input shapes or symbolic dimensions by name.
            dtype: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (or an element type name) to run float kernels in.
            threads: CPU threads (defaults to the runtime's).
            strict: fail when a node cannot be costed.
        """
        with _gc_paused():
            kernels = self.kernels(model, batch=batch, shapes=shapes, strict=strict)
            return self._estimate_kernels(kernels, dtype, threads)

    def estimate_many(
        self, models: Sequence | Mapping, *, n_jobs: int | None = None, **options
    ) -> list[Estimate]:
        """Estimates of every model (paths, bytes, ModelProtos, or a mapping name -> model) x batch size x dtype,
        in that order, each model loaded and costed once per batch size. ``options``: ``batches``, ``dtypes``,
        ``shapes``, ``threads``, ``strict`` (see :func:`estimator.many.run_units`). ``n_jobs``: joblib workers
        (None: 1, or an enclosing ``joblib.parallel_config``, e.g. a Dask cluster); answers do not depend on it."""
        from estimator.many import run_units

        return run_units([self], models, n_jobs=n_jobs, **options)

    def estimate_kernels(
        self, kernels: KernelReport, *, dtype: str | None = None, threads: int | None = None
    ) -> Estimate:
        """Estimate from already fused kernels (skips loading; for callers that cost once)."""
        # The garbage collector paused as in :meth:`estimate` (inline: a context manager costs more than the
        # pause saves on a small report).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._estimate_kernels(kernels, dtype, threads)
        finally:
            if was_enabled:
                gc.enable()

    def _estimate_kernels(self, kernels: KernelReport, dtype: str | None, threads: int | None) -> Estimate:
        element = DTYPE_CHOICES.get(dtype, dtype) if dtype else None
        hw = self.profile
        if not kernels.costs.nodes:
            raise GraphStructureError(
                "the model's graph has no nodes: it computes nothing, so it has no energy to estimate; "
                "check that the export kept the network"
            )
        gpu_model = self.model is not None and "v2_constants" in self.model.sidecar
        constants = sidecar_constants(self.model.sidecar, self.runtime.constants_name) if gpu_model else None
        prior = run_prior(
            self.prior_name,
            kernels,
            hw,
            dtype=element,
            runtime=self.runtime,
            threads=threads,
            constants=constants,
        )
        check_finite_answer(prior.joules, prior.seconds, hw)
        batch = kernels.costs.graph.batch
        kernel_joules = prior.kernel_joules
        extrapolated, bounds = (), ()
        if self.model is None:
            joules = prior.joules
            low_f, high_f = self._interval["low_factor"], self._interval["high_factor"]
            level, basis = self._interval["level"], self._interval["basis"]
            method = f"physics-only ({prior.name})"
        elif gpu_model:
            g = gpu_answer(self.model, self.correction, kernels, prior, hw, self.runtime, element)
            joules, extrapolated, bounds, kernel_joules = g.joules, g.extrapolated, g.notes, g.kernel_joules
            low_f, high_f, level, basis, method = g.low / joules, g.high / joules, g.level, g.basis, g.method
        else:
            joules, kernel_joules, extrapolated = self._calibrated(kernels, prior, element, threads)
            lo, hi = self.model.interval_quantiles
            low_f, high_f = math.exp(lo), math.exp(hi)
            sc = self.model.sidecar
            level, basis = sc["interval"]["level"], sc["interval"]["basis"]
            method = (
                f"xgboost residual over {prior.name}, {sc['granularity']} level, trained on "
                f"{sc['training_rows']} measurements ({', '.join(sc['sources'])})"
            )
        # A trained model corrects joules, not time. Power cannot exceed the TDP for a whole inference, so when
        # the corrected joules do not fit in the prior's latency at TDP, the latency is at least joules / TDP
        # (the prior's time was too short, e.g. framework overhead on a CPU) - never a power above the TDP.
        seconds = max(prior.seconds, joules / hw.tdp_w) if hw.tdp_w > 0 else prior.seconds
        return Estimate(
            joules=joules,
            joules_per_sample=joules / batch,
            seconds=seconds,
            avg_power_w=joules / seconds if seconds > 0 else 0.0,
            interval=(joules * low_f, joules * high_f),
            interval_level=level,
            interval_basis=basis,
            calibrated=self.model is not None,
            method=method,
            hardware=hw.name,
            runtime=self.runtime.name,
            boundary=hw.measurement_boundary,
            batch=batch,
            dtype=element or kernels.dominant_dtype,
            prior=prior,
            baselines={
                "desislavov_flops_over_peak_per_watt": desislavov_joules(kernels, hw, element),
                "tdp_x_roofline_time": tdp_roofline_joules(kernels, hw, prior=prior),
            },
            layers=LayerRows(kernels, prior, kernel_joules),
            costs=kernels.costs,
            not_costed=dict(kernels.costs.not_costed),
            extrapolated=extrapolated,
            correction=self.correction,
            bounds=bounds,
        )

    def _calibrated(
        self, kernels: KernelReport, prior: PriorResult, element: str | None, threads: int | None
    ) -> tuple[float, np.ndarray, tuple[str, ...]]:
        """Joules per inference and per kernel from the trained residual model, and the features outside its
        training range."""
        launched = launched_kernels(kernels)
        per_kernel_model = self.model.sidecar.get("granularity") == "kernel" and bool(launched.any())
        rows = build_features(
            kernels,
            self.profile,
            self.runtime,
            dtype=element,
            threads=threads,
            prior=prior,
            kernel_rows=per_kernel_model,
            graph_row=not per_kernel_model,
            distinct=True,
            # Hardware-free columns: computed once per KernelReport, whatever the profiles that use it.
            static=kernels.derived("static_additive", lambda: static_additive(kernels)),
            fixed=self._fixed_columns(
                prior.threads, kernels.costs.graph.batch, element or kernels.dominant_dtype
            ),
        )
        check = self.model.domain_check  # the sidecar's training ranges, as arrays
        reg = self.model.regressor
        if per_kernel_model:
            # Networks repeat their blocks: one row per distinct kernel, each predicted once (and remembered).
            per_kernel = (
                rows.kernel_prior_joules * np.exp(reg.predict_distinct(rows.kernels))[rows.kernel_row]
            )
            out = np.zeros(len(kernels.kernels))
            out[launched] = per_kernel
            return float(per_kernel.sum()), out, tuple(sorted(check.outside(rows.kernels)))
        factor = float(np.exp(reg.predict(rows.graph[None, :])[0]))
        return (
            prior.joules * factor,
            prior.kernel_joules * factor,
            tuple(check.outside(rows.graph)),
        )

    def _fixed_columns(self, threads: int, batch: int, dtype: str) -> np.ndarray:
        """:func:`~estimator.learn.features.fixed_columns` of this estimator's profile and runtime, kept per
        (threads, batch, dtype): the same for every network estimated alike (read-only)."""
        memo = self._fixed_memo
        key = (threads, batch, dtype)
        row = memo.get(key)
        if row is None:
            if len(memo) >= 64:
                memo.clear()
            row = memo[key] = fixed_columns(self.profile, self.runtime, threads, batch, dtype)
            row.setflags(write=False)
        return row


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a block (its passes over the many small objects of costing cost
    1.1-1.2x per estimate); reference counting still frees memory, and it collects cycles when it resumes."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
