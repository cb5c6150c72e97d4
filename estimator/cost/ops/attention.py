"""Cost rules for the attention ops of the default ONNX domain (opset 23): ``Attention`` and
``RotaryEmbedding``; conventions as in :mod:`estimator.cost.ops.contrib_attention`.

``Attention``: with ``B`` batch, ``Hq`` query heads, ``S`` query length, ``T`` attended length (past + new)
and head sizes ``Dqk`` / ``Dv``, ``Q*K^T`` and ``P*V`` are ``B*Hq*S*T*(Dqk + Dv)`` MACs (grouped-query
attention shares K and V between heads, not work); per score 1 (scale) + 5 (softmax) + 1 for an
``attn_mask`` + 3 for a ``softcap``. ``is_causal`` masking is index arithmetic (0), and the full ``S x T``
score matrix is counted. Inputs are 4-D ``(B, H, S, D)`` or 3-D ``(B, S, H*D)`` with ``q_num_heads`` and
``kv_num_heads``. No parameters.

``RotaryEmbedding``: 3 FLOPs per rotated element (``rotary_embedding_dim`` of each head, the whole head by
default); X is 4-D ``(B, H, S, D)`` or 3-D ``(B, S, H*D)`` with ``num_heads``. No parameters.
"""

from __future__ import annotations

from estimator.cost.ops.base import NodeContext, OpCost, numel, register
from estimator.cost.ops.contrib import ROTARY_FLOPS, SOFTCAP_FLOPS
from estimator.cost.ops.contrib_attention import _attention_core
from estimator.errors import GraphStructureError


def _heads_and_size(ctx: NodeContext, i: int, heads_attr: str) -> tuple[int, int, int]:
    """(heads, sequence length, head size) of a 4-D ``(B, H, L, D)`` or 3-D ``(B, L, H*D)`` input."""
    shape = ctx.in_shape(i)
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    heads = int(ctx.attr(heads_attr, 0) or 0)
    if len(shape) != 3 or heads <= 0 or shape[2] % heads:
        raise GraphStructureError(
            f"{ctx.where()}: input {i} of shape {list(shape)} needs a 4-D layout or a positive {heads_attr} "
            f"dividing its last dimension"
        )
    return heads, shape[1], shape[2] // heads


@register("Attention", since=23)
def attention(ctx: NodeContext) -> OpCost:
    """Attention (opset 23): ``B*Hq*S*T*(Dqk + Dv)`` MACs, scale + softmax (+ mask, + softcap) per score."""
    batch = ctx.in_shape(0)[0]
    heads, q_len, qk_head = _heads_and_size(ctx, 0, "q_num_heads")
    _, kv_len, _ = _heads_and_size(ctx, 1, "kv_num_heads")
    _, _, v_head = _heads_and_size(ctx, 2, "kv_num_heads")
    past = ctx.in_shape(4)[2] if ctx.has_input(4) else 0
    per_score = (1 if ctx.has_input(3) else 0) + (SOFTCAP_FLOPS if float(ctx.attr("softcap", 0.0)) > 0 else 0)
    macs, flops = _attention_core(batch, heads, q_len, past + kv_len, qk_head, v_head, per_score)
    return OpCost(macs=macs, flops=flops, param_inputs=())


@register("RotaryEmbedding", since=23)
def rotary_embedding(ctx: NodeContext) -> OpCost:
    """RotaryEmbedding (opset 23): 3 FLOPs per rotated element."""
    _, _, head = _heads_and_size(ctx, 0, "num_heads")
    rotary_dim = int(ctx.attr("rotary_embedding_dim", 0) or 0) or head
    x = numel(ctx.in_shape(0))
    return OpCost(flops=ROTARY_FLOPS * x * min(rotary_dim, head) // head, param_inputs=())
