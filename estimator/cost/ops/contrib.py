"""Cost rules for the ``com.microsoft`` contrib ops that ONNX Runtime's graph optimisers emit.

Conventions as in :mod:`estimator.cost.ops.base` (1 MAC = 2 FLOPs; a transcendental = 1 FLOP). Per-element
costs reuse the tables of the standard ops: activations from
:data:`estimator.cost.ops.elementwise.FLOPS_PER_ELEMENT` (Gelu 5, tanh-Gelu 9, Sigmoid 4), softmax 5 per
element (:mod:`estimator.cost.ops.softmax`), normalisation statistics 4 per element + 3 per row
(:mod:`estimator.cost.ops.normalization`), (de)quantization and requantization from
:mod:`estimator.cost.ops.quantized`.

Matrix products and convolutions are in :mod:`estimator.cost.ops.contrib_matmul`, attention in
:mod:`estimator.cost.ops.contrib_attention`; this module holds the shared constants, normalisation,
elementwise fusions and quantized elementwise ops.

**Normalisation and elementwise** (per element of the input; per row = per normalised vector):

==================================  =====================================================================
SkipLayerNormalization              1 (skip add) + 1 (bias, if present) + 4 + 1 + 1 (+1 with beta); 3/row
SkipSimplifiedLayerNormalization    1 (skip add) + 1 (bias, if present) + 2 + 1 + 1; 3/row
SimplifiedLayerNormalization        2 (square, sum) + 1 (normalise) + 1 (scale); 3/row (RMSNorm)
EmbedLayerNormalization             1 add per extra embedding (position, segment) + LayerNorm with beta
                                    (7); 3/row; +1 per mask element for the mask index
GroupNorm / SkipGroupNorm           4 + 3 (+4 SiLU when ``activation=1``; SkipGroupNorm +1 skip, +1 bias);
                                    3 per (n, group)
Gelu / BiasGelu                     5 / 6
FastGelu                            9 (+1 with bias)
QuickGelu                           ``x * sigmoid(alpha*x)``: 1 + 4 + 1 = 6
BiasAdd                             2 (bias, skip)
BiasSoftmax                         1 + 5
BiasSplitGelu                       per output element: 2 bias adds + Gelu 5 + 1 multiply = 8
BiasDropout                         1 (+1 residual); training mode (a constant true ``training_mode``):
                                    +2 (random draw compare, scale)
==================================  =====================================================================

**Quantized elementwise** (per output element; the arithmetic of the definition, although runtimes use a
lookup table for 8-bit unary ops): dequantize 2 per operand, the float op, quantize 4: ``QLinearAdd`` /
``QLinearMul`` 2+2+1+4 = 9, ``QLinearSigmoid`` 2+4+4 = 10, ``QLinearLeakyRelu`` 2+2+4 = 8,
``QLinearSoftmax`` 2+5+4 = 11. ``QLinearGlobalAveragePool``: 1 add per input element + requantize (4)
per output. ``QLinearAveragePool``: ``prod(kernel)`` adds + requantize per output. ``QLinearConcat``:
inputs whose scale and zero point equal the output's (known constants) are copied (0), others
requantized (2 + 4 per element). ``QuantizeLinear`` 4 / ``DequantizeLinear`` 2 per element.

Learned parameters: weights, biases, norm scales, embedding tables. Scales and zero points of quantized
ops, rotary cos/sin caches, masks and attention biases are read but are not parameters (the exception,
as in :mod:`estimator.cost.ops.quantized`: MatMulNBits' block scales and zero points are part of its weight).
``SparseAttention``, ``PackedAttention`` and the generation loops (``BeamSearch``...) have no rule.
"""

from __future__ import annotations

import numpy as np

from estimator.cost.ops.base import MS_DOMAIN, ONNX_DOMAIN, NodeContext, OpCost, numel, register
from estimator.cost.ops.elementwise import FLOPS_PER_ELEMENT, GELU_FLOPS
from estimator.cost.ops.normalization import PER_GROUP_FLOPS, STATS_FLOPS
from estimator.cost.ops.quantized import (
    DEQUANTIZE_OPS,
    QUANTIZE_OPS,
    REQUANTIZE_OPS,
)
from estimator.cost.ops.softmax import SOFTMAX_FLOPS
from estimator.errors import GraphStructureError

