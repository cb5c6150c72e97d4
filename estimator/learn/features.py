"""The feature schema of the learned correction: :data:`FEATURE_NAMES` is the one source of column order.

Every feature comes from the graph, the hardware profile and the runtime - never from anything measured
while a model runs (EVALUATION.md). Quantities that span orders of magnitude enter as ``log1p``.

Two granularities share the schema:

* ``graph``: one row per network, features summed over its kernels (plus model-level cache features);
* ``kernel``: one row per kernel, the kernel seen as a network of its own. A model trained on single-layer
  measurements predicts a whole network as the sum over its kernels (Getzner et al. found whole-network
  CPU energy within ~1% of the sum of its layers).

Why this module is long: it is one computation, the additive per-kernel matrix and the feature rows built
from it, with the tables that say how each feature column comes from the matrix (so that columns of one kind
are computed in one numpy call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from estimator.cost.kernels import MATRIX_KINDS, KernelReport
from estimator.dtypes import dtype_bits
from estimator.energy.hardware import HardwareProfile
from estimator.energy.physics import PriorResult, energy_prior, runs_on_gpu
from estimator.energy.runtimes import Runtime
from estimator.graph.liveness import dead_nodes
from estimator.learn.feature_schema import (  # noqa: F401  (re-exported: the schema's public names)
    _KINDS,
    _LEVEL_SLOTS,
    _RUNTIME_NAMES,
    FEATURE_NAMES,
    OP_CATEGORIES,
)

_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True)
class FeatureRows:
    """Features of one network: ``graph`` (1 x F) and ``kernels`` (K x F), with the prior they used.

    Attributes:
        graph: the network's feature row.
        kernels: one row per launched kernel (the kernel as a network of its own); with ``distinct=True``,
            one row per distinct launched kernel, ``kernel_row`` saying which row each launched kernel has.
        kernel_prior_joules: the prior's joules per launched kernel (J).
        prior: the prior's result for the network.
        kernel_row: for each launched kernel, its row of ``kernels`` (None: row i is launched kernel i).
    """

    graph: np.ndarray
    kernels: np.ndarray
    kernel_prior_joules: np.ndarray
    prior: PriorResult
    kernel_row: np.ndarray | None = None


def build_features(
    kernels: KernelReport,
    hw: HardwareProfile,
    runtime: Runtime,
    *,
    dtype: str | None = None,
    threads: int | None = None,
    prior: PriorResult | None = None,
    kernel_rows: bool = True,
    graph_row: bool = True,
    distinct: bool = False,
    static: np.ndarray | None = None,
    fixed: np.ndarray | None = None,
) -> FeatureRows:
    """Feature rows of a fused network on ``hw`` with ``runtime`` (see the module docstring).

    ``prior`` is the prior's result for the same kernels, dtype and threads, when the caller has it already.
    ``kernel_rows=False`` skips the per-kernel rows (``kernels`` is then 0 x F), for graph-level models;
    ``graph_row=False`` skips the network's row (``graph`` is then empty), for kernel-level ones.
    ``distinct=True`` builds one row per distinct kernel (networks repeat their blocks: equal kernels placed
    alike have equal rows), with :attr:`FeatureRows.kernel_row` mapping kernels to rows.
    ``static`` is :func:`static_additive` of the same kernels, when the caller keeps it; ``fixed`` is
    :func:`fixed_columns` of the same profile, runtime, threads, batch and dtype, when the caller keeps it.
    """
    if prior is None:
        prior = energy_prior(kernels, hw, dtype=dtype, runtime=runtime, threads=threads)
    launched = launched_kernels(kernels)
    add = _additive(kernels, prior, static)[launched]  # K x A raw additive quantities
    batch = kernels.costs.graph.batch
    if fixed is None:
        fixed = fixed_columns(hw, runtime, prior.threads, batch, dtype or kernels.dominant_dtype)
    graph = np.zeros(0)
    if graph_row:
        graph = _rows(
            add.sum(axis=0)[None, :],
            np.array([prior.placement.peak_live_activation_bytes], dtype=float),
            np.array([prior.placement.model_level], dtype=float),
            np.array([kernels.derived("graph_input_elements", lambda: _graph_input_elements(kernels))]),
            hw,
            batch,
            fixed,
        )[0]
    kernel_row = None
    if kernel_rows and len(add) and distinct:
        firsts, kernel_row = _distinct(add)
        add = add[firsts]
    if kernel_rows and len(add):
        kernel_matrix = _rows(
            add,
            add[:, _A["act_bytes"]] + add[:, _A["write_bytes"]],
            add[:, _A["own_level"]].astype(int).astype(float),
            # A kernel's own input, as when it is measured alone (the training rows of kernel models).
            add[:, _A["act_elements"]],
            hw,
            batch,
            fixed,
        )
    else:
        kernel_matrix = np.zeros((0, len(FEATURE_NAMES)))
    return FeatureRows(graph, kernel_matrix, prior.kernel_joules[launched], prior, kernel_row)


def _distinct(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first of each distinct row, in order of appearance; each row's distinct-row number).
    Rows are equal when their bytes are."""
    seen: dict[bytes, int] = {}
    row_of = np.array([seen.setdefault(row.tobytes(), len(seen)) for row in rows], dtype=np.intp)
    # Numbers go up by one at each first appearance: there the running maximum rises.
    rising = np.maximum.accumulate(row_of)
    firsts = np.flatnonzero(np.diff(rising, prepend=-1)) if len(rows) else np.zeros(0, dtype=np.intp)
    return firsts, row_of


