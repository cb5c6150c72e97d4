"""Weight-only quantised lookups: ONNX Runtime's ``GatherBlockQuantized`` (com.microsoft).

``GatherBlockQuantized(data, indices, scales[, zero_points])`` gathers rows of a block-quantised table (the
token embedding of int4 LLM exports from ONNX Runtime GenAI's model builder) and dequantises them. Per the
op's schema: ``data`` is ``int4``/``uint4``, or ``uint8`` holding ``8 / bits`` values per byte along the last
axis; ``quantize_axis`` must be the last axis; each ``block_size`` values along it share one scale (and one
zero point, packed like the data); ``gather_axis`` (default 0) selects rows. The output has ``data``'s
shape with the gather axis replaced by ``indices``' shape and the packed last axis unpacked, in the scales'
float type.

Cost, for ``R`` gathered rows of ``K`` values (``numel(output) = R * K``):

* FLOPs: 2 per output element (subtract the zero point, multiply by the scale; the dequantisation count of
  :data:`estimator.cost.ops.quantized.DEQUANTIZE_OPS`); no MACs.
* Bytes read: only the gathered rows - ``R / rows`` of ``data``, of ``scales`` and of ``zero_points`` - each
  capped at the whole tensor (as ``Gather`` reads its table); bytes written: the output.
* Parameters: ``data``, ``scales`` and ``zero_points`` when they are constants of the graph, at their
  stored (packed) size.
"""

from __future__ import annotations

from estimator.cost.ops.base import MS_DOMAIN, NodeContext, OpCost, numel, register
from estimator.cost.ops.quantized import DEQUANTIZE_OPS
from estimator.dtypes import storage_bytes
from estimator.errors import GraphStructureError


def _gathered(ctx: NodeContext, i: int, rows: int, gathered_rows: int) -> int:
    """Bytes of input ``i`` read for ``gathered_rows`` of its ``rows`` rows (all of it at most)."""
    info = ctx.inputs[i]
    dtype = info.dtype if info is not None else "undefined"
    whole = storage_bytes(ctx.in_numel(i), dtype)
    return min(whole, -(-whole * gathered_rows // rows)) if rows else whole


@register("GatherBlockQuantized", domain=MS_DOMAIN)
def gather_block_quantized(ctx: NodeContext) -> OpCost:
    """GatherBlockQuantized: 2 FLOPs per output element; reads the gathered rows of data/scales/zero points."""
    shape = ctx.in_shape(0)
    axis = int(ctx.attr("gather_axis", 0))
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis < len(shape) - 1:
        raise GraphStructureError(
            f"{ctx.where()}: gather_axis {axis} must be a leading axis of data of rank {len(shape)}"
        )
    gathered = ctx.in_numel(1) * (numel(shape[:axis]) if axis else 1)
    total_rows = numel(shape[: axis + 1])
    reads = {0: _gathered(ctx, 0, total_rows, gathered), 2: _gathered(ctx, 2, total_rows, gathered)}
    if ctx.has_input(3):
        reads[3] = _gathered(ctx, 3, total_rows, gathered)
    params = (0, 2, 3) if ctx.has_input(3) else (0, 2)
    return OpCost(
        flops=DEQUANTIZE_OPS * ctx.out_numel(0),
        param_inputs=params,
        read_bytes=reads,
    )
