"""Cost rules for convolutions: Conv, ConvTranspose, DeformConv (ONNX default domain).

Counting (1 MAC = 2 FLOPs, see :mod:`estimator.cost.ops.base`):

* ``Conv``: ``MACs = N * Cout * prod(out spatial) * (Cin / group) * prod(kernel)``. The kernel size and
  ``Cin / group`` are read from the weight's shape ``(Cout, Cin/group, k1, k2, ...)``, so groups,
  depthwise convolution, dilation, strides and padding (``pads`` or ``auto_pad``) are all accounted for
  through the output shape that ONNX shape inference computed. Padding taps are counted as MACs: a
  dense kernel multiplies them too. The bias ``B`` adds 1 FLOP per output element.
* ``ConvTranspose``: every input pixel scatters its ``Cout/group * prod(kernel)`` products into the
  output, so ``MACs = N * Cin * prod(in spatial) * (Cout / group) * prod(kernel)``; the weight's shape is
  ``(Cin, Cout/group, k1, k2, ...)``. The bias adds 1 FLOP per output element.
* ``DeformConv`` (opset 19): the convolution's MACs plus bilinear sampling. Per input channel, output
  position and kernel tap: :data:`BILINEAR_TAP_FLOPS` FLOPs to blend the four neighbours (and 1 more
  multiply with a mask). Per offset group, output position and tap: :data:`BILINEAR_WEIGHT_FLOPS` FLOPs
  to compute the four bilinear weights, shared by the group's channels.

Learned parameters: the weight ``W`` (input 1) and the bias ``B`` (input 2).
"""

from __future__ import annotations

from estimator.cost.ops.base import NodeContext, OpCost, numel, register
from estimator.errors import GraphStructureError

#: Blending four neighbours with known weights: 4 multiplies + 3 additions.
BILINEAR_TAP_FLOPS = 7
#: Bilinear weights of one sample point: 2 fractional parts, 2 complements (1 - f), 4 products.
BILINEAR_WEIGHT_FLOPS = 8


def conv_macs(ctx: NodeContext, x: int = 0, w: int = 1, y: int = 0) -> int:
    """MACs of a (possibly grouped) forward convolution.

    Args:
        ctx: the node's context.
        x: position of the data input ``X`` (N, Cin, d1, ...).
        w: position of the weight ``W`` (Cout, Cin/group, k1, ...).
        y: position of the output ``Y`` (N, Cout, o1, ...).

    Returns:
        multiply-accumulates: ``N * Cout * prod(out spatial) * (Cin/group) * prod(kernel)``.
    """
    w_shape = ctx.in_shape(w)
    out = ctx.out_shape(y)
    if len(w_shape) < 3 or len(out) != len(w_shape):
        raise GraphStructureError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): weight shape {w_shape} and output shape {out} "
            "do not describe a convolution; check the model with onnx.checker"
        )
    batch, c_out, spatial = out[0], out[1], out[2:]
    c_in_per_group, kernel = w_shape[1], w_shape[2:]
    return batch * c_out * numel(spatial) * c_in_per_group * numel(kernel)


def _bias_flops(ctx: NodeContext, position: int) -> int:
    """1 FLOP per output element when the bias input at ``position`` is present."""
    return ctx.out_numel(0) if ctx.has_input(position) else 0


def _params(ctx: NodeContext, *positions: int) -> tuple[int, ...]:
    """The positions among ``positions`` whose input is present."""
    return tuple(p for p in positions if ctx.has_input(p))


@register("Conv", since=1)
def conv(ctx: NodeContext) -> OpCost:
    """Conv (opsets 1, 11, 22 share the formula): conv MACs, +1 FLOP per output element for the bias."""
    macs = conv_macs(ctx)
    return OpCost(macs=macs, flops=2 * macs + _bias_flops(ctx, 2), param_inputs=_params(ctx, 1, 2))


@register("ConvTranspose", since=1)
def conv_transpose(ctx: NodeContext) -> OpCost:
    """ConvTranspose: ``N * Cin * prod(in spatial) * (Cout/group) * prod(kernel)`` MACs, +bias per output."""
    x_shape = ctx.in_shape(0)
    w_shape = ctx.in_shape(1)
    if len(w_shape) < 3 or len(x_shape) != len(w_shape):
        raise GraphStructureError(
            f"node '{ctx.node.name}' (ConvTranspose): input shape {x_shape} and weight shape {w_shape} "
            "do not describe a transposed convolution; check the model with onnx.checker"
        )
    batch, c_in, in_spatial = x_shape[0], x_shape[1], x_shape[2:]
    c_out_per_group, kernel = w_shape[1], w_shape[2:]
    macs = batch * c_in * numel(in_spatial) * c_out_per_group * numel(kernel)
    return OpCost(macs=macs, flops=2 * macs + _bias_flops(ctx, 2), param_inputs=_params(ctx, 1, 2))


@register("DeformConv", since=19)
def deform_conv(ctx: NodeContext) -> OpCost:
    """DeformConv: conv MACs plus one bilinear sample per (input channel, output position, kernel tap).

    Inputs: X, W, offset, B (optional), mask (optional). The mask multiplies every sample once more.
    """
    macs = conv_macs(ctx)
    out = ctx.out_shape(0)
    points = out[0] * numel(out[2:]) * numel(ctx.in_shape(1)[2:])
    c_in = ctx.in_shape(0)[1]
    offset_groups = int(ctx.attr("offset_group", 1))
    per_channel_sample = BILINEAR_TAP_FLOPS + (1 if ctx.has_input(4) else 0)
    sampling = points * (c_in * per_channel_sample + offset_groups * BILINEAR_WEIGHT_FLOPS)
    flops = 2 * macs + sampling + _bias_flops(ctx, 3)
    return OpCost(macs=macs, flops=flops, param_inputs=_params(ctx, 1, 3))