def launched_kernels(kernels: KernelReport) -> np.ndarray:
    """Which kernels launch (bool per kernel, read-only; kept with the report)."""

    def compute() -> np.ndarray:
        out = kernels.arrays["launches"] > 0 if kernels.kernels else np.zeros(0, dtype=bool)
        out.setflags(write=False)
        return out

    return kernels.derived("launched", compute)


def _rows(
    a: np.ndarray,
    peak_live: np.ndarray,
    model_level: np.ndarray,
    input_elements: np.ndarray,
    hw: HardwareProfile,
    batch: int,
    fixed: np.ndarray,
) -> np.ndarray:
    """Feature rows (n x F) of ``n`` additive rows ``a`` (n x A), each seen as a network of its own.

    Columns of one kind are computed together (one ``log1p`` for every ``log1p`` feature, one division for
    every ratio): a handful of numpy calls whatever the number of rows.
    """
    sizes = [c.size_bytes for c in hw.caches]
    llc = sizes[-1] if sizes else 1.0
    n = len(a)
    r = np.zeros((n, len(FEATURE_NAMES)))
    n_levels = len(sizes) + 1
    by_level = _slots(a[:, _A["level0"] : _A["level0"] + n_levels])
    at_level = _slots(a[:, _A["at0"] : _A["at0"] + n_levels])
    moved = by_level.sum(axis=1)
    flops, launches = a[:, _A["flops"]], a[:, _A["launches"]]
    total_bytes = a[:, _A["weight_bytes"]] + a[:, _A["act_bytes"]] + a[:, _A["write_bytes"]]
    # Ratios num / den where den > 0, else 0 (the order of _RATIO_OUT).
    num = _columns(
        [
            a[:, _RATIO_NUM],
            flops,
            by_level[:, 1:].sum(axis=1),
            by_level[:, 2:].sum(axis=1),
            by_level[:, -1],
        ]
    )
    den = _columns([a[:, _RATIO_DEN], total_bytes, moved, moved, moved])
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    r[:, _RATIO_OUT] = ratio[:, _RATIO_PLAIN]
    # Everything that enters as log1p, one call (the order of _LOG1P_OUT).
    r[:, _LOG1P_OUT] = np.log1p(
        _columns(
            [
                input_elements / batch,
                a[:, _LOG1P_SRC],
                ratio[:, _RATIO_LOG1P],
                flops - a[:, _A["dead_flops"]],
                launches - a[:, _A["dead_launches"]],
                by_level,
                at_level,
                peak_live,
                a[:, _PRIOR_J] * 1e6,
            ]
        )
    )
    # Everything that enters as log, one call (the order of _LOG_OUT).
    model_weights = a[:, _A["model_weight_bytes"]]
    level0 = sizes[0] if sizes else llc
    level1 = sizes[1] if len(sizes) > 1 else llc
    r[:, _LOG_OUT] = np.log(
        _columns(
            [
                (model_weights + 1) / level0,
                (model_weights + 1) / level1,
                (model_weights + 1) / llc,
                (peak_live + 1) / llc,
                np.maximum(a[:, _A["joules"]], 1e-30),
                np.maximum(a[:, _A["seconds"]], 1e-30),
            ]
        )
    )
    r[:, _INDEX["model_level"]] = model_level
    r += fixed
    return r


