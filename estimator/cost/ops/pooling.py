"""Cost rules for pooling ops (ONNX default domain). No MACs: all arithmetic is in ``flops``.

* ``MaxPool`` / ``AveragePool``: ``FLOPs = output elements * kernel elements`` (one comparison or one
  addition per window tap; the average's final division takes the place of the first tap's addition).
  Padding, dilation, ``ceil_mode`` and ``count_include_pad`` change the output shape or the divisor,
  not the per-tap work, and the output shape already accounts for them. MaxPool's optional ``Indices``
  output is written but costs no arithmetic.
* ``LpPool``: per window tap ``|x|^p`` and an addition (2 FLOPs), plus the ``p``-th root per output.
* ``GlobalAveragePool`` / ``GlobalMaxPool``: one addition or comparison per *input* element (the window
  is the whole spatial extent: output elements * kernel elements = input elements).
* ``GlobalLpPool``: 2 FLOPs per input element and a root per output element.
* ``MaxUnpool``: a scatter of the input values into a zero-filled output: no arithmetic; the output is
  written in full. Its ``output_shape`` input (2) is metadata.
* ``MaxRoiPool`` / ``RoiAlign``: the area of each region of interest is only known at run time. The
  rules assume regions as large as the feature map (MaxRoiPool: each bin covers ``ceil(H/ph) *
  ceil(W/pw)`` pixels) or, for RoiAlign with adaptive sampling (``sampling_ratio = 0``), a 2x2 sampling
  grid, and flag the node ``"roi-size-unknown"``. A RoiAlign sample is bilinear: 4 weight products and
  fractional parts (8 FLOPs) and the blend of four taps (7 FLOPs), plus 1 FLOP to pool it.
"""

from __future__ import annotations

import math

from estimator.cost.ops.base import NodeContext, OpCost, numel, register
from estimator.errors import GraphStructureError

#: FLOPs of one bilinear sample pooled into a RoiAlign bin: weights (8) + blend (7) + pooling (1).
ROI_ALIGN_SAMPLE_FLOPS = 8 + 7 + 1
#: Samples per RoiAlign bin assumed when ``sampling_ratio = 0`` (adaptive): a 2x2 grid.
ROI_ALIGN_ADAPTIVE_SAMPLES = 4


def _kernel_elements(ctx: NodeContext) -> int:
    """Product of the ``kernel_shape`` attribute (required by every windowed pooling op)."""
    kernel = ctx.attr("kernel_shape")
    if kernel is None or len(kernel) == 0:
        raise GraphStructureError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}) has no 'kernel_shape' attribute; "
            "check the model with onnx.checker"
        )
    return numel(int(k) for k in kernel)


@register(["MaxPool", "AveragePool"], since=1)
def window_pool(ctx: NodeContext) -> OpCost:
    """MaxPool / AveragePool: output elements * kernel elements FLOPs."""
    return OpCost(flops=ctx.out_numel(0) * _kernel_elements(ctx))


@register("LpPool", since=1)
def lp_pool(ctx: NodeContext) -> OpCost:
    """LpPool: 2 FLOPs per window tap, +1 root per output element."""
    outputs = ctx.out_numel(0)
    return OpCost(flops=outputs * (2 * _kernel_elements(ctx) + 1))


@register(["GlobalAveragePool", "GlobalMaxPool"], since=1)
def global_pool(ctx: NodeContext) -> OpCost:
    """GlobalAveragePool / GlobalMaxPool: one FLOP per input element."""
    return OpCost(flops=ctx.in_numel(0))


@register("GlobalLpPool", since=1)
def global_lp_pool(ctx: NodeContext) -> OpCost:
    """GlobalLpPool: 2 FLOPs per input element, +1 root per output element."""
    return OpCost(flops=2 * ctx.in_numel(0) + ctx.out_numel(0))


@register("MaxUnpool", since=9)
def max_unpool(ctx: NodeContext) -> OpCost:
    """MaxUnpool: a scatter, no arithmetic; reads X and the indices, writes the full output."""
    return OpCost(data_inputs=(0, 1))


@register("MaxRoiPool", since=1)
def max_roi_pool(ctx: NodeContext) -> OpCost:
    """MaxRoiPool: per output, one comparison per pixel of a bin as large as map / pooled_shape (a bound)."""
    height, width = ctx.in_shape(0)[2:4]
    pooled = ctx.attr("pooled_shape")
    if pooled is None or len(pooled) != 2:
        raise GraphStructureError(f"node '{ctx.node.name}' (MaxRoiPool) needs a 2-element 'pooled_shape'")
    bin_pixels = math.ceil(height / int(pooled[0])) * math.ceil(width / int(pooled[1]))
    return OpCost(flops=ctx.out_numel(0) * bin_pixels, flags=("roi-size-unknown",))


@register("RoiAlign", since=10)
def roi_align(ctx: NodeContext) -> OpCost:
    """RoiAlign: per output, ``sampling_ratio**2`` bilinear samples of 16 FLOPs (2x2 when adaptive)."""
    ratio = int(ctx.attr("sampling_ratio", 0))
    samples = ratio * ratio if ratio > 0 else ROI_ALIGN_ADAPTIVE_SAMPLES
    flags = () if ratio > 0 else ("roi-size-unknown",)
    return OpCost(flops=ctx.out_numel(0) * samples * ROI_ALIGN_SAMPLE_FLOPS, flags=flags)
