"""The cost report's records: :class:`NodeCost` per node (with its :class:`TensorRead` per input), the report of a
graph (:class:`CostReport`) and its :class:`Totals`, and the int64 columns vectorised sums read. Built by
:mod:`estimator.cost.nodes` (``count_costs``); counting convention: 1 multiply-add = 1 MAC = 2 FLOPs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from estimator.errors import InvalidDimensionError
from estimator.graph.load import Graph

#: Statuses whose arithmetic and traffic are known (counted, free or folded).
KNOWN_STATUSES = frozenset({"costed", "zero-cost", "folded"})


@dataclass(frozen=True)
class TensorRead:
    """Bytes a node reads from one input tensor; ``weight`` when the tensor is a load-time constant."""

    tensor: str
    nbytes: int
    weight: bool


@dataclass(frozen=True)
class NodeCost:
    """The cost of one node.

    Attributes:
        index: position in the graph's topological order.
        name, op_type, domain: the node's identity.
        status: one of costed, zero-cost, folded, unsupported, shape-unknown, rule-error.
        macs: multiply-accumulates. flops: total FLOPs (includes ``2 * macs``).
        params: learned parameters counted at this node (elements); param_bytes: their stored bytes.
        weight_bytes: bytes read from load-time constants (weights, buffers).
        activation_read_bytes: bytes read from tensors computed at run time.
        write_bytes: bytes written.
        dtype: element type of the arithmetic (the first data input's dtype).
        output_shapes: shapes of the outputs (None where unknown).
        reads: per-input reads (tensor, bytes, whether a weight).
        writes: per-output writes (tensor, bytes).
        flags: caveats from the rule (e.g. ``loop-trip-count-unknown``).
        message: why a node is not costed, for the statuses other than costed/zero-cost/folded.
    """

    index: int
    name: str
    op_type: str
    domain: str
    status: str
    macs: int = 0
    flops: int = 0
    params: int = 0
    param_bytes: int = 0
    weight_bytes: int = 0
    activation_read_bytes: int = 0
    write_bytes: int = 0
    dtype: str = "undefined"
    output_shapes: tuple[tuple[int, ...] | None, ...] = ()
    reads: tuple[TensorRead, ...] = ()
    writes: tuple[tuple[str, int], ...] = ()
    flags: tuple[str, ...] = ()
    message: str = ""

    @property
    def read_bytes(self) -> int:
        """All bytes read: weights plus activations."""
        return self.weight_bytes + self.activation_read_bytes

    @property
    def qualified_op(self) -> str:
        """``op_type`` for the default domain, ``domain::op_type`` otherwise."""
        return self.op_type if self.domain == "ai.onnx" else f"{self.domain}::{self.op_type}"


@dataclass(frozen=True)
class Totals:
    """Sums over the nodes of a report (MACs, FLOPs, parameters in elements, bytes)."""

    macs: int
    flops: int
    params: int
    param_bytes: int
    weight_bytes: int
    activation_read_bytes: int
    write_bytes: int

    @property
    def read_bytes(self) -> int:
        """All bytes read."""
        return self.weight_bytes + self.activation_read_bytes


@dataclass(frozen=True)
class CostReport:
    """Per-node costs of one graph, with what could not be costed.

    Attributes:
        graph: the graph that was costed.
        nodes: one :class:`NodeCost` per node, in topological order.
        unsupported: qualified op type -> count, for nodes without a cost rule.
        not_costed: qualified op type -> count, for every node whose status is not known
            (unsupported, shape-unknown, rule-error).
        flags: caveat -> count of nodes carrying it.
    """

    graph: Graph
    nodes: tuple[NodeCost, ...]
    unsupported: Mapping[str, int]
    not_costed: Mapping[str, int]
    flags: Mapping[str, int] = field(default_factory=dict)

    @cached_property
    def totals(self) -> Totals:
        """Sums of MACs, FLOPs, parameters and bytes over every node."""
        a = self.arrays
        return Totals(**{k: int(a[k].sum()) for k in COST_FIELDS})

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """Per-node columns as numpy int64 arrays (macs, flops, params, ..., write_bytes)."""
        return int_columns(self.nodes, COST_FIELDS)

    @property
    def coverage(self) -> float:
        """Share of nodes whose cost is known (costed, zero-cost or folded), between 0 and 1."""
        if not self.nodes:
            return 1.0
        return sum(n.status in KNOWN_STATUSES for n in self.nodes) / len(self.nodes)

    def node(self, name: str) -> NodeCost:
        """The cost of the node called ``name``; KeyError when there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


#: The additive cost fields of a node (and of a kernel): what totals sum.
COST_FIELDS = (
    "macs",
    "flops",
    "params",
    "param_bytes",
    "weight_bytes",
    "activation_read_bytes",
    "write_bytes",
)


def int_columns(items: Sequence[object], fields: Sequence[str]) -> dict[str, np.ndarray]:
    """``{field: int64 array of getattr(item, field) over items}``, for vectorised sums.

    Raises InvalidDimensionError when a value or a column's total does not fit in int64 (9.2e18): such a
    count comes from absurd dimensions, and numpy would otherwise wrap the sum around silently.
    """
    out = {}
    for f in fields:
        values = [getattr(item, f) for item in items]
        if values and (max(values) >= _INT64_LIMIT or sum(values) >= _INT64_LIMIT):
            raise InvalidDimensionError(
                f"the model's {f} add up to {sum(values):.3g}, beyond 9.2e18 (int64): its dimensions are absurd; "
                f"check the model's shapes and --batch / --shape"
            )
        out[f] = np.fromiter(values, np.int64, len(values))
    return out


_INT64_LIMIT = 1 << 63
