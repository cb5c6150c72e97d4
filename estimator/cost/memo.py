"""Node costs remembered by signature: NAS candidates repeat a handful of (op, attributes, shapes) signatures, and a
BERT or a ViT repeats one block a dozen times, so most nodes of an estimate were costed before.

A node's *signature* is everything its cost is a function of: the rule, op type, domain and opset, the attributes
(typed: an int 1, a float 1.0 and a float -0.0 are different), and for every input and output position whether it
is present, its shape and dtype, whether it is a load-time constant and the shape and dtype of the stored tensor it
is a view of (its *root*: parameters and quantized reads are counted there). Rules may also read the value of a
constant input (``ctx.const``): the positions a rule read are recorded with the values it saw, and an entry is used
only when the node's constants at those positions hold the same bytes (dtype and shape too).

What is remembered holds no tensor or node names: the name-free *template* of a :class:`NodeCost` (arithmetic,
bytes per input and output position, which positions may count parameters). The engine builds every NodeCost from
a template, the first time as every later time, so a remembered cost is the cost. Parameters are counted at the
first node that reads a root, which depends on the graph: that step is replayed per node, never remembered.

Only costs that hold no names are remembered (costed and zero-cost nodes); errors, unknown shapes, unsupported ops
and nodes with subgraphs are computed every time. The memo is bounded (:data:`MEMO_LIMIT` entries; it starts
afresh when full).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from estimator.cost.ops.base import NodeContext, OpCost
from estimator.graph.load import Graph, Node, TensorInfo

#: Most signatures remembered (each entry is a few hundred bytes plus the constant values a rule read).
MEMO_LIMIT = 8192


@dataclass(frozen=True)
class CostTemplate:
    """The name-free content of a costed or zero-cost :class:`~estimator.cost.nodes.NodeCost`.

    Attributes:
        status: ``costed`` or ``zero-cost``.
        macs, flops, weight_bytes, activation_read_bytes, write_bytes: as in NodeCost (bytes in bytes).
        dtype: element type of the arithmetic. output_shapes: shapes of the outputs.
        reads: per data input ``(position, bytes, is_weight)``. writes: per present output ``(position, bytes)``.
        param_candidates: ``(position, elements or None, stored bytes)`` of the inputs whose root counts as
            parameters at the first node that reads it.
        flags: caveats from the rule.
    """

    status: str
    dtype: str
    output_shapes: tuple[tuple[int, ...] | None, ...]
    flags: tuple[str, ...]
    macs: int = 0
    flops: int = 0
    weight_bytes: int = 0
    activation_read_bytes: int = 0
    write_bytes: int = 0
    reads: tuple[tuple[int, int, bool], ...] = ()
    writes: tuple[tuple[int, int], ...] = ()
    param_candidates: tuple[tuple[int, int | None, int], ...] = ()


@dataclass(frozen=True)
class _Entry:
    template: CostTemplate
    #: (position, the constant's value the rule read there, or None) for each position the rule read.
    constants: tuple[tuple[int, np.ndarray | None], ...]


class NodeCostMemo:
    """Bounded memo of :class:`CostTemplate` by node signature. ``enabled = False`` turns it off (every node is
    costed by its rule; the reference the memo is checked against)."""

    def __init__(self, limit: int = MEMO_LIMIT) -> None:
        self.enabled = True
        self._limit = limit
        self._entries: dict[Hashable, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def get(
        self, key: Hashable, graph: Graph, node: Node, inputs: tuple[TensorInfo | None, ...]
    ) -> CostTemplate | None:
        """The template remembered for ``key`` when the node's constants match what the rule read, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        for position, seen in entry.constants:
            now = _const(graph, node, inputs, position)
            if now is None or seen is None:
                if now is not seen:
                    return None
            elif now.dtype != seen.dtype or now.shape != seen.shape or now.tobytes() != seen.tobytes():
                return None
        return entry.template

    def put(
        self,
        key: Hashable,
        template: CostTemplate,
        graph: Graph,
        node: Node,
        inputs: tuple[TensorInfo | None, ...],
        read_positions: list[int],
    ) -> None:
        """Remember ``template`` for ``key`` with the constants the rule read at ``read_positions``."""
        constants = []
        for position in dict.fromkeys(read_positions):
            value = _const(graph, node, inputs, position)
            if value is not None:
                if value.dtype == object:
                    return  # no byte identity for Python objects: never remembered
                value = value.copy()
                value.setflags(write=False)
            constants.append((position, value))
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = _Entry(template, tuple(constants))


