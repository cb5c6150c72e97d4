"""Cost rules for reductions (Reduce*, ArgMax/ArgMin, TopK, CumSum/CumProd), ONNX default domain. No MACs.

With ``E`` elements in the input and ``R`` elements in the output (one per reduced row, ``keepdims``
does not change ``R``), a reduction over rows of ``n = E / R`` elements costs:

===================  ================================================================  =============
op                   FLOPs                                                             closed form
===================  ================================================================  =============
ReduceSum/Max/Min    ``n - 1`` adds, compares or multiplies per row                    ``E - R``
ReduceProd
ReduceMean           ``n - 1`` adds + one divide per row                                ``E``
ReduceLogSum         ``n - 1`` adds + one log per row                                   ``E``
ReduceSumSquare      a square per element + ``n - 1`` adds per row                       ``2E - R``
ReduceL1             an abs per element + ``n - 1`` adds per row                         ``2E - R``
ReduceL2             a square per element + ``n - 1`` adds + one sqrt per row            ``2E``
ReduceLogSumExp      stable form: max (``n - 1``), subtract, exp, sum (``n - 1``),      ``4E``
                     log and add-back of the max per row
ArgMax/ArgMin        ``n - 1`` compares per row                                          ``E - R``
TopK                 binary-heap selection: each of the ``n`` elements of a row is       ``E * bits(k)``
                     compared against a heap of ``k`` whose depth is
                     ``bits(k) = floor(log2 k) + 1`` (an upper bound; the final sort
                     of the ``k`` winners, ``k log k``, is left out as ``k << n``)
CumSum/CumProd       one add (multiply) per element (the sequential scan)               ``E``
===================  ================================================================  =============

The ``axes`` of Reduce* moved from an attribute to an input at opset 13 (ReduceSum) and 18 (the others);
one rule reads either form. The axes input is metadata, not data. With ``noop_with_empty_axes=1`` and no
axes the op is the identity (a copy): 0 FLOPs. Nothing here has learned parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from estimator.cost.ops.base import NodeContext, OpCost, numel, register
from estimator.errors import GraphStructureError, ShapeError

#: Reduce op -> FLOPs as a function of (input elements E, output elements R); see the module table.
REDUCE_FLOPS: Mapping[str, Callable[[int, int], int]] = MappingProxyType(
    {
        "ReduceSum": lambda e, r: e - r,
        "ReduceMax": lambda e, r: e - r,
        "ReduceMin": lambda e, r: e - r,
        "ReduceProd": lambda e, r: e - r,
        "ReduceMean": lambda e, r: e,
        "ReduceLogSum": lambda e, r: e,
        "ReduceSumSquare": lambda e, r: 2 * e - r,
        "ReduceL1": lambda e, r: 2 * e - r,
        "ReduceL2": lambda e, r: 2 * e,
        "ReduceLogSumExp": lambda e, r: 4 * e,
    }
)


def _axes(ctx: NodeContext) -> tuple[int, ...] | None:
    """Reduce axes from the attribute (old opsets) or the constant input 1; None when not known."""
    if ctx.has_input(1):
        value = ctx.const(1)
        return None if value is None else tuple(int(a) for a in np.asarray(value).reshape(-1))
    return tuple(int(a) for a in ctx.attr("axes", ()))


def _output_elements(ctx: NodeContext) -> int:
    """Elements of the reduced output: from its inferred shape, else from the input shape and axes."""
    info = ctx.outputs[0] if ctx.outputs else None
    if info is not None and info.shape is not None:
        return numel(info.shape)
    axes = _axes(ctx)
    if axes is None:
        ctx.out_shape(0)  # raises the ShapeError that names the node
    shape = ctx.in_shape(0)
    rank = len(shape)
    if not axes:
        return 1
    kept = set(range(rank)) - {a + rank if a < 0 else a for a in axes}
    return numel(shape[a] for a in sorted(kept))


def _is_noop(ctx: NodeContext) -> bool:
    """``noop_with_empty_axes=1`` with no axes: the reduction is the identity."""
    if not ctx.attr("noop_with_empty_axes", 0):
        return False
    axes = _axes(ctx)
    return axes is not None and len(axes) == 0


def _reduce(ctx: NodeContext) -> OpCost:
    """Reduce*: closed form in E (input elements) and R (output elements) from :data:`REDUCE_FLOPS`."""
    if _is_noop(ctx):
        return OpCost(data_inputs=(0,), param_inputs=())
    elements = ctx.in_numel(0)
    rows = _output_elements(ctx)
    flops = REDUCE_FLOPS[ctx.node.op_type](elements, rows)
    return OpCost(flops=flops, data_inputs=(0,), param_inputs=())


for _op in REDUCE_FLOPS:
    register(_op, since=1)(_reduce)


@register(["ArgMax", "ArgMin"], since=1)
def arg_reduce(ctx: NodeContext) -> OpCost:
    """ArgMax/ArgMin: ``n - 1`` compares per row, ``E - R`` in all."""
    return OpCost(flops=ctx.in_numel(0) - ctx.out_numel(0), param_inputs=())


def _topk_k(ctx: NodeContext, axis: int) -> int:
    """K of a TopK: the attribute (opset 1), the constant input 1, or the output's extent on ``axis``."""
    if not ctx.has_input(1):
        k = ctx.attr("k")
        if k is not None:
            return int(k)
    else:
        value = ctx.const(1)
        if value is not None:
            return int(np.asarray(value).reshape(-1)[0])
    return ctx.out_shape(0)[axis]


@register("TopK", since=1)
def top_k(ctx: NodeContext) -> OpCost:
    """TopK: ``n * bits(k)`` compares per row of ``n`` (heap selection, ``bits(k) = floor(log2 k) + 1``)."""
    shape = ctx.in_shape(0)
    rank = len(shape)
    axis = int(ctx.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise GraphStructureError(f"{ctx.where()}: axis {axis} is out of range for rank {rank}")
    k = _topk_k(ctx, axis)
    if k < 0:
        raise ShapeError(f"{ctx.where()}: K = {k} is negative; the model is malformed")
    return OpCost(flops=numel(shape) * int(k).bit_length(), data_inputs=(0,), param_inputs=())


@register(["CumSum", "CumProd"], since=1)
def cumulative(ctx: NodeContext) -> OpCost:
    """CumSum/CumProd: one add (multiply) per element; the axis input is metadata."""
    return OpCost(flops=ctx.in_numel(0), data_inputs=(0,), param_inputs=())