#: Flag of an attention node whose attended length was read from a maximum-length shared KV buffer.
FLAG_KV_UPPER_BOUND = "kv-length-upper-bound"
#: Exact Gelu ``0.5*x*(1 + erf(x/sqrt(2)))`` and its tanh approximation (FastGelu), per element.
GELU = GELU_FLOPS["none"]
FAST_GELU = GELU_FLOPS["tanh"]
SIGMOID = FLOPS_PER_ELEMENT["Sigmoid"]
#: SiLU ``x * sigmoid(x)``: sigmoid + multiply.
SILU = SIGMOID + 1
#: QuickGelu ``x * sigmoid(alpha * x)``: multiply, sigmoid, multiply.
QUICK_GELU = 1 + SIGMOID + 1
#: Rotary embedding per rotated element: ``x * cos + rotate(x) * sin``, two multiplies and an add.
ROTARY_FLOPS = 3
#: Per attention score: the ``1/sqrt(head_size)`` scaling and the softmax.
SCORE_FLOPS = 1 + SOFTMAX_FLOPS
#: Softcap ``softcap * tanh(score / softcap)`` per score: divide, tanh, multiply.
SOFTCAP_FLOPS = 3
#: Per-element FLOPs of the fused activations named by FusedConv / FusedGemm / FusedMatMulActivation.
FUSED_ACTIVATION_FLOPS = {
    **{name.lower(): FLOPS_PER_ELEMENT[name] for name in ("Relu", "Sigmoid", "Tanh", "LeakyRelu")},
    **{name.lower(): FLOPS_PER_ELEMENT[name] for name in ("HardSigmoid", "Elu", "Softsign", "Softplus")},
    "clip": 2,  # min and max
    "gelu": GELU,
    "silu": SILU,
    "swish": SILU,
}


def _present(ctx: NodeContext, *positions: int) -> tuple[int, ...]:
    """The positions among ``positions`` whose input is present."""
    return tuple(p for p in positions if ctx.has_input(p))


def _activation_flops(ctx: NodeContext) -> int:
    """Per-output FLOPs of a fused ``activation`` attribute (0 when there is none)."""
    name = ctx.attr("activation")
    if not name:
        return 0
    cost = FUSED_ACTIVATION_FLOPS.get(str(name).lower())
    if cost is None:
        raise GraphStructureError(
            f"{ctx.where()}: fused activation '{name}' is unknown; expected one of "
            f"{sorted(FUSED_ACTIVATION_FLOPS)}"
        )
    return cost


def _scalar(value: np.ndarray | None) -> int | None:
    return None if value is None or value.size != 1 else int(value.reshape(-1)[0])


def _row_bytes(ctx: NodeContext, i: int) -> int:
    """Bytes of one row (index along axis 0) of input ``i``."""
    info = ctx.inputs[i]
    shape = ctx.in_shape(i)
    return (info.nbytes or 0) // shape[0] if shape and shape[0] else 0


# ----------------------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------------------


def _rows(ctx: NodeContext, axis: int = -1) -> tuple[int, int]:
    """(elements, rows) of input 0 normalised over ``[axis, rank)``."""
    shape = ctx.in_shape(0)
    axis = axis + len(shape) if axis < 0 else axis
    row = numel(shape[axis:])
    elements = numel(shape)
    return elements, elements // row if row else 0


@register("SkipLayerNormalization", domain=MS_DOMAIN)
def skip_layer_normalization(ctx: NodeContext) -> OpCost:
    """SkipLayerNormalization: LayerNorm(input + skip + bias) * gamma + beta."""
    elements, rows = _rows(ctx)
    per_element = 1 + STATS_FLOPS + 2 + len(_present(ctx, 3, 4))
    return OpCost(flops=per_element * elements + PER_GROUP_FLOPS * rows, param_inputs=_present(ctx, 2, 3, 4))


@register("SkipSimplifiedLayerNormalization", domain=MS_DOMAIN)
def skip_simplified_layer_normalization(ctx: NodeContext) -> OpCost:
    """SkipSimplifiedLayerNormalization: RMSNorm(input + skip + bias) * gamma."""
    elements, rows = _rows(ctx)
    per_element = 1 + 2 + 2 + len(_present(ctx, 3))
    return OpCost(flops=per_element * elements + PER_GROUP_FLOPS * rows, param_inputs=_present(ctx, 2, 3))


@register("SimplifiedLayerNormalization", domain=ONNX_DOMAIN)
@register("SimplifiedLayerNormalization", domain=MS_DOMAIN)
def simplified_layer_normalization(ctx: NodeContext) -> OpCost:
    """SimplifiedLayerNormalization (RMSNorm over ``[axis, rank)``): 4 FLOPs/element + 3/row."""
    elements, rows = _rows(ctx, int(ctx.attr("axis", -1)))
    return OpCost(flops=4 * elements + PER_GROUP_FLOPS * rows, param_inputs=(1,))


