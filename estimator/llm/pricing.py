"""Joules and seconds of one generation step, without building an :class:`~estimator.api.Estimate`.

A request prices a few dozen steps of a model of up to ~100 identical blocks. ``Estimator.estimate_kernels``
builds a full answer per call (a record per kernel, sorted, two baselines) over every kernel of the model:
about 0.3-1 s per step of a 70B model. :class:`StepPricer` gives the same joules and seconds from the
kernels of the 2-block stand-in of a zoo decoder (:mod:`estimator.llm.steps`) at a few milliseconds:

* the per-kernel terms of the energy-roofline v2 prior that do not depend on neighbours (compute time, launches,
  arithmetic energy) are computed once per binding on the 2-block kernels and *gathered* into the launch
  order of the ``L``-block model (:func:`~estimator.llm.steps.block_order`): a decoder's blocks are
  identical, so one block is costed and repeated;
* what depends on the whole model is then computed on the gathered arrays exactly as the prior does:
  placement (whole-model weight bytes decide whether weights stay in a cache), the host/GPU pipeline, the TDP
  clamp (:func:`estimator.energy.prior_v2.assemble`);
* a GPU model's correction (and the answer's power floor) is applied to the gathered aggregates (:func:`~estimator.learn.gpu_features.
  gpu_feature_row`): the ``L``-block model's FLOPs, bytes, launches and inputs (its ``L`` layers of cache).

With a serving engine's step-time model (:mod:`estimator.llm.serving`, vLLM) the prior's joules and seconds
of the step's kernels are taken without per-call host time and combined with the model's GPU-time factor and
host time; the learned correction is not applied.

``tests/test_llm_pricing.py`` checks that this equals ``Estimator.estimate_kernels`` on the whole graph.
Other priors and trained models (the v1 prior, a CPU model) fall back to ``estimate_kernels`` on the repeated
kernels, which is exact and slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from estimator.api import Estimator
from estimator.cost.kernels import MATRIX_KINDS, KernelReport
from estimator.dtypes import dtype_bits
from estimator.energy.physics import cache_levels, kernel_arrays, runs_on_gpu
from estimator.energy.placement import place
from estimator.energy.prior_v2 import PRIOR_V2_NAME, DeviceTerms, V2Constants, assemble, device_terms
from estimator.learn.gpu_features import gpu_feature_row, graph_aggregates
from estimator.learn.gpu_model import describe, power_floor_joules, prior_answers, sidecar_constants
from estimator.llm.serving import ServingHost
from estimator.llm.steps import GraphFacts, block_order


@dataclass(frozen=True)
class StepPrice:
    """One step of the whole model on one device.

    Attributes:
        joules: energy at the profile's boundary, J.
        seconds: latency, s.
        static_power_w: static power the prior charged while the device worked, W.
        kernel_joules: per kernel of the whole model in launch order, J (the correction applied).
        kernel_seconds: per kernel of the whole model, s.
        order: for each kernel of the whole model, its index in the priced report's kernels.
    """

    joules: float
    seconds: float
    static_power_w: float
    kernel_joules: np.ndarray
    kernel_seconds: np.ndarray
    order: np.ndarray


class StepPricer:
    """Prices decoder steps with ``estimator`` (its profile, runtime, prior and GPU model).

    Args:
        estimator: the Estimator whose answer is reproduced.
        dtype: element type float kernels run in (None: the graph's).
        layers: blocks of the whole model when reports are 2-block stand-ins; None prices reports as they are.
        serving: a serving engine's step-time model (:mod:`estimator.llm.serving`): each step's time is the
            prior's GPU time x its factor (decode steps) plus its host time, its energy the prior's busy power
            over that GPU time plus the idle-with-context power over the host time; the learned correction is
            not applied (it was trained without this time). Applied with the v2 prior on a GPU only
            (:attr:`applies_serving`); None prices steps as the Estimator does.
    """

    def __init__(
        self,
        estimator: Estimator,
        dtype: str | None,
        layers: int | None,
        serving: ServingHost | None = None,
        batch: int = 1,
    ) -> None:
        self.estimator = estimator
        self.dtype = dtype
        self.layers = layers
        hw = estimator.profile
        model = estimator.model
        self._gpu_model = model is not None and "v2_constants" in model.sidecar
        self.fast = (
            hw.kind == "gpu"
            and runs_on_gpu(hw)
            and estimator.prior_name == PRIOR_V2_NAME
            and (model is None or self._gpu_model)
        )
        self._constants = (
            sidecar_constants(model.sidecar, estimator.runtime.constants_name) if self._gpu_model else None
        )
        self.serving = serving if self.fast else None
        self.host_s = serving.seconds(batch) if self.serving else 0.0
        if self.serving:
            self._gpu_model = False
            self._constants = replace(self._constants or V2Constants(), host_call_s=0.0)
        # whether a learned correction scales each step (not where the cross-device answer is the prior itself)
        self._corrects = self._gpu_model and not prior_answers(model, estimator.correction, hw)

    @property
    def applies_serving(self) -> bool:
        """Whether the serving step-time model prices the steps."""
        return self.serving is not None

    @property
    def method(self) -> str:
        """What answered, as ``Estimate.method`` says it."""
        e = self.estimator
        if self.serving:
            v = self.serving
            return (
                f"{e.prior_name} over the {e.runtime.name} step-time model (decode GPU time "
                f"x{v.gpu_time_factor:.2f}; host {v.step_s * 1e3:.1f} ms + {v.per_sequence_s * 1e3:.3f} ms "
                f"per sequence per step; fitted on {v.fitted_on}); no learned correction"
            )
        if e.model is None:
            return f"physics-only ({e.prior_name})"
        if self._gpu_model:
            return describe(e.model, e.correction, e.profile, e.runtime)
        return f"xgboost residual over {e.prior_name}"

    def price(
        self, report: KernelReport, facts: GraphFacts | None = None, *, decode: bool = True
    ) -> StepPrice:
        """Joules and seconds of the whole model from ``report`` (a 2-block stand-in when ``layers`` is set).

        ``facts``: the binding's graph facts when ``report`` holds interpolated kernels (whose ``costs`` are
        another binding's); None reads them from ``report``. ``decode``: a decode step (False: the prefill),
        which the serving model's GPU-time factor applies to."""
        if not self.fast:
            return self._slow(report)
        facts = facts or GraphFacts.of(report)
        hw, runtime = self.estimator.profile, self.estimator.runtime
        n = len(report.kernels)
        order = np.asarray(block_order(report, self.layers) if self.layers else range(n), dtype=np.int64)
        ka = kernel_arrays(report, self.dtype)
        terms = device_terms(report, hw, runtime, self.dtype)
        level_energy = np.array([lv.energy_per_byte_j for lv in hw.caches] + [hw.dram_energy_per_byte_j])
        per_byte_j = (terms.placement.bytes_by_level * level_energy).sum(axis=1)
        moved_j = per_byte_j if terms.kernel_memory_joules is None else terms.kernel_memory_joules
        # the streaming power's raise of memory-bound kernels (prior_v2.memory_stream_joules) stays memory energy
        stream_extra_j = moved_j - per_byte_j
        compute_j = terms.dynamic_joules - moved_j
        levels = cache_levels(hw)
        placement = place(
            levels,
            ka.weight_bytes[order],
            ka.activation_bytes[order],
            ka.write_bytes[order],
            model_weight_bytes=float(ka.weight_bytes[order].sum()),
            peak_live_activation_bytes=self._peak_live(facts),
            units_used=hw.compute_units,
        )
        by_level = placement.bytes_by_level
        memory_j = by_level * level_energy
        memory_j[:, -1] += stream_extra_j[order]
        whole = DeviceTerms(
            t_compute=terms.t_compute[order],
            beyond_l1_bytes=by_level[:, 1:].sum(axis=1) if levels else by_level.sum(axis=1),
            launches=terms.launches[order],
            dynamic_joules=compute_j[order] + memory_j.sum(axis=1),
            compute_joules=float(compute_j[order].sum()),
            memory_joules=memory_j.sum(axis=0),
            placement=placement,
            unshaped=terms.unshaped,
            kernel_memory_joules=memory_j.sum(axis=1),
        )
        prior = assemble(whole, hw, runtime, self._constants)
        if self.serving:
            return self._serving_step(prior, order, decode)
        joules, factor = prior.joules, 1.0
        if self._corrects:
            row = gpu_feature_row(
                self._aggregates(report, ka, order, facts),
                prior,
                hw,
                runtime,
                boundary=hw.measurement_boundary,
            )
            factor = math.exp(float(self.estimator.model.regressor.predict(row[None, :])[0]))
            # never below the board's idle-with-context power over the prior's latency (the GPU answer's floor)
            joules = max(prior.joules * factor, power_floor_joules(prior.seconds, hw))
            factor = joules / prior.joules if prior.joules > 0 else factor
        seconds = max(prior.seconds, joules / hw.tdp_w) if hw.tdp_w > 0 else prior.seconds
        return StepPrice(
            joules=joules,
            seconds=seconds,
            static_power_w=prior.static_joules / prior.seconds if prior.seconds > 0 else 0.0,
            kernel_joules=prior.kernel_joules * factor,
            kernel_seconds=prior.kernel_seconds,
            order=order,
        )

    def _serving_step(self, prior, order: np.ndarray, decode: bool) -> StepPrice:
        """A step under the serving model: GPU time x factor at the prior's busy power, then the host's time
        at idle-with-context power (the prior was run without per-call host time)."""
        k = self.serving.gpu_time_factor if decode else 1.0
        p_ctx = self.estimator.profile.idle_with_context_w
        return StepPrice(
            joules=k * prior.joules + p_ctx * self.host_s,
            seconds=k * prior.seconds + self.host_s,
            static_power_w=prior.static_joules / prior.seconds if prior.seconds > 0 else 0.0,
            kernel_joules=prior.kernel_joules * k,
            kernel_seconds=prior.kernel_seconds * k,
            order=order,
        )

    def _aggregates(self, report: KernelReport, ka, order: np.ndarray, facts: GraphFacts):
        """:func:`graph_aggregates` of the whole model, from the stand-in's kernels gathered by ``order``."""
        hw = self.estimator.profile
        agg = graph_aggregates(report, hw, self.dtype)
        flops = ka.flops[order]
        moved = (ka.weight_bytes + ka.activation_bytes + ka.write_bytes)[order]
        with np.errstate(divide="ignore", invalid="ignore"):
            intensity = np.where(moved > 0, flops / np.maximum(moved, 1e-30), np.inf)
        matrix = np.array([k.kind in MATRIX_KINDS for k in report.kernels], dtype=bool)[order]
        dt = self.dtype or report.dominant_dtype
        dt = dt if dtype_bits(dt) else "float32"
        total_flops, total_moved = float(flops.sum()), float(moved.sum())
        return replace(
            agg,
            flops=total_flops,
            bytes_moved=total_moved,
            matrix_flops=float(flops[matrix].sum()),
            flops_below_ridge=float(flops[intensity < agg.ridge].sum()),
            weight_bytes=float(ka.weight_bytes[order].sum()),
            launches=float(ka.launches[order].sum()),
            peak_live_bytes=self._peak_live(facts),
            input_elements=facts.input_elements + facts.block_past_elements * self._left_out(),
            ideal_compute_s=total_flops / hw.peak_flops_per_s(dt, matrix=True),
            ideal_memory_s=total_moved / hw.dram_bandwidth_bytes_per_s,
        )

    def _peak_live(self, facts: GraphFacts) -> float:
        """Peak live bytes of the whole model: the stand-in's plus, for each block it leaves out, that
        block's cache tensors (past inputs live from the start, present outputs to the end, so each block
        adds the larger of the two while its cache is alive). Exact when the stand-in's peak falls where
        every block's cache tensors are alive (the cache outgrows one block's activations); an upper bound
        otherwise."""
        return facts.peak_live_bytes + facts.block_cache_bytes * self._left_out()

    def _left_out(self) -> int:
        """Blocks of the whole model that the 2-block stand-in leaves out."""
        return max(self.layers - 2, 0) if self.layers else 0

    def _slow(self, report: KernelReport) -> StepPrice:
        from estimator.llm.steps import repeat_blocks

        full = repeat_blocks(report, self.layers) if self.layers else report
        est = self.estimator.estimate_kernels(full, dtype=self.dtype)
        factor = est.joules / est.prior.joules if est.prior.joules > 0 else 1.0
        order = np.asarray(
            block_order(report, self.layers) if self.layers else range(len(report.kernels)), dtype=np.int64
        )
        return StepPrice(
            joules=est.joules,
            seconds=est.seconds,
            static_power_w=est.prior.static_joules / est.prior.seconds if est.prior.seconds > 0 else 0.0,
            kernel_joules=est.prior.kernel_joules * factor,
            kernel_seconds=est.prior.kernel_seconds,
            order=order,
        )


__all__ = ["StepPrice", "StepPricer"]