def _const(graph: Graph, node: Node, inputs: tuple[TensorInfo | None, ...], i: int) -> np.ndarray | None:
    """What ``NodeContext.const(i)`` returns for this node."""
    if i >= len(inputs) or inputs[i] is None:
        return None
    return graph.constant_value(node.inputs[i])


def signature(
    rule: object,
    node: Node,
    opset: int,
    graph: Graph,
    inputs: tuple[TensorInfo | None, ...],
    outputs: tuple[TensorInfo | None, ...],
) -> Hashable | None:
    """The memo key of ``node`` (see the module docstring), or None when the node is never remembered."""
    if node.subgraphs:
        return None
    attributes = node.attributes
    attrs = _attributes_key(attributes) if attributes else ()
    if attrs is None:
        return None
    root_of = graph.constant_roots.get
    tensor = graph.tensors.get
    ins = []
    append = ins.append
    for name, info in zip(node.inputs, inputs, strict=True):
        if not name:
            append(None)
            continue
        here = (info.shape, info.dtype) if info is not None else "?"
        root = root_of(name)
        if root is None:
            append(here)
        else:
            r = tensor(root)
            append(("const", here, (r.shape, r.dtype) if r is not None else None))
    if len(outputs) == 1 and node.outputs[0] and outputs[0] is not None:  # the common case, without a frame
        info = outputs[0]
        outs: tuple = ((info.shape, info.dtype),)
    else:
        outs = tuple(
            [
                None if not name else (info.shape, info.dtype) if info is not None else "?"
                for name, info in zip(node.outputs, outputs, strict=True)
            ]
        )
    return (rule, node.op_type, node.domain, opset, attrs, tuple(ins), outs)


def _attributes_key(attributes: Any) -> tuple | None:
    """A hashable, typed image of decoded attributes (None when a value has no exact image)."""
    items = []
    for name, value in attributes.items():
        kind = type(value)
        if kind is int or kind is str:
            items.append((name, value))
        elif kind is float:
            items.append((name, ("float", value.hex())))
        elif kind is list:
            kinds = set(map(type, value))
            if kinds == _INT or not kinds:  # ints, the common case, without a call
                items.append((name, ("ints", *value)))
                continue
            image = _list_key(value)
            if image is None:
                return None
            items.append((name, image))
        elif kind is np.ndarray:
            if value.dtype == object:
                return None
            items.append((name, ("tensor", value.dtype.str, value.shape, value.tobytes())))
        elif value is None:
            items.append((name, ("none",)))
        else:
            return None
    return tuple(items)


_INT = {int}


def _list_key(values: list) -> tuple | None:
    kinds = set(map(type, values))
    if not kinds or kinds == {int}:
        return ("ints", *values)
    if kinds == {str}:
        return ("strings", *values)
    if kinds == {float}:
        return ("floats", *(v.hex() for v in values))
    return None


