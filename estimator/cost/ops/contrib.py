"""Cost rules for the ``com.microsoft`` contrib ops that ONNX Runtime's graph optimisers emit.

Conventions as in :mod:`estimator.cost.ops.base` (1 MAC = 2 FLOPs; a transcendental = 1 FLOP). Per-element
costs reuse the tables of the standard ops: activations from
:data:`estimator.cost.ops.elementwise.FLOPS_PER_ELEMENT` (Gelu 5, tanh-Gelu 9, Sigmoid 4), softmax 5 per
element (:mod:`estimator.cost.ops.softmax`), normalisation statistics 4 per element + 3 per row
(:mod:`estimator.cost.ops.normalization`), (de)quantization and requantization from
:mod:`estimator.cost.ops.quantized`.

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
  the bias. The weight input is already packed (``uint8`` blobs), so its bytes are the packed size.
* ``MatMulIntegerToFloat``: integer MACs + 1 op per element of each operand with a zero point + 1 per
  output (scale) + 1 per output for the bias. ``DynamicQuantizeMatMul``: the same after quantizing ``A``
  (6 ops per element: min, max, quantize). ``QGemm``: integer MACs + zero points + requantization (4 per
  output, or 1 scale per output for a float output) + 1 per output for ``C``.

**Attention.** With ``B`` batch, ``N`` heads, ``S`` query length, ``T`` attended key length (past + new),
``Hq`` / ``Hv`` head sizes: ``Q*K^T`` and ``P*V`` are ``B*N*S*T*(Hq + Hv)`` MACs; per score ``B*N*S*T``:
1 (scale) + 5 (softmax) + 1 per additive mask or bias present (+3 for a ``softcap``: divide, tanh,
multiply). Causal masking is index arithmetic and costs nothing, and the full ``S x T`` score matrix is
counted (kernels that skip the masked half do less). ``Attention`` adds its input projection
``B*S*Din*(Dq + Dk + Dv)`` MACs and 1 bias add per projected element; ``MultiHeadAttention`` and
``DecoderMaskedMultiHeadAttention`` add 1 per Q/K/V element for their bias input. Rotary embedding
(``do_rotary``, ``RotaryEmbedding``) costs 3 FLOPs per rotated element (``x*cos + rot(x)*sin``).
When the attended length comes from a shared past/present buffer of maximum length, the node is flagged
``kv-length-upper-bound``. ``GroupQueryAttention`` with ``local_window_size = W > 0`` attends at most
``W`` keys per query.

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
from estimator.cost.ops.matmul import gemm_epilogue_per_output, gemm_macs
from estimator.cost.ops.normalization import PER_GROUP_FLOPS, STATS_FLOPS
from estimator.cost.ops.quantized import (
    DEQUANTIZE_OPS,
    DYNAMIC_QUANTIZE_OPS,
    QUANTIZE_OPS,
    REQUANTIZE_OPS,
    zero_point_ops,
)
from estimator.cost.ops.softmax import SOFTMAX_FLOPS
from estimator.errors import GraphStructureError
from estimator.graph.contrib_shapes import mha_dims

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
    return OpCost(macs=macs, flops=2 * macs + dequantize + bias, param_inputs=_present(ctx, 1, 2, 3, 5))


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


# ----------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------


def _attention_core(
    batch: int, heads: int, q_len: int, kv_len: int, qk_head: int, v_head: int, per_score: int
) -> tuple[int, int]:
    """(MACs, FLOPs) of ``softmax(Q*K^T * scale + masks) * V``.

    Args:
        batch, heads: batch size and number of query heads.
        q_len, kv_len: query length S and attended key length T.
        qk_head, v_head: head sizes of Q/K and of V.
        per_score: FLOPs per score on top of :data:`SCORE_FLOPS` (mask and bias adds, softcap).
    """
    scores = batch * heads * q_len * kv_len
    macs = scores * (qk_head + v_head)
    return macs, 2 * macs + scores * (SCORE_FLOPS + per_score)


def _num_heads(ctx: NodeContext, name: str = "num_heads") -> int:
    heads = ctx.attr(name)
    if heads is None or int(heads) <= 0:
        raise GraphStructureError(f"{ctx.where()}: attribute {name} is missing or not positive ({heads})")
    return int(heads)


def _shared_past(ctx: NodeContext, buffer_len: int, length_input: int) -> tuple[int, tuple[str, ...]]:
    """Past length of a shared past/present buffer: the ``past_sequence_length`` constant, else the buffer."""
    known = _scalar(ctx.const(length_input))
    if known is not None:
        return known, ()
    return buffer_len, (FLAG_KV_UPPER_BOUND,)


@register("Attention", domain=MS_DOMAIN)
def attention(ctx: NodeContext) -> OpCost:
    """Attention: QKV projection + ``Q*K^T`` + softmax + ``P*V`` (module docstring)."""
    x, w = ctx.in_shape(0), ctx.in_shape(1)
    if len(x) != 3 or len(w) != 2:
        raise GraphStructureError(
            f"{ctx.where()}: expected input [B, S, D] and weights [D, 3D'], got {x}, {w}"
        )
    heads = _num_heads(ctx)
    batch, seq, d_in = x
    sizes = ctx.attr("qkv_hidden_sizes")
    dq, dk, dv = (int(s) for s in sizes) if sizes else (w[1] // 3,) * 3
    past_len, flags = 0, ()
    if ctx.has_input(4):
        past = ctx.in_shape(4)
        if ctx.attr("past_present_share_buffer", 0):
            past_len, flags = _shared_past(ctx, past[3], 6)
        else:
            past_len = past[3]
    projected = batch * seq * (dq + dk + dv)
    proj_macs = projected * d_in
    per_score = len(_present(ctx, 3, 5))
    macs, flops = _attention_core(batch, heads, seq, past_len + seq, dq // heads, dv // heads, per_score)
    flops += 2 * proj_macs + (projected if ctx.has_input(2) else 0)
    if ctx.attr("do_rotary", 0):
        flops += ROTARY_FLOPS * batch * seq * (dq + dk)
    return OpCost(macs=proj_macs + macs, flops=flops, param_inputs=_present(ctx, 1, 2), flags=flags)


@register("MultiHeadAttention", domain=MS_DOMAIN)
def multi_head_attention(ctx: NodeContext) -> OpCost:
    """MultiHeadAttention (separate, packed QKV/KV or cached BNSH key/value; optional bias and past)."""
    shapes = [info.shape if info is not None else None for info in ctx.inputs]
    shapes += [None] * (10 - len(shapes))
    dims = mha_dims({"num_heads": _num_heads(ctx)}, shapes)
    if dims is None:
        raise GraphStructureError(f"{ctx.where()}: query/key shapes {shapes[0]}, {shapes[1]} are unknown")
    batch, q_len, kv_len, heads, head, v_head, past_len = dims
    flags: tuple[str, ...] = ()
    if past_len and ctx.has_input(8):
        past_len, flags = _shared_past(ctx, past_len, 8)
    per_score = len(_present(ctx, 4, 5))
    macs, flops = _attention_core(batch, heads, q_len, kv_len + past_len, head, v_head, per_score)
    if ctx.has_input(3):
        key_in_bnsh = shapes[1] is not None and len(shapes[1]) == 4
        flops += batch * q_len * heads * head
        flops += 0 if key_in_bnsh else batch * kv_len * heads * (head + v_head)
    return OpCost(macs=macs, flops=flops, param_inputs=_present(ctx, 3), flags=flags)


@register("GroupQueryAttention", domain=MS_DOMAIN)
def group_query_attention(ctx: NodeContext) -> OpCost:
    """GroupQueryAttention: ``num_heads`` query heads sharing ``kv_num_heads`` K/V heads, with a KV cache."""
    heads, kv_heads = _num_heads(ctx), _num_heads(ctx, "kv_num_heads")
    q = ctx.in_shape(0)
    if len(q) != 3:
        raise GraphStructureError(f"{ctx.where()}: query must be [B, S, D], got {q}")
    batch, q_len, width = q
    head = width // heads if ctx.has_input(1) else width // (heads + 2 * kv_heads)
    flags: tuple[str, ...] = ()
    total = _scalar(ctx.const(6))
    if total is None:
        if ctx.has_input(3):
            total, flags = ctx.in_shape(3)[2] + q_len, (FLAG_KV_UPPER_BOUND,)
        else:
            total = q_len
    window = int(ctx.attr("local_window_size", -1))
    attended = min(total, window) if window > 0 else total
    per_score = len(_present(ctx, 10)) + (SOFTCAP_FLOPS if float(ctx.attr("softcap", 0.0)) else 0)
    macs, flops = _attention_core(batch, heads, q_len, attended, head, head, per_score)
    new_qk = batch * q_len * (heads + kv_heads) * head
    if ctx.attr("do_rotary", 0):
        flops += ROTARY_FLOPS * new_qk
    if ctx.has_input(14):  # per-head RMS norm of Q and K
        flops += 4 * new_qk + PER_GROUP_FLOPS * batch * q_len * (heads + kv_heads)
    read_bytes = {
        i: min(ctx.inputs[i].nbytes or 0, batch * q_len * _row_bytes(ctx, i)) for i in _present(ctx, 7, 8)
    }
    return OpCost(
        macs=macs,
        flops=flops,
        param_inputs=_present(ctx, 11, 14, 15),
        read_bytes=read_bytes or None,
        flags=flags,
    )


@register("DecoderMaskedMultiHeadAttention", domain=MS_DOMAIN)
def decoder_masked_multi_head_attention(ctx: NodeContext) -> OpCost:
    """DecoderMaskedMultiHeadAttention: one new token attending to a self-attention cache or a cross key."""
    heads = _num_heads(ctx)
    q = ctx.in_shape(0)
    if len(q) != 3:
        raise GraphStructureError(f"{ctx.where()}: query must be [B, 1, D], got {q}")
    batch, q_len, width = q
    key = ctx.inputs[1].shape if ctx.has_input(1) else None
    hidden = width if key is not None else width // 3
    head = hidden // heads
    flags: tuple[str, ...] = ()
    if key is not None and len(key) == 4:  # cross attention on cached keys
        total = key[2]
    elif ctx.has_input(5):
        past = ctx.in_shape(5)[2]
        if ctx.attr("past_present_share_buffer", 0):
            past, flags = _shared_past(ctx, past, 7)
            total = past + q_len if not flags else past
        else:
            total = past + q_len
    else:
        total = q_len
    per_score = len(_present(ctx, 3, 4))
    macs, flops = _attention_core(batch, heads, q_len, total, head, head, per_score)
    if ctx.has_input(10):
        flops += 3 * batch * q_len * hidden
    return OpCost(macs=macs, flops=flops, param_inputs=_present(ctx, 10), flags=flags)


@register("RotaryEmbedding", domain=MS_DOMAIN)
def rotary_embedding(ctx: NodeContext) -> OpCost:
    """RotaryEmbedding: 3 FLOPs per rotated element; the cos/sin caches are read only at the used rows."""
    x = ctx.in_shape(0)
    cos = ctx.in_shape(2)
    rotary_dim = 2 * cos[-1]
    if len(x) == 4:
        head = x[3]
    else:
        heads = int(ctx.attr("num_heads", 0))
        head = x[-1] // heads if heads > 0 else rotary_dim
    rotated = numel(x) * min(rotary_dim, head) // head if head else numel(x)
    tokens = x[0] * (x[2] if len(x) == 4 else x[1])
    read_bytes = None
    if len(cos) == 2:
        read_bytes = {i: min(ctx.inputs[i].nbytes or 0, tokens * _row_bytes(ctx, i)) for i in (2, 3)}
    return OpCost(flops=ROTARY_FLOPS * rotated, param_inputs=(), read_bytes=read_bytes)


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