@register("EmbedLayerNormalization", domain=MS_DOMAIN)
def embed_layer_normalization(ctx: NodeContext) -> OpCost:
    """EmbedLayerNormalization: gather word/position/segment rows, add, LayerNorm; mask -> mask index."""
    ids = ctx.in_shape(0)
    word = ctx.in_shape(2)
    tokens, hidden = numel(ids), word[-1]
    elements = tokens * hidden
    tables = _present(ctx, 2, 3, 4)
    per_element = (len(tables) - 1) + STATS_FLOPS + 3
    mask = ctx.in_numel(7) if ctx.has_input(7) else 0
    read_bytes = {i: min(ctx.inputs[i].nbytes or 0, tokens * _row_bytes(ctx, i)) for i in tables}
    return OpCost(
        flops=per_element * elements + PER_GROUP_FLOPS * tokens + mask,
        param_inputs=(*tables, 5, 6),
        read_bytes=read_bytes,
    )


def _group_norm_flops(ctx: NodeContext, extra_per_element: int) -> int:
    shape = ctx.in_shape(0)
    groups = int(ctx.attr("groups", 0))
    channels = shape[-1] if ctx.attr("channels_last", 1) else shape[1]
    if groups <= 0 or channels % groups:
        raise GraphStructureError(f"{ctx.where()}: groups={groups} does not divide the {channels} channels")
    per_element = STATS_FLOPS + 3 + extra_per_element + (SILU if ctx.attr("activation", 0) else 0)
    return per_element * numel(shape) + PER_GROUP_FLOPS * shape[0] * groups


@register("GroupNorm", domain=MS_DOMAIN)
def group_norm(ctx: NodeContext) -> OpCost:
    """GroupNorm (NHWC by default): 7 FLOPs/element (+4 SiLU) + 3 per (n, group)."""
    return OpCost(flops=_group_norm_flops(ctx, 0), param_inputs=(1, 2))


@register("SkipGroupNorm", domain=MS_DOMAIN)
def skip_group_norm(ctx: NodeContext) -> OpCost:
    """SkipGroupNorm: GroupNorm(X + skip + bias): GroupNorm + 1 (+1 with bias) per element."""
    return OpCost(
        flops=_group_norm_flops(ctx, 1 + len(_present(ctx, 4))), param_inputs=_present(ctx, 1, 2, 4)
    )


# ----------------------------------------------------------------------------------------------------------
# Elementwise fusions
# ----------------------------------------------------------------------------------------------------------


@register("Gelu", domain=MS_DOMAIN)
def gelu(ctx: NodeContext) -> OpCost:
    """Gelu (erf form): 5 FLOPs per element."""
    return OpCost(flops=GELU * ctx.out_numel(0), param_inputs=())


@register("BiasGelu", domain=MS_DOMAIN)
def bias_gelu(ctx: NodeContext) -> OpCost:
    """BiasGelu: Gelu(A + bias), 6 FLOPs per element."""
    return OpCost(flops=(1 + GELU) * ctx.out_numel(0), param_inputs=(1,))


@register("FastGelu", domain=MS_DOMAIN)
def fast_gelu(ctx: NodeContext) -> OpCost:
    """FastGelu: tanh-approximated Gelu (9) + 1 per element with the optional bias."""
    per_element = FAST_GELU + len(_present(ctx, 1))
    return OpCost(flops=per_element * ctx.out_numel(0), param_inputs=_present(ctx, 1))


@register("QuickGelu", domain=MS_DOMAIN)
def quick_gelu(ctx: NodeContext) -> OpCost:
    """QuickGelu ``x * sigmoid(alpha * x)``: 6 FLOPs per element."""
    return OpCost(flops=QUICK_GELU * ctx.out_numel(0), param_inputs=())


@register("BiasAdd", domain=MS_DOMAIN)
def bias_add(ctx: NodeContext) -> OpCost:
    """BiasAdd ``X + bias + skip``: 2 FLOPs per element."""
    return OpCost(flops=2 * ctx.out_numel(0), param_inputs=(1,))


@register("BiasSoftmax", domain=MS_DOMAIN)
def bias_softmax(ctx: NodeContext) -> OpCost:
    """BiasSoftmax ``softmax(data + bias)``: 1 + 5 FLOPs per element; the bias is a mask, not a parameter."""
    return OpCost(flops=(1 + SOFTMAX_FLOPS) * ctx.out_numel(0), param_inputs=())


@register("BiasSplitGelu", domain=MS_DOMAIN)
def bias_split_gelu(ctx: NodeContext) -> OpCost:
    """BiasSplitGelu ``(X + b)[..., :D/2] * Gelu((X + b)[..., D/2:])``: 8 FLOPs per output element."""
    return OpCost(flops=(2 + GELU + 1) * ctx.out_numel(0), param_inputs=(1,))


