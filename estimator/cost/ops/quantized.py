"""Cost rules for quantized ops of the ONNX default domain.

Integer kernels count integer operations in ``flops`` (``OpCost.flops`` is "arithmetic operations"),
with the same convention: 1 multiply-add = 1 MAC = 2 ops.

* ``ConvInteger`` / ``MatMulInteger``: the MACs of their float forms (see :mod:`estimator.cost.ops.conv`
  and :mod:`estimator.cost.ops.matmul`); +1 op per element of each operand that has a zero point (the
  subtraction ``x - x_zero_point``). Output is int32: no requantization.
* ``QLinearConv`` / ``QLinearMatMul``: the same MACs and zero-point subtractions, plus
  :data:`REQUANTIZE_OPS` ops per output element (multiply by ``x_scale * w_scale / y_scale``, round,
  add ``y_zero_point``, saturate) and, for ``QLinearConv`` with the int32 bias ``B``, 1 add per output.
* ``QuantizeLinear``: :data:`QUANTIZE_OPS` per element (divide by the scale, round, add the zero
  point, saturate).
* ``DequantizeLinear``: :data:`DEQUANTIZE_OPS` per element (subtract the zero point, multiply by the
  scale).
* ``DynamicQuantizeLinear``: :data:`DYNAMIC_QUANTIZE_OPS` per element (a min and a max over the tensor,
  then quantization); the handful of scalar ops computing scale and zero point are not counted.

Learned parameters: the weights (``W`` of the convolutions, a constant operand of the matrix
products) and ``QLinearConv``'s bias. Scales and zero points are read but are not parameters.
The ``com.microsoft`` quantized ops (QLinearAdd, QLinearConcat, ...) are costed in their own module.
"""

from __future__ import annotations

from collections.abc import Iterable

from estimator.cost.ops.base import NodeContext, OpCost, register
from estimator.cost.ops.conv import conv_macs

#: Requantizing one int32 accumulator: multiply by the combined scale, round, add zero point, saturate.
REQUANTIZE_OPS = 4
#: Quantizing one element: divide by the scale, round, add the zero point, saturate.
QUANTIZE_OPS = 4
#: Dequantizing one element: subtract the zero point, multiply by the scale.
DEQUANTIZE_OPS = 2
#: Dynamic quantization of one element: min and max reductions (2) + :data:`QUANTIZE_OPS`.
DYNAMIC_QUANTIZE_OPS = 2 + QUANTIZE_OPS


def zero_point_ops(ctx: NodeContext, pairs: Iterable[tuple[int, int]]) -> int:
    """One subtraction per element of each operand whose zero-point input is present.

    Args:
        ctx: the node's context.
        pairs: (operand position, zero-point position) pairs.
    """
    return sum(ctx.in_numel(operand) for operand, zp in pairs if ctx.has_input(zp))


def _matmul_macs(ctx: NodeContext, a: int) -> int:
    """MACs of a numpy-style matrix product whose first operand is input ``a``: numel(Y) * K."""
    return ctx.out_numel(0) * ctx.in_shape(a)[-1]


@register("ConvInteger", since=10)
def conv_integer(ctx: NodeContext) -> OpCost:
    """ConvInteger (x, w, x_zero_point, w_zero_point): conv MACs + zero-point subtractions."""
    macs = conv_macs(ctx, x=0, w=1)
    ops = 2 * macs + zero_point_ops(ctx, ((0, 2), (1, 3)))
    return OpCost(macs=macs, flops=ops, param_inputs=(1,))


@register("QLinearConv", since=10)
def qlinear_conv(ctx: NodeContext) -> OpCost:
    """QLinearConv (x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, B): conv MACs + zero points + requantization."""
    macs = conv_macs(ctx, x=0, w=3)
    outputs = ctx.out_numel(0)
    has_bias = ctx.has_input(8)
    ops = (
        2 * macs
        + zero_point_ops(ctx, ((0, 2), (3, 5)))
        + REQUANTIZE_OPS * outputs
        + (outputs if has_bias else 0)
    )
    return OpCost(macs=macs, flops=ops, param_inputs=(3, 8) if has_bias else (3,))


@register("MatMulInteger", since=10)
def matmul_integer(ctx: NodeContext) -> OpCost:
    """MatMulInteger (A, B, a_zero_point, b_zero_point): matmul MACs + zero-point subtractions."""
    macs = _matmul_macs(ctx, 0)
    ops = 2 * macs + zero_point_ops(ctx, ((0, 2), (1, 3)))
    return OpCost(macs=macs, flops=ops, param_inputs=(0, 1))


@register("QLinearMatMul", since=10)
def qlinear_matmul(ctx: NodeContext) -> OpCost:
    """QLinearMatMul (a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp): matmul MACs + zero points + requantization."""
    macs = _matmul_macs(ctx, 0)
    ops = 2 * macs + zero_point_ops(ctx, ((0, 2), (3, 5))) + REQUANTIZE_OPS * ctx.out_numel(0)
    return OpCost(macs=macs, flops=ops, param_inputs=(0, 3))


@register("QuantizeLinear", since=10)
def quantize_linear(ctx: NodeContext) -> OpCost:
    """QuantizeLinear (all opsets, per-tensor, per-axis or blocked): 4 ops per element."""
    return OpCost(flops=QUANTIZE_OPS * ctx.in_numel(0), param_inputs=())


@register("DequantizeLinear", since=10)
def dequantize_linear(ctx: NodeContext) -> OpCost:
    """DequantizeLinear (all opsets): 2 ops per element.

    A dequantized constant weight is a parameter (input 0); scales and zero points are not.
    """
    return OpCost(flops=DEQUANTIZE_OPS * ctx.in_numel(0), param_inputs=(0,))


@register("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(ctx: NodeContext) -> OpCost:
    """DynamicQuantizeLinear: min/max reduction + quantization, 6 ops per element."""
    return OpCost(flops=DYNAMIC_QUANTIZE_OPS * ctx.in_numel(0), param_inputs=())
