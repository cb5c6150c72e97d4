"""A graph's kernels: :class:`Kernel` (one launch: its member nodes and the traffic that crosses its boundary)
and :class:`KernelReport` (the kernels in launch order, with per-kernel columns and quantities derived from them).
:mod:`estimator.cost.kernels` builds them (fusion)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import TypeVar

import numpy as np

from estimator.cost.nodes import COST_FIELDS, CostReport, int_columns
from estimator.graph.structure import Graph

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
        launches: 1, or 0 for a group of views that launches nothing, or 2 for a TensorFlow contraction whose
            bias runs as a BiasAdd kernel of its own (``fuse="remapper"``).
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
        dtypes = self.dtypes
        distinct = dict.fromkeys(dtypes)
        if len(distinct) == 1:  # one dtype, the common case: the sum below would have one key
            (only,) = distinct
            return only if only != "undefined" else "float32"
        flops: dict[str, int] = {}
        for dtype, f in zip(dtypes, (k.flops for k in self.kernels), strict=True):
            if dtype != "undefined":
                flops[dtype] = flops.get(dtype, 0) + f
        return max(flops, key=flops.get) if flops else "float32"

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """Per-kernel int64 columns: macs, flops, params, param_bytes, weight_bytes, activation_read_bytes,
        write_bytes, launches."""
        trace = self._trace  # the integers fusion summed, when this report is fusion's own
        columns = _int_columns_of_rows(trace.rows) if trace is not None else None
        return int_columns(self.kernels, _ARRAY_FIELDS) if columns is None else columns

    @cached_property
    def kinds(self) -> tuple[str, ...]:
        """Each kernel's :attr:`Kernel.kind`, in launch order."""
        trace = self._trace
        return tuple(trace.kinds) if trace is not None else tuple(k.kind for k in self.kernels)

    @cached_property
    def dtypes(self) -> tuple[str, ...]:
        """Each kernel's :attr:`Kernel.dtype`, in launch order."""
        trace = self._trace
        return tuple(trace.dtypes) if trace is not None else tuple(k.dtype for k in self.kernels)

    @cached_property
    def members(self) -> KernelMembers:
        """The kernels' member nodes as flat columns, kernel after kernel (read-only arrays)."""
        trace = self._trace
        if trace is not None:
            groups = trace.groups
            nodes, sizes = chain.from_iterable(groups), list(map(len, groups))
            flops, ops = trace.member_flops, trace.member_ops
        else:
            nodes = [i for k in self.kernels for i in k.nodes]
            sizes = [len(k.nodes) for k in self.kernels]
            records = self.costs.nodes
            flops = [records[i].flops for i in nodes]
            ops = [records[i].op_type for i in nodes]
        out = KernelMembers(
            nodes=np.fromiter(nodes, np.intp, len(flops)),
            kernel=np.repeat(np.arange(len(sizes), dtype=np.intp), sizes),
            flops=np.fromiter(flops, np.int64, len(flops)),
            op_types=tuple(ops),
        )
        for array in (out.nodes, out.kernel, out.flops):
            array.setflags(write=False)
        return out

    @cached_property
    def live_ranges(self) -> LiveRanges:
        """Sizes and lifetimes of the run-time tensors over the launch order (see :class:`LiveRanges`)."""
        trace = self._trace
        return _live_ranges_of_trace(self, trace) if trace is not None else _live_ranges_of_kernels(self)

    @property
    def _trace(self) -> FusionTrace | None:
        """What fusion saw while it built this report (None for a report made otherwise, e.g. by
        ``dataclasses.replace``: its kernels may differ from fusion's)."""
        return self._derived.get(_FUSION_TRACE)

    @property
    def launches(self) -> int:
        """Number of kernel launches for one inference."""
        return int(self.arrays["launches"].sum())


_ARRAY_FIELDS = (*COST_FIELDS, "launches")
#: Key of :meth:`KernelReport.derived` under which fusion leaves its :class:`FusionTrace` (``dataclasses.replace``
#: makes a report without it: its kernels may differ).
_FUSION_TRACE = "fusion trace"
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


@dataclass(frozen=True)
class KernelMembers:
    """The member nodes of a report's kernels, kernel after kernel (each kernel's nodes in its order).

    Attributes:
        nodes: index (into ``CostReport.nodes``) of each member node.
        kernel: index of the kernel of each member (non-decreasing).
        flops: FLOPs of each member node (int64).
        op_types: op type of each member node.
    """

    nodes: np.ndarray
    kernel: np.ndarray
    flops: np.ndarray
    op_types: tuple[str, ...]