@register("BiasDropout", domain=MS_DOMAIN)
def bias_dropout(ctx: NodeContext) -> OpCost:
    """BiasDropout: ``data + bias (+ residual)``; +2 per element when training mode is a constant true."""
    training = ctx.const(4)
    per_element = 1 + len(_present(ctx, 2)) + (2 if training is not None and bool(np.all(training)) else 0)
    return OpCost(flops=per_element * ctx.out_numel(0), data_inputs=_present(ctx, 0, 1, 2), param_inputs=(1,))


# ----------------------------------------------------------------------------------------------------------
# Quantized elementwise, pooling, concatenation
# ----------------------------------------------------------------------------------------------------------


@register(["QLinearAdd", "QLinearMul"], domain=MS_DOMAIN)
def qlinear_binary(ctx: NodeContext) -> OpCost:
    """QLinearAdd / QLinearMul: dequantize both (2 + 2), operate (1), quantize (4) per output."""
    per_output = 2 * DEQUANTIZE_OPS + 1 + QUANTIZE_OPS
    return OpCost(flops=per_output * ctx.out_numel(0), param_inputs=(0, 3))


@register("QLinearSigmoid", domain=MS_DOMAIN)
def qlinear_sigmoid(ctx: NodeContext) -> OpCost:
    """QLinearSigmoid: dequantize (2), sigmoid (4), quantize (4) per element."""
    return OpCost(flops=(DEQUANTIZE_OPS + SIGMOID + QUANTIZE_OPS) * ctx.out_numel(0), param_inputs=())


@register("QLinearLeakyRelu", domain=MS_DOMAIN)
def qlinear_leaky_relu(ctx: NodeContext) -> OpCost:
    """QLinearLeakyRelu: dequantize (2), LeakyRelu (2), quantize (4) per element."""
    per_element = DEQUANTIZE_OPS + FLOPS_PER_ELEMENT["LeakyRelu"] + QUANTIZE_OPS
    return OpCost(flops=per_element * ctx.out_numel(0), param_inputs=())


@register("QLinearSoftmax", domain=MS_DOMAIN)
def qlinear_softmax(ctx: NodeContext) -> OpCost:
    """QLinearSoftmax: dequantize (2), softmax (5), quantize (4) per element."""
    return OpCost(flops=(DEQUANTIZE_OPS + SOFTMAX_FLOPS + QUANTIZE_OPS) * ctx.out_numel(0), param_inputs=())


@register("QLinearGlobalAveragePool", domain=MS_DOMAIN)
def qlinear_global_average_pool(ctx: NodeContext) -> OpCost:
    """QLinearGlobalAveragePool: 1 add per input element + requantization (4) per output."""
    return OpCost(flops=ctx.in_numel(0) + REQUANTIZE_OPS * ctx.out_numel(0), param_inputs=())


@register("QLinearAveragePool", domain=MS_DOMAIN)
def qlinear_average_pool(ctx: NodeContext) -> OpCost:
    """QLinearAveragePool: ``prod(kernel_shape)`` adds + requantization (4) per output."""
    kernel = ctx.attr("kernel_shape")
    if not kernel:
        raise GraphStructureError(f"{ctx.where()}: the required attribute kernel_shape is missing")
    return OpCost(flops=(numel(int(k) for k in kernel) + REQUANTIZE_OPS) * ctx.out_numel(0), param_inputs=())


def _same_constant(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and a.shape == b.shape and bool(np.all(a == b))


@register("QLinearConcat", domain=MS_DOMAIN)
def qlinear_concat(ctx: NodeContext) -> OpCost:
    """QLinearConcat: inputs already in the output's quantization are copied, others requantized (6/elem)."""
    y_scale, y_zp = ctx.const(0), ctx.const(1)
    data = tuple(range(2, len(ctx.inputs), 3))
    ops = 0
    for i in data:
        unchanged = _same_constant(ctx.const(i + 1), y_scale) and (
            _same_constant(ctx.const(i + 2), y_zp) or (not ctx.has_input(i + 2) and not ctx.has_input(1))
        )
        if not unchanged:
            ops += (DEQUANTIZE_OPS + QUANTIZE_OPS) * ctx.in_numel(i)
    return OpCost(flops=ops, data_inputs=data, param_inputs=())


@register("QuantizeLinear", domain=MS_DOMAIN)
def quantize_linear(ctx: NodeContext) -> OpCost:
    """QuantizeLinear (contrib form, int16/int4 capable): 4 ops per element."""
    return OpCost(flops=QUANTIZE_OPS * ctx.in_numel(0), param_inputs=())


@register("DequantizeLinear", domain=MS_DOMAIN)
def dequantize_linear(ctx: NodeContext) -> OpCost:
    """DequantizeLinear (contrib form): 2 ops per element; a dequantized constant weight is a parameter."""
    return OpCost(flops=DEQUANTIZE_OPS * ctx.in_numel(0), param_inputs=(0,))
