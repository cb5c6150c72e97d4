"""Using a trained GPU correction at estimate time: which model answers, the prior it corrects, the answer.

Two kinds of GPU model live in the store (written by ``estimate train --gpu``), both xgboost residuals over the
v2 prior on :data:`~estimator.learn.gpu_features.GPU_FEATURE_NAMES`:

* **calibrated** ``<profile>__<runtime>``: trained on measurements of that device and runtime (and the
  device's other runtimes) - used when the (device, runtime) has data at the answer's boundary;
* **cross-device** ``any-gpu__any``: trained on every GPU with data (each GPU weighing the same), its interval
  from leave-one-device-out residuals - used for every other GPU profile and runtime. Where its sidecar holds a
  ``prior_answer`` and the profile answers at that boundary (the v2 prior's own, ``gpu-board-nvml``), the answer
  is the v2 prior with the sidecar's fitted host constants, uncorrected, with the prior's own leave-one-device-out
  interval: on GPUs held out it beat the learned residual there (:mod:`estimator.learn.gpu_cross`).

The answer and its interval are floored at the board's idle-with-context power over the latency reported
(:func:`bounded`): a correction learned from other GPUs can say "less energy" but never a power no board draws.

Each sidecar records the v2 constants it was trained over (``v2_constants``, per runtime): the prior is
assembled with them, so the correction sees the prior it was trained on. Never imports training code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimator.cost.kernels import KernelReport
from estimator.energy.hardware import HardwareProfile
from estimator.energy.physics import PriorResult
from estimator.energy.prior_v2 import V2Constants
from estimator.energy.runtimes import Runtime
from estimator.learn.gpu_features import GPU_FEATURE_NAMES, gpu_feature_row, graph_aggregates
from estimator.learn.regressor import TrainedModel, load_model, model_paths

#: Store name (hardware, runtime) of the cross-device model.
CROSS_DEVICE = ("any-gpu", "any")


def is_gpu_sidecar(directory: Path, hardware: str, runtime: str) -> bool:
    """Whether a stored model for ``hardware``/``runtime`` exists and uses the GPU feature schema."""
    path = model_paths(directory, hardware, runtime)[1]
    try:
        names = json.loads(path.read_text()).get("feature_names")
    except (OSError, json.JSONDecodeError):
        return False
    return list(names or []) == list(GPU_FEATURE_NAMES)


def load_gpu_model(directory: Path, hw: HardwareProfile, runtime: Runtime) -> tuple[TrainedModel, str] | None:
    """(model, ``calibrated`` or ``cross-device``) for a GPU profile and runtime, or None when neither exists.

    The calibrated model answers only when it was trained on rows of this runtime at the profile's boundary.
    """
    if is_gpu_sidecar(directory, hw.name, runtime.name):
        model = load_model(directory, hw.name, runtime.name, GPU_FEATURE_NAMES)
        if model is not None and hw.measurement_boundary in model.sidecar.get("boundaries", []):
            return model, "calibrated"
    if is_gpu_sidecar(directory, *CROSS_DEVICE):
        model = load_model(directory, *CROSS_DEVICE, GPU_FEATURE_NAMES)
        if model is not None:
            return model, "cross-device"
    return None


def sidecar_constants(sidecar: dict, runtime: str) -> V2Constants | None:
    """The v2 constants a model was trained over for ``runtime`` (a ``Runtime.constants_name``; None: the
    shipped ones)."""
    c = sidecar.get("v2_constants", {}).get(runtime)
    if not c:
        return None
    return V2Constants(
        host_dispatch_s=c.get("host_dispatch_s"),
        host_call_s=c.get("host_call_s"),
        gpu_kernel_floor_s=c.get("gpu_kernel_floor_s", V2Constants().gpu_kernel_floor_s),
        bandwidth_ramp_s=c.get("bandwidth_ramp_s", V2Constants().bandwidth_ramp_s),
        fitted_on=c.get("fitted_on", ""),
    )


def corrected_joules(
    model: TrainedModel,
    kernels: KernelReport,
    prior: PriorResult,
    hw: HardwareProfile,
    runtime: Runtime,
    dtype: str | None,
) -> tuple[float, float, tuple[str, ...]]:
    """(joules at the profile's boundary, the correction factor, features outside the training range)."""
    row = gpu_feature_row(
        graph_aggregates(kernels, hw, dtype), prior, hw, runtime, boundary=hw.measurement_boundary
    )
    factor = float(np.exp(model.regressor.predict(row[None, :])[0]))
    domain = model.sidecar.get("domain", {})
    outside = tuple(model.domain_check.outside(row))  # the sidecar's ranges of GPU_FEATURE_NAMES
    if runtime.name not in trained_runtimes(domain):
        # A runtime without training rows (vllm, tensorrt today) is a category the model never saw.
        outside = (f"runtime {runtime.name} (no training rows)", *outside)
    return prior.joules * factor, factor, outside


def trained_runtimes(domain: dict) -> frozenset[str]:
    """Runtimes a GPU model has training rows of: its one-hot ``runtime_*`` columns whose range (``domain``,
    from the sidecar) reaches 1."""
    prefix = "runtime_"
    return frozenset(
        name[len(prefix) :] for name, span in domain.items() if name.startswith(prefix) and span[1] > 0
    )


def prior_answers(model: TrainedModel, kind: str, hw: HardwareProfile) -> bool:
    """Whether the answer is the fitted v2 prior itself, uncorrected: a cross-device model whose sidecar holds a
    ``prior_answer`` at the profile's boundary."""
    answer = model.sidecar.get("prior_answer")
    return kind == "cross-device" and answer is not None and hw.measurement_boundary == answer["boundary"]


def describe(model: TrainedModel, kind: str, hw: HardwareProfile, runtime: Runtime) -> str:
    """One line saying which GPU model answered and what it was trained on."""
    sc = model.sidecar
    devices = ", ".join(sc.get("devices", []))
    if prior_answers(model, kind, hw):
        fitted = (
            sc.get("v2_constants", {}).get(runtime.constants_name, {}).get("fitted_on")
            or "shipped host constants"
        )
        answer = sc["prior_answer"]
        devices = ", ".join(answer.get("interval_devices", answer.get("devices", sc.get("devices", []))))
        return (
            f"cross-device: no measurements of {hw.name}/{runtime.name} at {hw.measurement_boundary}; "
            f"energy-roofline v2 ({fitted}), no learned correction (on GPUs held out it was not clearly "
            f"better); interval from that prior's errors on GPUs held out ({devices})"
        )
    if kind == "calibrated":
        return (
            f"calibrated: xgboost residual over energy-roofline v2 trained on {sc['training_rows']} "
            f"measurements of {hw.name} ({', '.join(sc['sources'])})"
        )
    return (
        f"cross-device: no measurements of {hw.name}/{runtime.name} at {hw.measurement_boundary}; xgboost "
        f"residual over energy-roofline v2 trained on {sc['training_rows']} measurements of other GPUs "
        f"({devices}), every GPU weighted equally; interval from leave-one-device-out residuals (a GPU's bias "
        "plus the spread inside one)"
    )


def interval_factors(model: TrainedModel) -> tuple[float, float]:
    """(low, high) multipliers of the model's interval."""
    lo, hi = model.interval_quantiles
    return math.exp(lo), math.exp(hi)


def power_floor_joules(seconds: float, hw: HardwareProfile, boards: int = 1) -> float:
    """The least energy of ``seconds`` on ``hw`` at a GPU boundary, J: the board draws at least its
    idle-with-context power while a CUDA context is resident (``boards`` boards summed)."""
    return max(hw.idle_with_context_w, 0.0) * max(seconds, 0.0) * max(boards, 1)


def bounded(
    joules: float, low_factor: float, high_factor: float, seconds: float, hw: HardwareProfile
) -> tuple[float, float, float, tuple[str, ...]]:
    """(joules, interval low, interval high, notes), J: the answer raised to the power floor over ``seconds``
    (the latency reported) where the correction put it below, the interval's factors applied to that answer
    and its ends floored too. Above the TDP no clamp is needed: the reported latency grows to
    joules / TDP instead."""
    floor = power_floor_joules(seconds, hw)
    notes: tuple[str, ...] = ()
    if joules < floor:
        notes = (
            f"power floor binds: the learned correction gave {joules:.3g} J, {joules / seconds:.3g} W over "
            f"{seconds:.3g} s, below the board's idle-with-context power ({hw.idle_with_context_w:g} W); "
            f"the answer is raised to {floor:.3g} J and the interval is taken around it",
        )
    elif joules * low_factor < floor:
        notes = (
            f"power floor binds the interval's low end ({hw.idle_with_context_w:g} W x {seconds:.3g} s)",
        )
    joules = max(joules, floor)
    return joules, max(joules * low_factor, floor), max(joules * high_factor, floor), notes


@dataclass(frozen=True)
class GpuAnswer:
    """A GPU model's answer: joules and interval at the profile's boundary (power-floored), J; joules per
    kernel (the prior's scaled by the same correction), J; features outside the training range; notes on the
    physical bounds that changed it; the interval's level and basis; which model answered."""

    joules: float
    low: float
    high: float
    kernel_joules: np.ndarray
    extrapolated: tuple[str, ...]
    notes: tuple[str, ...]
    level: float
    basis: str
    method: str


def gpu_answer(
    model: TrainedModel,
    kind: str,
    kernels: KernelReport,
    prior: PriorResult,
    hw: HardwareProfile,
    runtime: Runtime,
    dtype: str | None,
) -> GpuAnswer:
    """The corrected answer of a GPU ``model`` (``kind``: calibrated or cross-device), its interval, and the
    power floor over the prior's latency applied to both (never a power below idle-with-context)."""
    if prior_answers(model, kind, hw):
        sc = model.sidecar["prior_answer"]["interval"]
        outside: tuple[str, ...] = ()
        factors = math.exp(sc["low_log"]), math.exp(sc["high_log"])
        joules, low, high, notes = bounded(prior.joules, *factors, prior.seconds, hw)
        if runtime.constants_name not in trained_runtimes(model.sidecar.get("domain", {})):
            notes = (
                f"no measurements of runtime {runtime.name} on any GPU: the prior runs with its shipped host "
                "constants, and the interval was learned on other runtimes",
                *notes,
            )
    else:
        joules, _, outside = corrected_joules(model, kernels, prior, hw, runtime, dtype)
        joules, low, high, notes = bounded(joules, *interval_factors(model), prior.seconds, hw)
        sc = model.sidecar["interval"]
    return GpuAnswer(
        joules,
        low,
        high,
        prior.kernel_joules * (joules / prior.joules),
        outside,
        notes,
        sc["level"],
        sc["basis"],
        describe(model, kind, hw, runtime),
    )
