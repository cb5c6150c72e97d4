"""Cost rules for Softmax, LogSoftmax and Hardmax (ONNX default domain, all opsets). No MACs.

A *row* is one set of elements normalised together. Its size ``n`` depends on the opset:

* before opset 13 the input is coerced to 2-D at ``axis`` (default 1): a row is every element of
  ``shape[axis:]`` and there are ``prod(shape[:axis])`` rows;
* from opset 13 a row runs along the single axis ``axis`` (default -1): ``n = shape[axis]`` and there are
  ``numel / n`` rows.

FLOPs, with ``E`` elements and ``R`` rows (the numerically stable form every runtime uses):

==========  ==============================================================================  ============
op          per element                                                                     per row
==========  ==============================================================================  ============
Softmax     5: running max, ``x - max``, exp, running sum, divide                           --
LogSoftmax  5: running max, ``x - max``, exp, running sum, ``(x - max) - log(sum)``           1: the log
Hardmax     1: running max (arg-max compare); the one-hot output is written, not computed   -1
==========  ==============================================================================  ============

(Hardmax does ``n - 1`` compares per row, hence ``E - R``.) Only Softmax's per-axis count is the same
under both axis semantics; LogSoftmax and Hardmax depend on ``R``.
"""

from __future__ import annotations

from estimator.cost.ops.base import NodeContext, OpCost, numel, register
from estimator.errors import GraphStructureError

#: FLOPs per element of a stable softmax: max, subtract, exp, sum, divide.
SOFTMAX_FLOPS = 5
#: FLOPs per element of a stable log-softmax (max, subtract, exp, sum, subtract), plus one log per row.
LOG_SOFTMAX_FLOPS = 5
#: Opset from which the softmax family works along one axis instead of coercing the input to 2-D.
PER_AXIS_SINCE = 13


def rows_and_length(ctx: NodeContext) -> tuple[int, int]:
    """(rows, elements per row) of input 0 under the node's axis semantics (opset < 13: 2-D coercion)."""
    shape = ctx.in_shape(0)
    rank = len(shape)
    per_axis = ctx.opset >= PER_AXIS_SINCE
    axis = int(ctx.attr("axis", -1 if per_axis else 1))
    axis = axis + rank if axis < 0 else axis
    if rank == 0:
        return 1, 1
    if not 0 <= axis < rank:
        raise GraphStructureError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): axis {axis} is out of range for rank {rank}"
        )
    length = shape[axis] if per_axis else numel(shape[axis:])
    total = numel(shape)
    return (total // length if length else 0), length


@register("Softmax", since=1)
def softmax(ctx: NodeContext) -> OpCost:
    """Softmax: 5 FLOPs per element (max, subtract, exp, sum, divide)."""
    return OpCost(flops=SOFTMAX_FLOPS * ctx.in_numel(0), param_inputs=())


@register("LogSoftmax", since=1)
def log_softmax(ctx: NodeContext) -> OpCost:
    """LogSoftmax: 5 FLOPs per element and one log per row."""
    rows, _ = rows_and_length(ctx)
    return OpCost(flops=LOG_SOFTMAX_FLOPS * ctx.in_numel(0) + rows, param_inputs=())


@register("Hardmax", since=1)
def hardmax(ctx: NodeContext) -> OpCost:
    """Hardmax: ``n - 1`` compares per row of ``n`` elements (arg-max), then a one-hot write."""
    rows, length = rows_and_length(ctx)
    return OpCost(flops=rows * max(length - 1, 0), param_inputs=())
