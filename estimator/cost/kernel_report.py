"""A graph's kernels: :class:`Kernel` (one launch: its member nodes and the traffic that crosses its boundary)
and :class:`KernelReport` (the kernels in launch order, with per-kernel columns and quantities derived from them).
:mod:`estimator.cost.kernels` builds them (fusion)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

import numpy as np

from estimator.cost.nodes import COST_FIELDS, CostReport, int_columns

T = TypeVar("T")

#: Kernel kinds whose work runs on the matrix units (tensor cores, AMX): their peak, not the vector one.
MATRIX_KINDS = frozenset({"contraction", "attention"})


@dataclass(frozen=True)
class Kernel:
    """One launched kernel: a group of fused nodes and the memory traffic that crosses its boundary.

    Attributes:
        index: position in launch order.
        name: member op types joined by ``+`` (``Conv+BatchNormalization+Relu``).
        kind: contraction, attention, elementwise, reduction, movement, view or other.
        nodes: indices (into ``CostReport.nodes``) of the member nodes.
        macs, flops: sums over the members.
        params, param_bytes: parameters first counted in this kernel.
        weight_bytes: bytes read from constants.
        activation_read_bytes: bytes read from run-time tensors produced outside the kernel.
        write_bytes: bytes written for tensors used outside the kernel (or graph outputs).
        launches: 1, or 0 for a group of views that launches nothing.
        dtype: arithmetic element type of the anchor node.
    """

    index: int
    name: str
    kind: str
    nodes: tuple[int, ...]
    macs: int
    flops: int
    params: int
    param_bytes: int
    weight_bytes: int
    activation_read_bytes: int
    write_bytes: int
    launches: int
    dtype: str

    @property
    def read_bytes(self) -> int:
        """All bytes read from memory."""
        return self.weight_bytes + self.activation_read_bytes

    @property
    def bytes(self) -> int:
        """All bytes moved to or from memory (reads + writes)."""
        return self.read_bytes + self.write_bytes


@dataclass(frozen=True)
class KernelReport:
    """The kernels of a graph, in launch order, and the report they were made from."""

    costs: CostReport
    kernels: tuple[Kernel, ...]
    kernel_of_node: Mapping[int, int]
    views: Mapping[str, str] = field(default_factory=dict)
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, key: Hashable, compute: Callable[[], T]) -> T:
        """A quantity that is a pure function of this report (and of ``key``), computed by ``compute()`` the first
        time it is asked for and kept with the report, so that the stages of one estimate (placement, prior,
        features, several profiles) never compute it twice. Values are shared: never modify one."""
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = compute()
            return value

    def root(self, tensor: str) -> str:
        """The tensor that ``tensor`` is a view of (through Reshape, Squeeze, ...), or itself."""
        while tensor in self.views:
            tensor = self.views[tensor]
        return tensor

    @cached_property
    def dominant_dtype(self) -> str:
        """Element type carrying the most FLOPs (``float32`` when nothing computes)."""
        flops: dict[str, int] = {}
        for k in self.kernels:
            if k.dtype != "undefined":
                flops[k.dtype] = flops.get(k.dtype, 0) + k.flops
        return max(flops, key=flops.get) if flops else "float32"

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """Per-kernel int64 columns: macs, flops, params, param_bytes, weight_bytes, activation_read_bytes,
        write_bytes, launches."""
        rows = self._derived.get(_FUSED_ROWS)  # the integers fusion summed, when this report is fusion's own
        columns = _int_columns_of_rows(rows) if rows is not None else None
        return int_columns(self.kernels, _ARRAY_FIELDS) if columns is None else columns

    @property
    def launches(self) -> int:
        """Number of kernel launches for one inference."""
        return int(self.arrays["launches"].sum())


_ARRAY_FIELDS = (*COST_FIELDS, "launches")
#: Key of :meth:`KernelReport.derived` under which fusion leaves the kernels' :data:`_ARRAY_FIELDS`, one flat list
#: (``dataclasses.replace`` makes a report without it: its kernels may differ).
_FUSED_ROWS = "fused rows"
#: Column totals below this (float64) are below 2**63 whatever the rounding of their float sum.
_SAFE_TOTAL = float(1 << 62)


def _int_columns_of_rows(rows: list[int]) -> dict[str, np.ndarray] | None:
    """:func:`~estimator.cost.nodes.int_columns` of the kernels from their :data:`_ARRAY_FIELDS`, kernel after
    kernel in one flat list, in one conversion; None when a value or a column's total may not fit in int64 (the
    caller then takes the checking path, and its error)."""
    if not rows:
        return None
    try:
        matrix = np.fromiter(rows, np.int64, len(rows)).reshape(-1, len(_ARRAY_FIELDS))
    except OverflowError:
        return None
    if float(np.abs(matrix, dtype=np.float64).sum(axis=0).max()) >= _SAFE_TOTAL:
        return None
    return dict(zip(_ARRAY_FIELDS, matrix.T.copy(), strict=True))
