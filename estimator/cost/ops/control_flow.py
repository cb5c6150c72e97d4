"""Cost rules for control flow: Loop, If and Scan (ONNX default domain).

A control-flow node does no arithmetic of its own; it runs a subgraph, costed for one execution by
``ctx.cost_subgraph`` and multiplied by how often it runs:

* **Loop**: ``body x M`` when the trip count ``M`` is a constant known at load time and the body's
  condition output is trivially true (a pass-through of the condition input, or a constant true).
  When ``M`` is unknown (absent, a run-time value, or the ``INT64_MAX``-like sentinel exporters write for
  "no bound") or the loop is condition-driven (it can stop early), one iteration is counted and the node
  is flagged ``loop-trip-count-unknown``: its figure is a lower bound. A loop whose initial condition is a
  constant false runs zero times.
* **If**: the branch taken when the condition is a constant; otherwise the more expensive branch
  (by FLOPs, then MACs, then bytes), flagged ``if-branch-max``: an upper bound.
* **Scan**: ``body x sequence length``, the length read from the first scan input along its scan axis
  (``scan_input_axes``, opset 9+). Scan-8 has a leading batch axis and runs the body once per batch element
  and step (``sum(sequence_lens)`` steps when that input is a known constant).

Bytes: the subgraph's reads and writes (times the executions) go to ``extra_read_bytes`` /
``extra_write_bytes``; the node itself reads no input as data (the subgraph's nodes read them). Loop and
Scan write their outputs (final loop-carried values, concatenated scan outputs are copied out); If writes
nothing of its own (its outputs are the branch's outputs). Op types without a rule inside a subgraph are
passed on in ``inner_unsupported``.
"""

from __future__ import annotations

import numpy as np

from estimator.cost.ops.base import NodeContext, OpCost, SubgraphCost, register
from estimator.errors import GraphStructureError
from estimator.graph.load import Graph

#: Flag of a Loop whose trip count is not known at load time: one iteration counted, a lower bound.
FLAG_TRIP_COUNT_UNKNOWN = "loop-trip-count-unknown"
#: Flag of an If whose condition is not known at load time: the dearer branch counted, an upper bound.
FLAG_IF_BRANCH_MAX = "if-branch-max"
#: Trip counts at or above this are the "no bound" sentinels exporters write (INT32_MAX, INT64_MAX).
UNBOUNDED_TRIP_COUNT = 2**31 - 1
#: How many Identity nodes are followed back from a Loop body's condition output.
_MAX_IDENTITY_HOPS = 8


def _subgraph(ctx: NodeContext, name: str) -> Graph:
    graph = ctx.subgraph(name)
    if graph is None:
        raise GraphStructureError(f"node '{ctx.node.name}' ({ctx.node.op_type}) has no '{name}' subgraph")
    return graph


def _repeated(ctx: NodeContext, one: SubgraphCost, times: int, flags: tuple[str, ...] = ()) -> OpCost:
    """Cost of running a subgraph ``times`` times, the node reading no input as data."""
    return OpCost(
        macs=one.macs * times,
        flops=one.flops * times,
        data_inputs=(),
        param_inputs=(),
        extra_read_bytes=one.read_bytes * times,
        extra_write_bytes=one.write_bytes * times,
        flags=flags,
        inner_unsupported=dict(one.unsupported),
    )


def _scalar(value: np.ndarray | None) -> int | bool | None:
    """The single element of a constant (any shape with one element), or None."""
    if value is None or value.size != 1:
        return None
    item = value.reshape(-1)[0]
    return bool(item) if value.dtype == np.bool_ else int(item)


def _condition_always_true(body: Graph) -> bool:
    """Whether a Loop body's condition output is its condition input passed through, or a constant true."""
    if len(body.outputs) < 1:
        return False
    name = body.outputs[0]
    cond_in = body.inputs[1] if len(body.inputs) > 1 else None
    for _ in range(_MAX_IDENTITY_HOPS):
        if cond_in is not None and name == cond_in:
            return True
        value = body.constant_value(name)
        if value is not None:
            return bool(np.all(value))
        producer = body.producers.get(name)
        if producer is None:
            return False
        node = body.nodes[producer]
        if node.op_type != "Identity" or not node.inputs:
            return False
        name = node.inputs[0]
    return False


