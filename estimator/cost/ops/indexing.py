"""Cost rules for gathers, scatters and other indexing ops of the ONNX default domain.

These ops move bytes; they do arithmetic only where the op reduces (a scatter with ``reduction``) or
tests values (``NonZero``, ``Unique``). Bytes:

* ``Gather``/``GatherElements``/``GatherND`` read from their data input only the gathered elements
  (``numel(output) * itemsize``, i.e. ``numel(indices) * row_bytes`` for ``Gather``), capped at the size
  of the whole table (a row gathered twice is served from cache). This is what makes an LLM's embedding
  table cost its parameter count but not a read of the whole table per token. The indices are read whole.
* ``Scatter``/``ScatterElements``/``ScatterND`` produce a copy of ``data`` with ``updates`` written into it:
  every input is read, the output is written. ``reduction`` (add/mul/max/min, opset 16/18) adds one op per
  update element.
* ``TensorScatter`` (opset 24) is the in-place KV-cache update it was designed for: it reads the update
  and the write indices and writes only the updated slots; the cache itself is neither read nor copied.
* ``OneHot`` reads its indices and the two-element ``values`` and writes its output; ``depth`` is metadata.
* ``NonZero``, ``Compress`` (with a non-constant condition) and ``Unique`` have data-dependent output shapes.
  When ONNX shape inference cannot give the output size the write is the upper bound (every element
  selected / distinct) and the flag ``"data-dependent-shape"`` marks the figure as a bound.

FLOPs: ``NonZero`` one compare per input element; ``Unique`` a comparison sort, ``n * ceil(log2 n)``
compares over the ``n`` items (elements, or slices along ``axis``); scatters with a reduction one op per
update element; everything else 0.

Parameters: the data input of ``Gather`` (an embedding table) and of ``GatherElements``/``GatherND`` is a
learned weight when it is a floating-point constant with more than one element (see
:func:`estimator.cost.ops.elementwise.weight_like_inputs`); integer lookup tables are not. Caveat: a
precomputed rotary cos/sin cache gathered by position ids is a float buffer and is counted as one too.
"""

from __future__ import annotations

import math

from estimator.cost.ops.base import NodeContext, OpCost, numel, register
from estimator.cost.ops.elementwise import weight_like_inputs
from estimator.dtypes import storage_bytes
from estimator.errors import GraphStructureError

#: Flag for an output whose size depends on the values of the input (the figure is an upper bound).
DATA_DEPENDENT_SHAPE = "data-dependent-shape"
#: Bytes of one int64 index, the element type of NonZero's and Unique's index outputs.
INT64_BYTES = 8


def _dtype(ctx: NodeContext, i: int) -> str:
    info = ctx.inputs[i]
    return info.dtype if info is not None else "undefined"


def _gathered_read(ctx: NodeContext, elements: int) -> dict[int, int]:
    """Bytes read from data input 0 when ``elements`` of it are gathered, capped at the whole tensor."""
    dtype = _dtype(ctx, 0)
    return {0: min(storage_bytes(elements, dtype), storage_bytes(ctx.in_numel(0), dtype))}


def _known_out_shape(ctx: NodeContext, i: int) -> tuple[int, ...] | None:
    info = ctx.outputs[i] if i < len(ctx.outputs) else None
    return None if info is None else info.shape