def cost_template(
    graph: Graph, node: Node, ctx: NodeContext, cost: OpCost, shapes: tuple
) -> CostTemplate | str:
    """The name-free cost of ``node`` whose rule gave ``cost`` (``shapes``: its output shapes), or the message
    saying which input's bytes are unknown."""
    dtype = _arith_dtype(ctx.inputs, ctx.outputs)
    flags = tuple(cost.flags) + tuple(f"unsupported-inside:{op}" for op in cost.inner_unsupported)
    if cost.zero_copy:
        return CostTemplate(status="zero-cost", dtype=dtype, output_shapes=shapes, flags=flags)
    present = [i for i, name in enumerate(node.inputs) if name]
    data = present if cost.data_inputs is None else [i for i in cost.data_inputs if i in present]
    param_positions = set(data if cost.param_inputs is None else cost.param_inputs)
    overrides = cost.read_bytes or {}
    reads: list[tuple[int, int, bool]] = []
    candidates: list[tuple[int, int | None, int]] = []
    weight_bytes = activation_bytes = 0
    for i in data:
        name = node.inputs[i]
        info = ctx.inputs[i]
        if i not in overrides and (info is None or info.nbytes is None):
            # Never read an unknown tensor as 0 bytes: the node's traffic is unknown.
            return f"the shape of input {i} ('{name}') is unknown, so the bytes it reads are unknown"
        nbytes = overrides.get(i, info.nbytes)
        is_weight = graph.is_constant(name)
        if is_weight and i not in overrides:
            nbytes = _stored_read_bytes(graph, name, nbytes)
        reads.append((i, int(nbytes), is_weight))
        if is_weight:
            weight_bytes += nbytes
            root_info = graph.tensor(graph.constant_roots[name]) or info
            learnable = root_info is not None and root_info.dtype not in _NOT_LEARNED_DTYPES
            if i in param_positions and learnable:
                elements = None
                if root_info.numel is not None:
                    elements = (cost.param_elements or {}).get(i, root_info.numel)
                candidates.append((i, elements, root_info.nbytes or 0))
        else:
            activation_bytes += nbytes
    writes = tuple((k, t.nbytes or 0) for k, t in enumerate(ctx.outputs) if t is not None)
    write_bytes = cost.write_bytes if cost.write_bytes is not None else sum(b for _, b in writes)
    return CostTemplate(
        status="costed",
        dtype=dtype,
        output_shapes=shapes,
        flags=flags,
        macs=int(cost.macs),
        flops=int(cost.flops),
        weight_bytes=int(weight_bytes),
        activation_read_bytes=int(activation_bytes + cost.extra_read_bytes),
        write_bytes=int(write_bytes + cost.extra_write_bytes),
        reads=tuple(reads),
        writes=writes,
        param_candidates=tuple(candidates),
    )


#: Stored element types that hold masks and indices, never learned parameters (a float mask computed from a
#: stored bool mask, an index table): read as weights, not counted as parameters.
_NOT_LEARNED_DTYPES = frozenset({"bool", "int64"})

#: Stored element types that a runtime reads as they are, dequantizing inside the kernel (QDQ fusion).
_QUANTIZED_STORAGE = frozenset(
    {"int8", "uint8", "int4", "uint4", "int2", "uint2", "float8e4m3fn", "float8e5m2"}
)


def _stored_read_bytes(graph: Graph, name: str, nbytes: int) -> int:
    """Bytes a kernel reads for a constant: a float weight dequantized from quantized storage (a folded
    DequantizeLinear) is read as stored - ONNX Runtime and TensorRT fuse the dequantization into integer
    kernels - not as the float tensor it stands for."""
    root = graph.tensor(graph.constant_roots[name])
    info = graph.tensor(name)
    if root is None or info is None or root.nbytes is None or root.dtype not in _QUANTIZED_STORAGE:
        return nbytes
    return root.nbytes if info.dtype not in _QUANTIZED_STORAGE and root.numel == info.numel else nbytes


def _arith_dtype(inputs: tuple[TensorInfo | None, ...], outputs: tuple[TensorInfo | None, ...]) -> str:
    for t in (*inputs, *outputs):
        if t is not None and t.dtype not in ("undefined", "int64", "bool"):
            return t.dtype
    return next((t.dtype for t in (*inputs, *outputs) if t is not None), "undefined")


#: The memo every :func:`~estimator.cost.nodes.count_costs` call uses.
NODE_COST_MEMO = NodeCostMemo()
