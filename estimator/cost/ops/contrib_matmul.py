"""Cost rules for the ``com.microsoft`` matrix products and convolutions (conventions as in
:mod:`estimator.cost.ops.contrib`).

**Matrix products** (``numel(Y) * K`` MACs, ``K`` the contracted length):

* ``FusedMatMul`` / ``TransposeMatMul``: numpy matmul after ``transA``/``transB`` (and ``transBatchA/B``,
  which move axis 0 before the last axis); +1 FLOP per output when ``alpha != 1``.
  ``FusedMatMulActivation``: the same + its activation.
* ``FusedGemm``: Gemm's cost (C add, ``alpha``/``beta`` scalings) + the activation per output.
* ``FusedConv`` / ``NhwcConv``: ``numel(Y) * numel(W) / Cout`` MACs (NCHW or NHWC output alike); +1 per
  output for the bias ``B``, +1 for the fused sum ``Z``, + the activation.
* ``GemmFastGelu``: MatMul + bias (1) + tanh-Gelu (9) per output.
* ``MatMulNBits``: ``numel(A) * N`` MACs against ``bits``-bit block-quantized weights; dequantizing the
  ``N*K`` weights costs 2 per weight (subtract zero point, multiply by the block scale); +1 per output for
  the bias. The weight input is already packed (``uint8`` blobs), so its bytes are the packed size; its
  parameters are the ``N*K`` logical weights (block scales and zero points belong to their encoding).
* ``MatMulIntegerToFloat``: integer MACs + 1 op per element of each operand with a zero point + 1 per
  output (scale) + 1 per output for the bias. ``DynamicQuantizeMatMul``: the same after quantizing ``A``
  (6 ops per element: min, max, quantize). ``QGemm``: integer MACs + zero points + requantization (4 per
  output, or 1 scale per output for a float output) + 1 per output for ``C``.
"""

from __future__ import annotations

from estimator.cost.ops.base import MS_DOMAIN, NodeContext, OpCost, numel, register
from estimator.cost.ops.contrib import FAST_GELU, _activation_flops, _present
from estimator.cost.ops.matmul import gemm_epilogue_per_output, gemm_macs
from estimator.cost.ops.quantized import DEQUANTIZE_OPS, DYNAMIC_QUANTIZE_OPS, REQUANTIZE_OPS, zero_point_ops
from estimator.errors import GraphStructureError

# ----------------------------------------------------------------------------------------------------------
# Matrix products and convolutions
# ----------------------------------------------------------------------------------------------------------


def _fused_matmul_macs(ctx: NodeContext) -> int:
    """MACs of FusedMatMul: numel(Y) * K, K read from A after its transposes."""
    a = ctx.in_shape(0)
    if len(a) == 1:
        k = a[0]
    elif not ctx.attr("transA", 0):
        k = a[-1]
    elif ctx.attr("transBatchA", 0) and len(a) >= 3:
        k = a[0]
    else:
        k = a[-2]
    return ctx.out_numel(0) * k


@register(["FusedMatMul", "TransposeMatMul", "FusedMatMulActivation"], domain=MS_DOMAIN)
def fused_matmul(ctx: NodeContext) -> OpCost:
    """FusedMatMul: numpy matmul after transposes; +1/output for ``alpha != 1``, + the activation."""
    macs = _fused_matmul_macs(ctx)
    per_output = (1 if float(ctx.attr("alpha", 1.0)) != 1.0 else 0) + _activation_flops(ctx)
    return OpCost(macs=macs, flops=2 * macs + per_output * ctx.out_numel(0))


@register("FusedGemm", domain=MS_DOMAIN)
def fused_gemm(ctx: NodeContext) -> OpCost:
    """FusedGemm: ``M*K*N`` MACs; +1/output for C, ``alpha != 1``, ``beta != 1`` (with C); + activation."""
    macs = gemm_macs(ctx)
    per_output = _activation_flops(ctx) + gemm_epilogue_per_output(ctx)
    return OpCost(macs=macs, flops=2 * macs + per_output * ctx.out_numel(0), param_inputs=_present(ctx, 1, 2))