@register("Gather", since=1)
def gather(ctx: NodeContext) -> OpCost:
    """Gather: reads ``numel(indices) * row_bytes`` of the table (capped at the table), writes the output."""
    shape = ctx.in_shape(0)
    rank = len(shape)
    axis = int(ctx.attr("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise GraphStructureError(f"{ctx.where()}: axis {axis} is out of range for data rank {rank}")
    row_elements = numel(shape) // shape[axis] if shape[axis] else 0
    gathered = ctx.in_numel(1) * row_elements
    return OpCost(read_bytes=_gathered_read(ctx, gathered), param_inputs=weight_like_inputs(ctx, (0,)))


@register(["GatherElements", "GatherND"], since=1)
def gather_elements(ctx: NodeContext) -> OpCost:
    """GatherElements/GatherND: reads the gathered ``numel(output)`` elements of the data, writes them."""
    return OpCost(
        read_bytes=_gathered_read(ctx, ctx.out_numel(0)), param_inputs=weight_like_inputs(ctx, (0,))
    )


@register(["Scatter", "ScatterElements", "ScatterND"], since=1)
def scatter(ctx: NodeContext) -> OpCost:
    """Scatter*: copy of the data with the updates written in; one op per update with a ``reduction``."""
    flops = 0 if ctx.attr("reduction", "none") == "none" else ctx.in_numel(2)
    return OpCost(flops=flops, param_inputs=())


@register("TensorScatter", since=24)
def tensor_scatter(ctx: NodeContext) -> OpCost:
    """TensorScatter: in-place cache update; reads the update (and indices), writes only the update."""
    data_inputs = (1, 2) if ctx.has_input(2) else (1,)
    update_bytes = storage_bytes(ctx.in_numel(1), _dtype(ctx, 1))
    return OpCost(data_inputs=data_inputs, param_inputs=(), write_bytes=update_bytes)


@register("OneHot", since=9)
def one_hot(ctx: NodeContext) -> OpCost:
    """OneHot: reads indices and the two ``values``, writes the output; ``depth`` is metadata."""
    return OpCost(data_inputs=(0, 2), param_inputs=())


@register("NonZero", since=9)
def non_zero(ctx: NodeContext) -> OpCost:
    """NonZero: one compare per element; writes ``rank x nnz`` int64 (upper bound ``nnz = numel``)."""
    elements = ctx.in_numel(0)
    out = _known_out_shape(ctx, 0)
    if out is not None:
        return OpCost(flops=elements, param_inputs=())
    rank = len(ctx.in_shape(0))
    return OpCost(
        flops=elements,
        param_inputs=(),
        write_bytes=max(rank, 1) * elements * INT64_BYTES,
        flags=(DATA_DEPENDENT_SHAPE,),
    )


@register("Compress", since=9)
def compress(ctx: NodeContext) -> OpCost:
    """Compress: reads input and condition, writes the kept slices (upper bound: all, when unknown)."""
    if _known_out_shape(ctx, 0) is not None:
        return OpCost(param_inputs=())
    upper = storage_bytes(ctx.in_numel(0), _dtype(ctx, 0))
    return OpCost(param_inputs=(), write_bytes=upper, flags=(DATA_DEPENDENT_SHAPE,))


@register("Unique", since=11)
def unique(ctx: NodeContext) -> OpCost:
    """Unique: ``n * ceil(log2 n)`` compares (a sort); writes up to four outputs, bounded when unknown."""
    shape = ctx.in_shape(0)
    elements = numel(shape)
    axis = ctx.attr("axis")
    if axis is None:
        items = elements
    else:
        rank = len(shape)
        axis = int(axis) + rank if int(axis) < 0 else int(axis)
        if not 0 <= axis < rank:
            raise GraphStructureError(f"{ctx.where()}: axis {axis} is out of range for rank {rank}")
        items = shape[axis]
    flops = items * math.ceil(math.log2(items)) if items > 1 else 0
    outputs = [o for o in ctx.outputs if o is not None]
    if all(o.shape is not None for o in outputs):
        return OpCost(flops=flops, param_inputs=())
    # Upper bounds: Y <= X; indices, inverse_indices, counts <= one int64 per item.
    bounds = [storage_bytes(elements, _dtype(ctx, 0))] + [items * INT64_BYTES] * 3
    written = sum(
        (o.nbytes if o.shape is not None else bound) or 0
        for o, bound in zip(ctx.outputs, bounds, strict=False)
        if o is not None
    )
    return OpCost(flops=flops, param_inputs=(), write_bytes=written, flags=(DATA_DEPENDENT_SHAPE,))
