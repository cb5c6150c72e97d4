"""Cost rules for the attention ops of ``com.microsoft`` and rotary embedding (conventions as in
:mod:`estimator.cost.ops.contrib`).

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
"""

from __future__ import annotations

from estimator.cost.ops.base import MS_DOMAIN, NodeContext, OpCost, numel, register
from estimator.cost.ops.contrib import (
    FLAG_KV_UPPER_BOUND,
    ROTARY_FLOPS,
    SCORE_FLOPS,
    SOFTCAP_FLOPS,
    _present,
    _row_bytes,
    _scalar,
)
from estimator.cost.ops.normalization import PER_GROUP_FLOPS
from estimator.errors import GraphStructureError
from estimator.graph.contrib_shapes import mha_dims

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