def _columns(parts: list[np.ndarray]) -> np.ndarray:
    """``np.column_stack(parts)`` for 1-D (n) and 2-D (n x m) float arrays: one new n x M array."""
    return np.concatenate([p[:, None] if p.ndim == 1 else p for p in parts], axis=1)


# Columns of the additive matrix that count what the kernels compute and move (hardware-free).
_COUNT_COLUMNS = (
    "flops",
    "weight_bytes",
    "act_bytes",
    "write_bytes",
    "launches",
    *(f"kind_{k}" for k in _KINDS),
    *(f"{c}_nodes" for c in OP_CATEGORIES),
    *(f"{c}_flops" for c in OP_CATEGORIES),
    "conv_kelems_x_flops",
    "matrix_flops",
    "dead_flops",
    "dead_launches",
)
# Columns of the per-kernel additive matrix.
_A_NAMES = (
    *_COUNT_COLUMNS,
    "joules",
    "seconds",
    "compute_j",
    "memory_j",
    "static_j",
    "t_compute",
    "t_memory",
    "t_launch",
    "model_weight_bytes",
    "own_level",
    "act_elements",
    *(f"level{i}" for i in range(_LEVEL_SLOTS + 2)),
    *(f"at{i}" for i in range(_LEVEL_SLOTS + 2)),
)
_A = {name: i for i, name in enumerate(_A_NAMES)}


# How _rows computes each feature column from the additive matrix (names of FEATURE_NAMES and _A_NAMES).
_LOG1P_PLAIN = (  # feature = log1p(additive column)
    ("log_flops", "flops"),
    ("log_weight_bytes", "weight_bytes"),
    ("log_activation_read_bytes", "act_bytes"),
    ("log_write_bytes", "write_bytes"),
    ("log_launches", "launches"),
    *((f"log_kernels_{k}", f"kind_{k}") for k in _KINDS),
    *((f"log_{c}_nodes", f"{c}_nodes") for c in OP_CATEGORIES),
    *((f"log_{c}_flops", f"{c}_flops") for c in OP_CATEGORIES),
)
_LOG1P_SRC = np.array([_A[src] for _, src in _LOG1P_PLAIN])
_RATIO_PAIRS = (  # feature (or, in brackets, a ratio that enters as log1p) = num / den of additive columns
    ("[conv_kernel_elems]", "conv_kelems_x_flops", "conv_flops"),
    ("matrix_flops_share", "matrix_flops", "flops"),
    ("dead_flops_share", "dead_flops", "flops"),
    *((f"share_time_{b}_bound", f"t_{b}", "seconds") for b in ("compute", "memory", "launch")),
)
_RATIO_NUM = np.array([_A[num] for _, num, _ in _RATIO_PAIRS])
_RATIO_DEN = np.array([_A[den] for _, _, den in _RATIO_PAIRS])
# All ratios: the pairs, then arithmetic intensity and the three byte shares.
_RATIO_NAMES = (
    *(name for name, _, _ in _RATIO_PAIRS),
    "[arith_intensity]",
    "share_bytes_beyond_level0",
    "share_bytes_beyond_level1",
    "share_bytes_dram",
)
_RATIO_PLAIN = np.array([i for i, name in enumerate(_RATIO_NAMES) if not name.startswith("[")])
_RATIO_LOG1P = np.array([i for i, name in enumerate(_RATIO_NAMES) if name.startswith("[")])
_RATIO_OUT = np.array([_INDEX[_RATIO_NAMES[i]] for i in _RATIO_PLAIN])
_PRIOR_J = np.array([_A["compute_j"], _A["memory_j"], _A["static_j"]])
_LOG1P_OUT = np.array(
    [
        _INDEX[name]
        for name in (
            "log_input_elements_per_sample",
            *(name for name, _ in _LOG1P_PLAIN),
            "log_conv_kernel_elems_flop_weighted",  # the bracketed ratios, in their order
            "log_arith_intensity",
            "log_live_flops",
            "log_live_launches",
            *(f"log_bytes_level{i}" for i in range(_LEVEL_SLOTS)),
            *(f"log_kernels_at_level{i}" for i in range(_LEVEL_SLOTS)),
            "log_peak_live_bytes",
            "log_prior_compute_joules",
            "log_prior_memory_joules",
            "log_prior_static_joules",
        )
    ]
)
_LOG_OUT = np.array(
    [
        _INDEX[name]
        for name in (
            "log_weights_over_level0",
            "log_weights_over_level1",
            "log_weights_over_llc",
            "log_peak_live_over_llc",
            "log_prior_joules",
            "log_prior_seconds",
        )
    ]
)

