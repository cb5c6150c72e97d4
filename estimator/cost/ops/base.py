"""The contract between the cost engine and its cost rules, and the one registry of rules.

Counting convention, stated once for the whole project:

* **1 multiply-add = 1 MAC = 2 FLOPs.** ``OpCost.flops`` is the *total* floating-point (or integer)
  arithmetic of a node and already includes ``2 * macs``.
* Arithmetic that is not a multiply-add (activations, normalisation, softmax, reductions, comparisons)
  is counted in ``flops`` per element with the per-element costs documented next to each rule
  (``estimator/ops/elementwise.py`` has the table). Each transcendental function (exp, log, tanh, erf,
  sqrt, sin, ...) counts as one FLOP.
* Bytes are bytes of tensor storage (sub-byte types packed). Which inputs a node reads as data is the
  rule's decision (``data_inputs``); shape/axes/index-metadata inputs are not data.

A rule is a pure function ``rule(ctx: NodeContext) -> OpCost`` registered for a
``(domain, op_type, since_version)`` key. Lookup takes the rule with the largest ``since_version`` not
above the model's opset for that domain (as ONNX's reference runtime dispatches ``Gemm_6``/``Gemm_7``).
Registering the same key twice raises :class:`~estimator.errors.RegistryError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from estimator.errors import RegistryError, ShapeError
from estimator.graph.load import ONNX_DOMAIN, canonical_domain

if TYPE_CHECKING:  # pragma: no cover
    from estimator.graph.load import Graph, Node, TensorInfo

#: Microsoft contrib domain used by ONNX Runtime's fused ops.
MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class SubgraphCost:
    """Totals of one costed subgraph (a Loop/Scan body or an If branch), for one execution of it."""

    macs: int
    flops: int
    read_bytes: int
    write_bytes: int
    unsupported: Mapping[str, int]


@dataclass(frozen=True)
class OpCost:
    """What one node costs. ``flops`` includes ``2 * macs`` (1 MAC = 2 FLOPs).

    Attributes:
        macs: multiply-accumulate operations.
        flops: total arithmetic operations (FLOPs, or integer ops for integer kernels).
        data_inputs: input positions read as tensor data; ``None`` means every present input. Metadata
            inputs (a Reshape's shape, a Slice's starts, axes) are left out.
        param_inputs: positions whose tensor, when it is a constant of the graph, is a *learned parameter*
            (counted in parameter totals). ``None`` means every constant data input. Buffers that are
            read but are not parameters (BatchNormalization's running mean/var) are data but not params.
        param_elements: per-position override of the parameters a constant input holds, for weights stored
            packed (MatMulNBits' ``N*K`` logical weights in ``uint8`` blobs; its block scales and zero points
            are part of that encoding: 0). Its bytes stay the stored bytes.
        read_bytes: per-position override of the bytes read from an input (e.g. Gather reads only the
            selected rows of its table). Positions not in the mapping read their whole tensor.
        write_bytes: override of the bytes written (default: the storage of every output).
        zero_copy: a view that moves no bytes and launches no kernel (Reshape, Squeeze, Identity, ...).
        extra_read_bytes: bytes read inside subgraphs (control flow), added to the node's reads.
        extra_write_bytes: bytes written inside subgraphs, added to the node's writes.
        flags: caveats that make the figure a bound rather than exact, e.g. ``"loop-trip-count-unknown"``.
        inner_unsupported: op types (with counts) inside subgraphs that had no cost rule.
    """

    macs: int = 0
    flops: int = 0
    data_inputs: tuple[int, ...] | None = None
    param_inputs: tuple[int, ...] | None = None
    param_elements: Mapping[int, int] | None = None
    read_bytes: Mapping[int, int] | None = None
    write_bytes: int | None = None
    zero_copy: bool = False
    extra_read_bytes: int = 0
    extra_write_bytes: int = 0
    flags: tuple[str, ...] = ()
    inner_unsupported: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeContext:
    """Everything a cost rule may look at: the node, its tensors' shapes/dtypes and known constants.

    Attributes:
        node: the node being costed.
        inputs: one :class:`TensorInfo` per input position, ``None`` for an omitted optional input.
        outputs: one :class:`TensorInfo` per output position, ``None`` for an omitted optional output.
        opset: the model's opset version for the node's domain.
        graph: the graph that holds the node (for subgraphs and constants).
        cost_subgraph: callback that costs a subgraph of this node for one execution.
        read_constants: when a list, each position whose constant value :meth:`const` is asked for is appended
            to it (the node-cost memo keys a cost by the constants its rule read).
    """

    node: Node
    inputs: tuple[TensorInfo | None, ...]
    outputs: tuple[TensorInfo | None, ...]
    opset: int
    graph: Graph
    cost_subgraph: Callable[[Graph], SubgraphCost]
    read_constants: list[int] | None = field(default=None, compare=False, repr=False)

    def attr(self, name: str, default: Any = None) -> Any:
        """Value of attribute ``name`` (decoded to Python/numpy), or ``default`` when absent."""
        return self.node.attributes.get(name, default)

    def has_input(self, i: int) -> bool:
        """Whether input position ``i`` is present (not omitted)."""
        return i < len(self.inputs) and self.inputs[i] is not None

    def in_shape(self, i: int) -> tuple[int, ...]:
        """Concrete shape of input ``i``; raises :class:`ShapeError` when it is unknown."""
        info = self.inputs[i] if i < len(self.inputs) else None
        if info is None or info.shape is None:
            raise ShapeError(f"{self.where()}: the shape of input {i} is unknown")
        return info.shape

    def out_shape(self, i: int = 0) -> tuple[int, ...]:
        """Concrete shape of output ``i``; raises :class:`ShapeError` when it is unknown."""
        info = self.outputs[i] if i < len(self.outputs) else None
        if info is None or info.shape is None:
            raise ShapeError(f"{self.where()}: the shape of output {i} is unknown")
        return info.shape

    def in_numel(self, i: int) -> int:
        """Element count of input ``i``."""
        return numel(self.in_shape(i))

    def out_numel(self, i: int = 0) -> int:
        """Element count of output ``i``."""
        return numel(self.out_shape(i))

    def const(self, i: int) -> np.ndarray | None:
        """Value of input ``i`` when it is a constant known at load time (initializer, folded), else None."""
        if self.read_constants is not None:
            self.read_constants.append(i)
        if not self.has_input(i):
            return None
        return self.graph.constant_value(self.node.inputs[i])

    def subgraph(self, name: str) -> Graph | None:
        """The subgraph held in attribute ``name`` (Loop ``body``, If ``then_branch``...), if any."""
        return self.node.subgraphs.get(name)

    def where(self) -> str:
        """``node 'NAME' (OpType)``, for error messages."""
        return f"node '{self.node.name}' ({self.node.op_type})"


def numel(shape: Iterable[int]) -> int:
    """Number of elements of a shape (1 for a scalar)."""
    return math.prod(shape)


Rule = Callable[[NodeContext], OpCost]


@dataclass(frozen=True)
class RuleKey:
    """Registry key of a rule: ONNX domain, op type and the opset version it applies from."""

    domain: str
    op_type: str
    since: int


#: Most (domain, op type, opset) answers a :class:`Registry` remembers.
_FOUND_LIMIT = 4096


class Registry:
    """Cost rules keyed by (domain, op type, since version). Duplicate registration is an error."""

    def __init__(self) -> None:
        self._rules: dict[tuple[str, str], dict[int, Rule]] = {}
        self._found: dict[tuple[str, str, int], Rule | None] = {}

    def register(
        self, op_types: str | Iterable[str], *, domain: str = ONNX_DOMAIN, since: int = 1
    ) -> Callable[[Rule], Rule]:
        """Decorator registering ``rule`` for one or several op types of ``domain`` from opset ``since``."""
        names = (op_types,) if isinstance(op_types, str) else tuple(op_types)

        def decorate(rule: Rule) -> Rule:
            for op_type in names:
                self.add(op_type, rule, domain=domain, since=since)
            return rule

        return decorate

    def add(self, op_type: str, rule: Rule, *, domain: str = ONNX_DOMAIN, since: int = 1) -> None:
        """Register one rule; raises :class:`RegistryError` if the key is taken."""
        domain = canonical_domain(domain)
        versions = self._rules.setdefault((domain, op_type), {})
        if since in versions:
            raise RegistryError(
                f"a cost rule for {domain}::{op_type} since opset {since} is already registered "
                f"({versions[since].__module__}.{versions[since].__name__})"
            )
        versions[since] = rule
        self._found.clear()

    def lookup(self, domain: str, op_type: str, opset: int) -> Rule | None:
        """The rule for ``op_type`` in ``domain`` at model opset ``opset``, or None when there is none.

        The rule with the largest ``since`` not above ``opset`` wins; when every rule is newer than the
        model's opset the oldest rule is used (ops rarely change cost between versions).
        """
        key = (domain, op_type, opset)
        if key not in self._found:  # every node asks: remember the answer (forgotten when a rule is added)
            if len(self._found) >= _FOUND_LIMIT:  # op types read from files: keep the memory bounded
                self._found.clear()
            versions = self._rules.get((canonical_domain(domain), op_type))
            if not versions:
                self._found[key] = None
            else:
                eligible = [v for v in versions if v <= opset]
                self._found[key] = versions[max(eligible)] if eligible else versions[min(versions)]
        return self._found[key]

    def keys(self) -> list[RuleKey]:
        """Every registered key, sorted."""
        return sorted(
            (RuleKey(d, op, v) for (d, op), vs in self._rules.items() for v in vs),
            key=lambda k: (k.domain, k.op_type, k.since),
        )


#: The one registry of cost rules. Rule modules in ``estimator.cost.ops`` add to it when imported.
REGISTRY = Registry()
register = REGISTRY.register


def zero_cost(ctx: NodeContext) -> OpCost:
    """Rule for ops that do no arithmetic and move no bytes at run time (views, metadata)."""
    return OpCost(zero_copy=True)
