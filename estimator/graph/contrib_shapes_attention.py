"""Output shapes of ONNX Runtime's attention contrib ops (``Attention``, ``MultiHeadAttention``,
``GroupQueryAttention``, ``DecoderMaskedMultiHeadAttention``), registered in
:data:`estimator.graph.contrib_shapes.CONTRIB_SHAPE_RULES` like the others."""

from __future__ import annotations

import numpy as np

from estimator.graph.contrib_shapes import _rule

# ----------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------


def _scalar(value: np.ndarray | None) -> int | None:
    return None if value is None or value.size != 1 else int(value.reshape(-1)[0])


@_rule("Attention")
def _attention(attrs, shapes, dtypes, values):
    x, w, past = shapes[0], shapes[1], shapes[4]
    heads = int(attrs["num_heads"])
    sizes = attrs.get("qkv_hidden_sizes")
    if w is None and not sizes:
        return [(None, dtypes[0]), (None, dtypes[0])]
    q_hidden, _, v_hidden = (int(s) for s in sizes) if sizes else (w[1] // 3,) * 3
    out = None if x is None else (x[0], x[1], v_hidden)
    present = None
    if x is not None:
        if past is None:
            total = x[1]
        elif attrs.get("past_present_share_buffer", 0):
            total = past[3]
        else:
            total = past[3] + x[1]
        present = (2, x[0], heads, total, q_hidden // heads)
    return [(out, dtypes[0]), (present, dtypes[0])]


def mha_dims(attrs, shapes) -> tuple[int, int, int, int, int, int, int] | None:
    """(batch, q_len, kv_len, heads, head_size, v_head_size, past_len) of a MultiHeadAttention node."""
    q, k, v, past = shapes[0], shapes[1], shapes[2], shapes[6]
    heads = int(attrs["num_heads"])
    if q is None:
        return None
    if len(q) == 5:  # packed QKV [B, S, N, 3, H]
        return q[0], q[1], q[1], heads, q[4], q[4], 0 if past is None else past[2]
    batch, q_len, hidden = q
    head = hidden // heads
    if k is None:
        return None
    if len(k) == 5:  # packed KV [B, L, N, 2, H]
        return batch, q_len, k[1], heads, head, k[4], 0 if past is None else past[2]
    if len(k) == 4:  # key/value already in BNSH: cross attention with a cached key, no past to append
        v_head = v[3] if v is not None and len(v) == 4 else head
        return batch, q_len, k[2], heads, head, v_head, 0
    v_head = v[2] // heads if v is not None else head
    return batch, q_len, k[1], heads, head, v_head, 0 if past is None else past[2]


@_rule("MultiHeadAttention")
def _multi_head_attention(attrs, shapes, dtypes, values):
    t = dtypes[0]
    dims = mha_dims(attrs, shapes)
    if dims is None:
        return [(None, t)] * 4
    batch, q_len, kv_len, heads, head, v_head, past_len = dims
    total = kv_len + past_len
    return [
        ((batch, q_len, heads * v_head), t),
        ((batch, heads, total, head), t),
        ((batch, heads, total, v_head), t),
        ((batch, heads, q_len, total), t),
    ]


@_rule("GroupQueryAttention")
def _group_query_attention(attrs, shapes, dtypes, values):
    q, k, past = shapes[0], shapes[1], shapes[3]
    heads, kv_heads = int(attrs["num_heads"]), int(attrs["kv_num_heads"])
    t = dtypes[0]
    cache_t = dtypes[3] if past is not None else t
    if q is None:
        return [(None, t), (None, cache_t), (None, cache_t), (None, t)]
    batch, q_len, width = q
    head = width // heads if k is not None else width // (heads + 2 * kv_heads)
    total = _scalar(values[6])
    if past is not None:
        present_len = None if total is None else max(past[2], total)
    else:
        present_len = total if total is not None else q_len
    attended = total if total is not None else (q_len if past is None else None)
    present = None if present_len is None else (batch, kv_heads, present_len, head)
    qk = None if attended is None else (batch, heads, q_len, attended)
    return [((batch, q_len, heads * head), t), (present, cache_t), (present, cache_t), (qk, t)]


@_rule("DecoderMaskedMultiHeadAttention")
def _decoder_masked_mha(attrs, shapes, dtypes, values):
    q, k, v, past_k, past_v = shapes[0], shapes[1], shapes[2], shapes[5], shapes[6]
    heads = int(attrs["num_heads"])
    t = dtypes[0]
    if q is None:
        return [(None, t)] * 4
    batch, q_len, width = q
    if k is None:  # packed QKV: width = 2 * hidden + v_hidden; assume v_hidden = hidden
        hidden = v_hidden = width // 3
    else:
        hidden = width
        v_hidden = v[2] if v is not None and len(v) == 3 else (heads * v[3] if v is not None else hidden)
    out = ((batch, q_len, v_hidden), t)
    if k is not None and len(k) == 4:  # cross attention: no present
        return [out, (None, t), (None, t), ((batch, heads, 1, k[2]), t)]
    if past_k is None:
        return [out, (None, t), (None, t), (None, t)]
    if attrs.get("past_present_share_buffer", 0):
        present_k, present_v = past_k, past_v
    else:
        present_k = (*past_k[:2], past_k[2] + q_len, past_k[3])
        present_v = None if past_v is None else (*past_v[:2], past_v[2] + q_len, past_v[3])
    qk = (batch, heads, 1, present_k[2])
    return [out, (present_k, t), (present_v, t), (qk, t)]