@register("Loop", since=1)
def loop(ctx: NodeContext) -> OpCost:
    """Loop: body cost x trip count M when known, else one iteration flagged ``loop-trip-count-unknown``."""
    body = _subgraph(ctx, "body")
    one = ctx.cost_subgraph(body)
    if _scalar(ctx.const(1)) is False:
        return _repeated(ctx, one, 0)
    trip_count = _scalar(ctx.const(0))
    bounded = trip_count is not None and 0 <= trip_count < UNBOUNDED_TRIP_COUNT
    if bounded and _condition_always_true(body):
        return _repeated(ctx, one, int(trip_count))
    if trip_count == 0:
        return _repeated(ctx, one, 0)
    return _repeated(ctx, one, 1, (FLAG_TRIP_COUNT_UNKNOWN,))


def _merged_unsupported(*costs: SubgraphCost) -> dict[str, int]:
    merged: dict[str, int] = {}
    for cost in costs:
        for op, count in cost.unsupported.items():
            merged[op] = max(merged.get(op, 0), count)
    return merged


@register("If", since=1)
def if_(ctx: NodeContext) -> OpCost:
    """If: the taken branch for a constant condition, else the dearer branch flagged ``if-branch-max``."""
    then_cost = ctx.cost_subgraph(_subgraph(ctx, "then_branch"))
    else_cost = ctx.cost_subgraph(_subgraph(ctx, "else_branch"))
    condition = _scalar(ctx.const(0))
    if condition is not None:
        chosen, flags, unsupported = (then_cost if condition else else_cost), (), None
    else:
        chosen = max(
            (then_cost, else_cost),
            key=lambda c: (c.flops, c.macs, c.read_bytes + c.write_bytes),
        )
        flags, unsupported = (FLAG_IF_BRANCH_MAX,), _merged_unsupported(then_cost, else_cost)
    return OpCost(
        macs=chosen.macs,
        flops=chosen.flops,
        data_inputs=(),
        param_inputs=(),
        write_bytes=0,
        extra_read_bytes=chosen.read_bytes,
        extra_write_bytes=chosen.write_bytes,
        flags=flags,
        inner_unsupported=dict(chosen.unsupported) if unsupported is None else unsupported,
    )


def _scan_inputs(ctx: NodeContext, first_state: int) -> list[int]:
    """Positions of a Scan's scan inputs (the last ``num_scan_inputs`` inputs)."""
    count = ctx.attr("num_scan_inputs")
    n_inputs = len(ctx.node.inputs)
    if count is None or not 1 <= int(count) <= n_inputs - first_state:
        raise GraphStructureError(
            f"node '{ctx.node.name}' (Scan): num_scan_inputs={count} does not fit its {n_inputs} inputs"
        )
    return list(range(n_inputs - int(count), n_inputs))


@register("Scan", since=8)
def scan_8(ctx: NodeContext) -> OpCost:
    """Scan-8: scan inputs are [batch, seq, ...]; the body runs once per batch element and step."""
    one = ctx.cost_subgraph(_subgraph(ctx, "body"))
    first = _scan_inputs(ctx, first_state=1)[0]
    shape = ctx.in_shape(first)
    if len(shape) < 2:
        raise GraphStructureError(
            f"node '{ctx.node.name}' (Scan-8): scan input of shape {shape} has no seq axis"
        )
    batch, seq = shape[0], shape[1]
    executions = batch * seq
    lengths = ctx.const(0)
    if lengths is not None and lengths.size == batch:
        executions = int(np.minimum(np.maximum(lengths.astype(np.int64), 0), seq).sum())
    return _repeated(ctx, one, executions)


@register("Scan", since=9)
def scan_9(ctx: NodeContext) -> OpCost:
    """Scan-9+: the body runs once per element of the first scan input along its scan axis."""
    one = ctx.cost_subgraph(_subgraph(ctx, "body"))
    first = _scan_inputs(ctx, first_state=0)[0]
    shape = ctx.in_shape(first)
    axes = ctx.attr("scan_input_axes")
    axis = int(axes[0]) if axes else 0
    rank = len(shape)
    if not -rank <= axis < rank:
        raise GraphStructureError(
            f"node '{ctx.node.name}' (Scan): scan axis {axis} out of range for scan input shape {shape}"
        )
    return _repeated(ctx, one, shape[axis])