def _conv_macs(ctx: NodeContext) -> int:
    """MACs of a convolution in either layout: every output element is a dot product over numel(W)/Cout."""
    w = ctx.in_shape(1)
    if len(w) < 3 or w[0] == 0:
        raise GraphStructureError(f"{ctx.where()}: weight shape {w} does not describe a convolution")
    return ctx.out_numel(0) * (numel(w) // w[0])


@register("FusedConv", domain=MS_DOMAIN)
def fused_conv(ctx: NodeContext) -> OpCost:
    """FusedConv: conv MACs; +1/output for B and for Z (fused sum); + the activation per output."""
    macs = _conv_macs(ctx)
    per_output = len(_present(ctx, 2, 3)) + _activation_flops(ctx)
    return OpCost(macs=macs, flops=2 * macs + per_output * ctx.out_numel(0), param_inputs=_present(ctx, 1, 2))


@register("NhwcConv", domain=MS_DOMAIN)
def nhwc_conv(ctx: NodeContext) -> OpCost:
    """NhwcConv: conv MACs (channels-last output); +1/output for the bias."""
    macs = _conv_macs(ctx)
    per_output = len(_present(ctx, 2))
    return OpCost(macs=macs, flops=2 * macs + per_output * ctx.out_numel(0), param_inputs=_present(ctx, 1, 2))


@register("GemmFastGelu", domain=MS_DOMAIN)
def gemm_fast_gelu(ctx: NodeContext) -> OpCost:
    """GemmFastGelu: MatMul ``numel(Y)*K`` MACs + bias (1) + tanh-Gelu (9) per output."""
    outputs = ctx.out_numel(0)
    macs = outputs * ctx.in_shape(0)[-1]
    per_output = FAST_GELU + len(_present(ctx, 2))
    return OpCost(macs=macs, flops=2 * macs + per_output * outputs, param_inputs=_present(ctx, 1, 2))


@register("MatMulNBits", domain=MS_DOMAIN)
def matmul_nbits(ctx: NodeContext) -> OpCost:
    """MatMulNBits: ``numel(A) * N`` MACs + 2 FLOPs per weight to dequantize + 1/output for the bias."""
    k, n = ctx.attr("K"), ctx.attr("N")
    if k is None or n is None:
        raise GraphStructureError(f"{ctx.where()}: the required attributes K and N are missing")
    macs = ctx.in_numel(0) * int(n)
    dequantize = DEQUANTIZE_OPS * int(n) * int(k)
    bias = ctx.out_numel(0) if ctx.has_input(5) else 0
    # Parameters are the N*K logical weights (and the bias), not the packed uint8 elements of the blob.
    logical = {1: int(n) * int(k), 2: 0, 3: 0}
    return OpCost(
        macs=macs,
        flops=2 * macs + dequantize + bias,
        param_inputs=_present(ctx, 1, 2, 3, 5),
        param_elements={i: v for i, v in logical.items() if ctx.has_input(i)},
    )


@register("MatMulIntegerToFloat", domain=MS_DOMAIN)
def matmul_integer_to_float(ctx: NodeContext) -> OpCost:
    """MatMulIntegerToFloat: integer MACs + zero points + 1 scale/output + 1 bias/output."""
    outputs = ctx.out_numel(0)
    macs = outputs * ctx.in_shape(0)[-1]
    ops = 2 * macs + zero_point_ops(ctx, ((0, 4), (1, 5))) + outputs * (1 + len(_present(ctx, 6)))
    return OpCost(macs=macs, flops=ops, param_inputs=_present(ctx, 1, 6))


@register("DynamicQuantizeMatMul", domain=MS_DOMAIN)
def dynamic_quantize_matmul(ctx: NodeContext) -> OpCost:
    """DynamicQuantizeMatMul: quantize A (6/element) + integer MACs + zero point + scale + bias."""
    outputs = ctx.out_numel(0)
    macs = outputs * ctx.in_shape(0)[-1]
    ops = (
        DYNAMIC_QUANTIZE_OPS * ctx.in_numel(0)
        + 2 * macs
        + zero_point_ops(ctx, ((1, 3),))
        + outputs * (1 + len(_present(ctx, 4)))
    )
    return OpCost(macs=macs, flops=ops, param_inputs=_present(ctx, 1, 4))


@register("QGemm", domain=MS_DOMAIN)
def qgemm(ctx: NodeContext) -> OpCost:
    """QGemm: integer ``M*K*N`` MACs + zero points + requantization (or a float scale) + C."""
    outputs = ctx.out_numel(0)
    macs = gemm_macs(ctx)
    per_output = (REQUANTIZE_OPS if ctx.has_input(7) else 1) + len(_present(ctx, 6))
    ops = 2 * macs + zero_point_ops(ctx, ((0, 2), (3, 5))) + per_output * outputs
    return OpCost(macs=macs, flops=ops, param_inputs=_present(ctx, 3, 6))