#: Columns of the additive matrix that depend on the kernels alone (not on hardware, dtype or the prior).
_STATIC_COLUMNS = (*_COUNT_COLUMNS, "model_weight_bytes", "act_elements")
_CATEGORIES = tuple(OP_CATEGORIES)
_CATEGORY_OF: dict[str, str] = {op: c for c, ops in OP_CATEGORIES.items() for op in ops}
#: Op type -> its category's number (the order of OP_CATEGORIES, as the ``{c}_nodes`` / ``{c}_flops`` columns).
_CATEGORY_CODE: dict[str, int] = {op: i for i, c in enumerate(_CATEGORIES) for op in OP_CATEGORIES[c]}
_CONV_CODE = _CATEGORIES.index("conv")
_NODES_COLUMNS = np.array([_A[f"{c}_nodes"] for c in _CATEGORIES])
_FLOPS_COLUMNS = np.array([_A[f"{c}_flops"] for c in _CATEGORIES])
# static_additive: the additive columns read from the kernels' int64 columns, each kernel kind's one-hot
# column.
_KERNEL_FIELDS = (
    ("flops", "flops"),
    ("weight_bytes", "weight_bytes"),
    ("act_bytes", "activation_read_bytes"),
    ("write_bytes", "write_bytes"),
    ("launches", "launches"),
    ("model_weight_bytes", "weight_bytes"),
)
_KERNEL_OUT = np.array([_A[name] for name, _ in _KERNEL_FIELDS])
_KIND_COLUMN = {k: _A[f"kind_{k}"] for k in _KINDS}
#: Integers below this convert to float64 exactly (2**53), so their float quotients are Python's int division.
_EXACT_INT = 1 << 53


