"""Fitting the estimated constants of the v2 prior on measurements - only on the rows it is given.

The v2 prior's device terms (peaks, bandwidths, energies per FLOP and per byte) come from the cited profiles and
are never fitted here. Four constants are estimates (:class:`~estimator.energy.prior_v2.V2Constants`): the host
time per kernel and per call, the GPU kernel floor and the bandwidth ramp. :func:`fit_constants` fits any of
them by minimising the mean squared log ratio predicted / measured over the rows passed in, so an evaluation
fits on its training groups and predicts the held-out ones with the result (never the other way round).

Rows are records of the measurement schema (``data/README.md``): ``model_ref``, ``batch``, ``dtype``,
``hardware``, ``runtime``, ``boundary``, ``joules_per_inference`` and, when present, ``latency_s``. Only rows the
prior predicts at their own boundary are used (``gpu-board-nvml`` on a GPU profile); :func:`prepare_cases`
reports how many others it skipped. The host constants belong to a runtime: fit them on the rows of one runtime
(``host_dispatch_s`` fitted on pytorch-cuda rows is that runtime's value).

Search: coordinate descent, a golden-section search per constant on a log scale within :data:`BOUNDS`, a
fixed number of sweeps - deterministic, no randomness, no dependency beyond numpy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from estimator.cost.kernels import KernelReport, fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.hardware import HardwareProfile, load_profile
from estimator.energy.prior_v2 import DeviceTerms, V2Constants, assemble, device_terms
from estimator.energy.runtimes import Runtime, get_runtime
from estimator.errors import ProfileError
from estimator.graph.load import load_graph

#: Search range of each fittable constant, s (log-uniform).
BOUNDS: dict[str, tuple[float, float]] = {
    "host_dispatch_s": (1e-7, 1e-3),
    "host_call_s": (1e-6, 1.0),
    "gpu_kernel_floor_s": (1e-7, 1e-4),
    "bandwidth_ramp_s": (1e-8, 1e-4),
}
#: Boundary of the rows the prior predicts directly.
FIT_BOUNDARY = "gpu-board-nvml"


@dataclass(frozen=True)
class FitCase:
    """One measured row made ready to predict: its device terms, hardware, runtime and measured values.

    The host scales (dimensionless, 1 for a row whose host serves one board per call) say what one call's host
    work is for the row (:func:`scaled_host`): ``host_call_scale`` multiplies a set ``host_call_s`` (the images
    the host prepares per call when a fit reads it as a time per image: a source's timed input pipeline,
    ``estimator.learn.gpu_pipeline``); ``host_dispatch_scale`` multiplies the host time per kernel (the boards
    whose kernels one host process issues per call).
    """

    terms: DeviceTerms
    hw: HardwareProfile
    runtime: Runtime
    joules: float
    latency_s: float | None
    host_call_scale: float = 1.0
    host_dispatch_scale: float = 1.0

    def scaled(self, constants: V2Constants | None) -> V2Constants | None:
        """The constants this case is predicted with: ``constants`` under its host scales (:func:`scaled_host`)."""
        return scaled_host(constants, self.runtime, self.host_call_scale, self.host_dispatch_scale)


def scaled_host(
    constants: V2Constants | None, runtime: Runtime, call_scale: float = 1.0, dispatch_scale: float = 1.0
) -> V2Constants | None:
    """The constants of one call whose host work is scaled (dimensionless factors, see :class:`FitCase`): a set
    ``host_call_s`` times ``call_scale`` (None, the runtime's own per-call value, is never scaled), and the
    host time per kernel (the constant's, else ``runtime``'s) times ``dispatch_scale``. Unscaled: ``constants``
    as given."""
    if call_scale == 1.0 and dispatch_scale == 1.0:
        return constants
    c = constants or V2Constants()
    if c.host_call_s is not None:
        c = replace(c, host_call_s=c.host_call_s * call_scale)
    if dispatch_scale != 1.0:
        h = runtime.host_dispatch_s if c.host_dispatch_s is None else c.host_dispatch_s
        c = replace(c, host_dispatch_s=h * dispatch_scale)
    return c


@dataclass(frozen=True)
class FitResult:
    """Constants after the fit and the loss (mean squared natural-log ratio) before and after it."""

    constants: V2Constants
    loss_before: float
    loss_after: float
    rows: int


def prepare_cases(
    rows: Iterable[Mapping[str, object]],
    *,
    root: str | os.PathLike[str] = ".",
    load_kernels: Callable[[str, int, bool], KernelReport] | None = None,
) -> tuple[list[FitCase], int]:
    """Cases for :func:`fit_constants` from measurement records, and how many records were skipped.

    Args:
        rows: records (mappings, or a pandas DataFrame) in the measurement schema.
        root: folder ONNX ``model_ref`` paths are relative to (the repository).
        load_kernels: ``(model_ref, batch, fuse) -> KernelReport``; default: ONNX paths under ``root`` or
            zoo specs (``estimator.zoo.build_from_spec``).
    """
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")  # a pandas DataFrame
    loader = load_kernels or _loader(Path(root))
    profiles: dict[str, HardwareProfile] = {}
    terms_cache: dict[tuple, DeviceTerms] = {}
    cases, skipped = [], 0
    for row in rows:
        hw_name, boundary = str(row.get("hardware", "")), str(row.get("boundary", ""))
        joules = _number(row.get("joules_per_inference"))
        if boundary != FIT_BOUNDARY or joules is None or joules <= 0:
            skipped += 1
            continue
        try:
            hw = profiles.get(hw_name) or load_profile(hw_name)
            runtime = get_runtime(str(row["runtime"]))
        except ProfileError:
            skipped += 1
            continue
        profiles[hw_name] = hw
        if hw.kind != "gpu":
            skipped += 1
            continue
        batch = int(_number(row.get("batch")) or 1)
        dtype = str(row["dtype"]) if row.get("dtype") and str(row["dtype"]) != "nan" else None
        key = (str(row["model_ref"]), batch, hw_name, runtime.name, dtype)
        if key not in terms_cache:
            kernels = loader(str(row["model_ref"]), batch, runtime.fusion)
            terms_cache[key] = device_terms(kernels, hw, runtime, dtype)
        latency = _number(row.get("latency_s"))
        cases.append(
            FitCase(terms_cache[key], hw, runtime, joules, latency if latency and latency > 0 else None)
        )
    return cases, skipped


def loss(cases: Sequence[FitCase], constants: V2Constants) -> float:
    """Mean squared natural-log ratio predicted / measured over the cases' joules and (where given) latencies."""
    errors = []
    for case in cases:
        result = assemble(case.terms, case.hw, case.runtime, case.scaled(constants))
        errors.append(math.log(result.joules / case.joules) ** 2)
        if case.latency_s is not None:
            errors.append(math.log(result.seconds / case.latency_s) ** 2)
    return float(np.mean(errors)) if errors else 0.0


def golden_section_min(f: Callable[[float], float], lo: float, hi: float, steps: int) -> float:
    """The midpoint of the bracket a golden-section search of ``steps`` steps leaves around a minimum of ``f``
    on ``[lo, hi]`` (``f`` unimodal there; two evaluations to start, one per step)."""
    invphi = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - invphi * (b - a), a + invphi * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - invphi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + invphi * (b - a)
            fd = f(d)
    return (a + b) / 2


def fit_constants(
    cases: Sequence[FitCase],
    fit: Sequence[str] = ("host_dispatch_s",),
    *,
    start: V2Constants | None = None,
    sweeps: int = 2,
    steps: int = 30,
    description: str = "",
) -> FitResult:
    """Fit the named constants on ``cases`` (and nothing else); the others keep their values in ``start``.

    Args:
        cases: from :func:`prepare_cases`, the training rows only.
        fit: names of :class:`V2Constants` fields to fit (keys of :data:`BOUNDS`).
        start: constants to start from (default: the shipped ones, with the runtime's host times made explicit
            from the first case when a host constant is fitted).
        sweeps: coordinate-descent sweeps over ``fit``.
        steps: golden-section steps per constant and sweep.
        description: what the rows are (stored in ``fitted_on``).
    """
    unknown = [name for name in fit if name not in BOUNDS]
    if unknown:
        raise ProfileError(f"cannot fit {', '.join(unknown)}; fittable constants: {', '.join(BOUNDS)}")
    if not cases:
        raise ProfileError("no measurement rows to fit on (need gpu-board-nvml rows on GPU profiles)")
    current = start or V2Constants()
    rt = cases[0].runtime
    if current.host_dispatch_s is None:
        current = replace(current, host_dispatch_s=rt.host_dispatch_s)
    if current.host_call_s is None:
        current = replace(current, host_call_s=rt.host_call_s)
    before = loss(cases, current)
    for _ in range(sweeps):
        for name in fit:
            lo, hi = (math.log(b) for b in BOUNDS[name])

            def f(x: float, name: str = name, base: V2Constants = current) -> float:
                return loss(cases, replace(base, **{name: math.exp(x)}))

            best = math.exp(golden_section_min(f, lo, hi, steps))
            if f(math.log(best)) <= loss(cases, current):
                current = replace(current, **{name: best})
    fitted_on = description or f"{len(cases)} rows"
    current = replace(current, fitted_on=f"{', '.join(fit)} fitted on {fitted_on}")
    return FitResult(current, before, loss(cases, current), len(cases))


def _number(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _loader(root: Path) -> Callable[[str, int, bool], KernelReport]:
    def load(model_ref: str, batch: int, fuse: bool | str) -> KernelReport:
        if model_ref.endswith(".onnx"):
            graph = load_graph(root / model_ref, batch=batch)
        else:
            from estimator.zoo import build_from_spec

            graph = load_graph(build_from_spec(model_ref, batch=batch))
        return fuse_kernels(count_costs(graph), fuse=fuse)

    return load
