"""Where each kernel's bytes are served from in a cache hierarchy (BUTTER-E style, for inference).

Tripp et al. (BUTTER-E) measured that energy jumps when a network's working set crosses a cache boundary:
on GPUs it is flat until the working set passes L2, then rises about 3x; on CPUs it steps after L1, L2, L3.
This module places every kernel in the hierarchy with one rule and reports the bytes each level serves.

**Working set of a kernel** = its weight bytes + activation bytes read + bytes written (what crosses the
kernel boundary, from :mod:`estimator.cost.kernels`).

**Placement rule** ("a part every unit holds in full, plus a part split across units"): with ``u`` units
(SMs or cores) working on a kernel, a *per-unit* cache level of size ``S`` per unit holds the kernel when
``replicated + split / u <= S``; a *shared* level of size ``S`` holds it when ``replicated + split <= S``.
For inference kernels parallelised over batch and spatial positions the weights are the replicated part
(every unit reads all of them) and the activations are the split part.

**Bytes served per level.** A kernel's activation traffic is served by the first level that holds its
working set (the producer has just written it there). Its weight traffic is served by the level that holds
the whole model's weights plus its peak live activations in steady state (back-to-back inferences keep
them resident), or by the kernel's own level if that is further out - never by a nearer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CacheLevel:
    """One level of a cache hierarchy as the placement needs it.

    Attributes:
        name: ``L1``, ``L2``, ``L3``...
        size_bytes: capacity of one instance (per unit for per-unit levels, the whole for shared ones).
        per_unit: True when every unit (SM / core) has its own instance.
        units: number of instances (1 for shared levels).
    """

    name: str
    size_bytes: float
    per_unit: bool
    units: int


def fits(
    levels: Sequence[CacheLevel], replicated: np.ndarray, split: np.ndarray, units_used: int
) -> np.ndarray:
    """Index of the first level that holds each working set; ``len(levels)`` means DRAM.

    Args:
        levels: cache levels from the core outwards.
        replicated: bytes every unit holds in full (per kernel).
        split: bytes divided across the units (per kernel).
        units_used: units working on a kernel (all SMs on a GPU; the threads of a CPU runtime).
    """
    replicated = np.asarray(replicated, dtype=np.float64)
    split = np.asarray(split, dtype=np.float64)
    level = np.full(replicated.shape, len(levels), dtype=np.int64)
    whole = None  # replicated + split: the need at every level held by one unit (split / 1 == split)
    for i in range(len(levels) - 1, -1, -1):
        lv = levels[i]
        u = _sharing(lv, units_used)
        if u == 1:
            if whole is None:
                whole = replicated + split
            need = whole
        else:
            need = replicated + split / u
        level[need <= lv.size_bytes] = i
    return level


def _sharing(level: CacheLevel, units_used: int) -> int:
    """Units that divide the split part of a working set at ``level`` (1 for a shared level)."""
    return max(1, min(units_used, level.units)) if level.per_unit else 1


def _fits_one(levels: Sequence[CacheLevel], replicated: float, split: float, units_used: int) -> int:
    """:func:`fits` of one working set, in Python floats (the same IEEE double arithmetic)."""
    for i, lv in enumerate(levels):
        if replicated + split / _sharing(lv, units_used) <= lv.size_bytes:
            return i
    return len(levels)


@dataclass(frozen=True)
class Placement:
    """Per-kernel placement and per-level byte counts.

    Attributes:
        level_names: names of the levels, DRAM last.
        kernel_level: index of the level holding each kernel's working set.
        weight_level: index of the level serving each kernel's weight bytes.
        bytes_by_level: array [kernels, levels+1] of bytes served by each level (float64).
        model_level: level holding the model's weights plus peak live activations.
        peak_live_activation_bytes: the peak live activation bytes used to place the model (bytes).
    """

    level_names: tuple[str, ...]
    kernel_level: np.ndarray
    weight_level: np.ndarray
    bytes_by_level: np.ndarray
    model_level: int
    peak_live_activation_bytes: float


def place(
    levels: Sequence[CacheLevel],
    weight_bytes: np.ndarray,
    activation_bytes: np.ndarray,
    write_bytes: np.ndarray,
    *,
    model_weight_bytes: float,
    peak_live_activation_bytes: float,
    units_used: int,
) -> Placement:
    """Place every kernel in the hierarchy and split its bytes across levels (see the module docstring).

    All byte arguments are per kernel (arrays of equal length) except the two model-level totals.
    """
    weight_bytes = np.asarray(weight_bytes, dtype=np.float64)
    moved = np.asarray(activation_bytes, dtype=np.float64) + np.asarray(write_bytes, dtype=np.float64)
    kernel_level = fits(levels, weight_bytes, moved, units_used)
    model_level = _fits_one(levels, float(model_weight_bytes), float(peak_live_activation_bytes), units_used)
    weight_level = np.maximum(kernel_level, model_level)
    n_levels = len(levels) + 1
    out = np.zeros((len(weight_bytes), n_levels))
    rows = np.arange(len(weight_bytes))
    # Each (row, level) pair once per statement: plain fancy indexing adds as np.add.at would.
    out[rows, kernel_level] = moved
    out[rows, weight_level] += weight_bytes
    return Placement(
        level_names=(*(lv.name for lv in levels), "DRAM"),
        kernel_level=kernel_level,
        weight_level=weight_level,
        bytes_by_level=out,
        model_level=model_level,
        peak_live_activation_bytes=float(peak_live_activation_bytes),
    )


def peak_live_bytes(
    sizes: Sequence[int], produced_at: Sequence[int], last_used_at: Sequence[int], steps: int
) -> int:
    """Largest sum of live tensor bytes over a schedule of ``steps`` steps.

    A tensor of ``sizes[i]`` bytes is live from step ``produced_at[i]`` to ``last_used_at[i]`` inclusive
    (graph inputs are produced at step 0, graph outputs live to the last step).
    """
    if steps <= 0 or not len(sizes):
        return 0
    delta = np.zeros(steps + 1, dtype=np.int64)
    np.add.at(delta, np.asarray(produced_at, dtype=np.int64), np.asarray(sizes, dtype=np.int64))
    np.add.at(delta, np.asarray(last_used_at, dtype=np.int64) + 1, -np.asarray(sizes, dtype=np.int64))
    return int(np.cumsum(delta)[:steps].max())