def static_additive(kernels: KernelReport) -> np.ndarray:
    """The hardware-free columns of the per-kernel additive matrix (K x A, the other columns 0).

    They depend on the kernels alone, so a caller estimating the same kernels on several profiles or dtypes
    computes them once and passes them to :func:`build_features` as ``static``. Per-node quantities are summed
    per kernel in node order (``np.add.at``), as a loop over each kernel's nodes would add them.
    """
    ks = kernels.kernels
    out = np.zeros((len(ks), len(_A_NAMES)))
    if not ks:
        return out
    graph = kernels.costs.graph
    columns = kernels.arrays
    out[:, _KERNEL_OUT] = np.stack([columns[field] for _, field in _KERNEL_FIELDS], axis=1)
    rows = np.arange(len(ks))
    kinds = kernels.kinds
    out[rows, np.fromiter(map(_KIND_COLUMN.get, kinds, repeat(_KIND_COLUMN["other"])), np.intp, len(ks))] = 1
    matrix = np.fromiter(map(MATRIX_KINDS.__contains__, kinds), bool, len(ks))
    out[matrix, _A["matrix_flops"]] = columns["flops"][matrix]
    out[:, _A["act_elements"]] = _activation_elements(kernels, columns["activation_read_bytes"])

    # The kernels' nodes, kernel after kernel, each in its kernel's order.
    members = kernels.members
    if not len(members.nodes):
        return out
    member, owner, flops = members.nodes, members.kernel, members.flops
    dead = dead_nodes(graph)[member]
    if dead.any():  # else no FLOPs and no kernel are dead: the columns stay 0
        dead_flops = np.zeros(len(ks), dtype=np.int64)  # integer sums, as Python's sum of ints
        np.add.at(dead_flops, owner[dead], flops[dead])
        out[:, _A["dead_flops"]] = dead_flops
        live = np.bincount(owner[~dead], minlength=len(ks))
        out[:, _A["dead_launches"]] = np.where(live == 0, columns["launches"], 0)

    # Op categories: per node of a category, its count and FLOPs (float sums, in node order); convolutions
    # also their kernel elements x FLOPs. These columns are 0 until here, so each is its sums from 0.0 in node
    # order: np.bincount's (which adds its weights in order, as np.add.at would).
    code = np.fromiter(map(_CATEGORY_CODE.get, members.op_types, repeat(-1)), np.intp, len(member))
    counted = np.flatnonzero(code >= 0)
    if len(counted):
        codes = code[counted]
        cell = owner[counted] * len(_CATEGORIES) + codes
        size = len(ks) * len(_CATEGORIES)
        out[:, _NODES_COLUMNS] = np.bincount(cell, minlength=size).reshape(len(ks), -1)
        out[:, _FLOPS_COLUMNS] = np.bincount(
            cell, weights=flops[counted].astype(float), minlength=size
        ).reshape(len(ks), -1)
        convs = counted[(codes == _CONV_CODE) & (flops[counted] != 0)]
        if len(convs):
            tensors, graph_nodes = graph.tensors, graph.nodes
            conv_value = []
            for i, f in zip(member[convs].tolist(), flops[convs].tolist(), strict=True):
                inputs = graph_nodes[i].inputs
                w = tensors.get(inputs[1]) if len(inputs) > 1 and inputs[1] else None
                shape = w.shape if w is not None else None
                kelems = float(math.prod(shape[2:])) if shape and len(shape) > 2 else 1.0
                conv_value.append(kelems * f)
            out[:, _A["conv_kelems_x_flops"]] = np.bincount(
                owner[convs], weights=conv_value, minlength=len(ks)
            )
    return out


def _activation_elements(kernels: KernelReport, act_bytes: np.ndarray) -> np.ndarray | list[float]:
    """Elements each kernel reads from run-time tensors: ``activation_read_bytes * 8 / bits`` of its dtype
    (32 when unknown), as Python divides the integers (exactly when the products are below 2**53)."""
    dtypes = kernels.dtypes
    bits_of = {d: dtype_bits(d) or 32 for d in dict.fromkeys(dtypes)}
    if len(act_bytes) and int(act_bytes.max()) >= _EXACT_INT // 8:
        return [k.activation_read_bytes * 8 / bits_of[k.dtype] for k in kernels.kernels]
    if len(bits_of) == 1:  # one dtype: one divisor (the same quotients as an array of it)
        return (act_bytes * 8) / float(next(iter(bits_of.values())))
    return (act_bytes * 8) / np.fromiter(map(bits_of.__getitem__, dtypes), float, len(dtypes))