@dataclass(frozen=True)
class LiveRanges:
    """The run-time tensors of one inference with the steps of the launch order (one step per kernel) during which
    each is alive: the graph's inputs from step 0, each tensor a computing node writes from its kernel's step; each
    to the last step that reads it (through views: a read of a view is a read of its root), the graph's outputs
    to the last step, and never before it is born.

    Attributes:
        nbytes: bytes of each tensor (int64).
        first: step at which each tensor is born (int64).
        last: last step at which each tensor is alive (int64, ``>= first``).
        steps: steps of the launch order (kernels, at least 1).
    """

    nbytes: np.ndarray
    first: np.ndarray
    last: np.ndarray
    steps: int


@dataclass
class FusionTrace:
    """What :func:`~estimator.cost.kernels.fuse_kernels` saw while it built a report's kernels, kept with the report
    so that its columns are built from these lists, not read back from every kernel and node record. Filled by
    fusion only, never modified after.

    Attributes:
        rows: each kernel's :data:`_ARRAY_FIELDS`, kernel after kernel, one flat list.
        kinds, dtypes: each kernel's kind and dtype.
        member_flops, member_ops: each member node's FLOPs and op type, kernel after kernel.
        write_tensors, write_bytes, write_steps: each tensor a costed member writes, its bytes and its kernel.
        last_read: run-time tensor (not a constant) -> the last step (kernel) that reads it.
        groups: each kernel's member nodes.
        root_of: view output -> the tensor it finally aliases.
    """

    rows: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    member_flops: list[int] = field(default_factory=list)
    member_ops: list[str] = field(default_factory=list)
    write_tensors: list[str] = field(default_factory=list)
    write_bytes: list[int] = field(default_factory=list)
    write_steps: list[int] = field(default_factory=list)
    last_read: dict[str, int] = field(default_factory=dict)
    groups: list[list[int]] = field(default_factory=list)
    root_of: Mapping[str, str] = field(default_factory=dict)


def _live_ranges_of_trace(report: KernelReport, trace: FusionTrace) -> LiveRanges:
    """:attr:`KernelReport.live_ranges` from what fusion saw: the last step reading each tensor, merged here into
    its root's for the outputs of views."""
    last_use = dict(trace.last_read)
    for view, root in trace.root_of.items():
        step = last_use.pop(view, None)
        if step is not None and last_use.get(root, -1) < step:
            last_use[root] = step
    steps = max(len(report.kernels), 1)
    return _ranges(
        report.costs.graph,
        last_use,
        trace.root_of.get,
        steps,
        trace.write_tensors,
        trace.write_bytes,
        trace.write_steps,
    )


def _live_ranges_of_kernels(report: KernelReport) -> LiveRanges:
    """:attr:`KernelReport.live_ranges` read from the kernels (any report, e.g. one whose kernels repeat)."""
    graph = report.costs.graph
    graph_nodes = graph.nodes
    constant = graph.constant_roots
    # Every node that runs is in a kernel (folded ones in none): kernel after kernel, steps go up. Later (larger)
    # steps overwrite earlier ones: each tensor's last reading step.
    root = _view_roots(report.views).get
    last_use = {
        root(name, name): step
        for step, k in enumerate(report.kernels)
        for i in k.nodes
        for name in graph_nodes[i].inputs
        if name and name not in constant
    }
    costed = [n for n in report.costs.nodes if n.status == "costed"]
    step_of = report.kernel_of_node.get
    tensors, nbytes, starts = [], [], []
    for n in costed:
        start = step_of(n.index, 0)
        for tensor, size in n.writes:
            tensors.append(tensor)
            nbytes.append(size)
            starts.append(start)
    return _ranges(graph, last_use, root, max(len(report.kernels), 1), tensors, nbytes, starts)


def _ranges(
    graph: Graph,
    last_use: dict[str, int],
    root_get: Callable[[str, str], str],
    steps: int,
    tensors: list[str],
    nbytes: list[int],
    starts: list[int],
) -> LiveRanges:
    """The live ranges of the graph's inputs and of the written ``tensors`` (``nbytes`` each, born at ``starts``),
    given each root tensor's last reading step (``last_use``, updated here with the graph's outputs)."""
    sizes, born, dies = [], [], []
    for name in graph.inputs:
        info = graph.tensor(name)
        if info is not None and info.nbytes:
            sizes.append(info.nbytes)
            born.append(0)
            dies.append(last_use.get(name, 0))
    if tensors:
        last_use.update(dict.fromkeys((root_get(o, o) for o in graph.outputs), steps - 1))
        sizes += nbytes
        born += starts
        dies += map(last_use.get, tensors, starts)
    first = np.fromiter(born, np.int64, len(born))
    out = LiveRanges(
        np.fromiter(sizes, np.int64, len(sizes)),
        first,
        np.maximum(np.fromiter(dies, np.int64, len(dies)), first),
        steps,
    )
    for array in (out.nbytes, out.first, out.last):
        array.setflags(write=False)
    return out


def _view_roots(views: Mapping[str, str]) -> dict[str, str]:
    """Each view output -> the tensor it finally aliases (through chains of views)."""
    out = dict(views)
    for name, t in out.items():
        while t in views:
            out[name] = t = views[t]
    return out