def _additive(kernels: KernelReport, prior: PriorResult, static: np.ndarray | None = None) -> np.ndarray:
    """The per-kernel additive matrix (K x A): the static columns plus what the prior says of each kernel."""
    out = (static_additive(kernels) if static is None else static).copy()
    n_kernels = len(kernels.kernels)
    if not n_kernels:
        return out
    placement = prior.placement
    n_levels = placement.bytes_by_level.shape[1]
    static_per_s = prior.static_joules / prior.seconds if prior.seconds > 0 else 0.0
    t = np.asarray(prior.kernel_seconds, dtype=float)
    rows = np.arange(n_kernels)
    level = np.asarray(placement.kernel_level)
    out[:, _A["joules"]] = prior.kernel_joules
    out[:, _A["seconds"]] = t
    out[:, _A["static_j"]] = static_per_s * t
    out[:, _A["level0"] : _A["level0"] + n_levels] = placement.bytes_by_level
    out[rows, _A["at0"] + level.astype(int)] = 1
    out[:, _A["own_level"]] = level
    bound = np.asarray(prior.kernel_bound)
    for name in ("compute", "memory", "launch"):
        mask = bound == name
        out[mask, _A[f"t_{name}"]] = t[mask]
    dynamic = out[:, _A["joules"]] - out[:, _A["static_j"]]
    flops = out[:, _A["flops"]]
    share = flops / flops.sum() if flops.sum() > 0 else np.zeros_like(flops)
    out[:, _A["compute_j"]] = prior.compute_joules * share
    out[:, _A["memory_j"]] = np.maximum(dynamic - out[:, _A["compute_j"]], 0.0)
    return out


def _slots(levels: np.ndarray) -> np.ndarray:
    """Map rows of [L1, ..., Ln, DRAM] onto 4 slots [L1, L2, L3, DRAM] (missing middle levels are 0)."""
    out = np.zeros((len(levels), _LEVEL_SLOTS))
    caches = levels[:, :-1]
    out[:, : min(caches.shape[1], _LEVEL_SLOTS - 1)] = caches[:, : _LEVEL_SLOTS - 1]
    out[:, -1] = levels[:, -1] + caches[:, _LEVEL_SLOTS - 1 :].sum(axis=1)
    return out


def _graph_input_elements(kernels: KernelReport) -> float:
    """Elements of all the network's run-time inputs, at its batch."""
    graph = kernels.costs.graph
    return float(sum(t.numel for t in (graph.tensor(n) for n in graph.inputs) if t is not None and t.numel))


def fixed_columns(hw: HardwareProfile, runtime: Runtime, threads: int, batch: int, dtype: str) -> np.ndarray:
    """The feature columns that depend on the profile, runtime, threads, batch and dtype alone (the others 0),
    added to every row; a caller estimating many networks alike (an :class:`~estimator.api.Estimator`) keeps
    them. ``dtype``: the element type the network runs in (its dominant one when not re-typed)."""
    r = np.zeros(len(FEATURE_NAMES))
    r[_INDEX["log_batch"]] = np.log(batch)
    r[_INDEX["dtype_bits"]] = dtype_bits(dtype) or 32
    r[_INDEX["log_threads"]] = np.log(threads)
    dt = dtype if dtype_bits(dtype) else "float32"
    r[_INDEX["log_peak_vector_flops"]] = np.log(hw.peak_flops_per_s(dt, matrix=False))
    r[_INDEX["log_peak_matrix_flops"]] = np.log(hw.peak_flops_per_s(dt, matrix=True))
    r[_INDEX["log_dram_bandwidth"]] = np.log(hw.dram_bandwidth_bytes_per_s)
    sizes = [c.size_bytes for c in hw.caches]
    r[_INDEX["log_level0_bytes"]] = np.log(sizes[0]) if sizes else 0.0
    r[_INDEX["log_level1_bytes"]] = np.log(sizes[1]) if len(sizes) > 1 else 0.0
    r[_INDEX["log_llc_bytes"]] = np.log(sizes[-1]) if sizes else 0.0
    r[_INDEX["tdp_w"]] = hw.tdp_w
    r[_INDEX["static_w"]] = hw.static_w
    r[_INDEX["idle_w"]] = hw.idle_w
    r[_INDEX["log_compute_units"]] = np.log(hw.compute_units)
    r[_INDEX["is_gpu"]] = 1.0 if runs_on_gpu(hw) else 0.0
    if f"runtime_{runtime.name}" in _INDEX:
        r[_INDEX[f"runtime_{runtime.name}"]] = 1.0
    return r
