"""Cost rules of contrib.py and output shapes of contrib_shapes.py (com.microsoft ops) against closed forms.

Per-element costs used in the expectations are the documented ones: Gelu 5, tanh-Gelu (FastGelu) 9,
Sigmoid 4, softmax 5 + 1 scale per attention score, LayerNorm statistics 4 per element + 3 per row,
dequantize 2, quantize 4, requantize 4.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest

from estimator.cost.nodes import count_costs
from estimator.cost.ops.base import MS_DOMAIN, REGISTRY
from estimator.graph.contrib_shapes import CONTRIB_SHAPE_RULES, infer_contrib_outputs, matmul_shape
from estimator.graph.load import load_graph

HEADER = '<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>'
GELU, FAST_GELU, SIGMOID, SOFTMAX = 5, 9, 4, 5


def report(body: str, signature: str, consts: dict[str, np.ndarray] | None = None):
    """Cost a graph ``g {signature} {{ body }}`` with the arrays in ``consts`` as initializers."""
    model = onnx.parser.parse_model(f"{HEADER}\ng {signature} {{\n{body}\n}}")
    for name, value in (consts or {}).items():
        for vi in [v for v in model.graph.input if v.name == name]:
            model.graph.input.remove(vi)
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    return count_costs(load_graph(model))


def only(rep, op_type: str):
    (node,) = [n for n in rep.nodes if n.op_type == op_type]
    assert node.status == "costed", node.message
    return node


def dims(*shape: int) -> str:
    return ",".join(str(d) for d in shape)


def ones(*shape: int, dtype=np.float32) -> np.ndarray:
    return np.ones(shape, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# Matrix products and convolutions
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "attrs"),
    [
        ((2, 5, 8), (4, 8), "transB = 1"),
        ((2, 8, 5), (8, 4), "transA = 1, alpha = 0.5"),
        ((3, 5, 8), (3, 4, 8), "transB = 1"),
        ((5, 2, 8), (2, 8, 4), "transBatchA = 1"),
        ((8, 2, 5), (2, 8, 4), "transBatchA = 1, transA = 1"),
    ],
)
def test_fused_matmul_and_a_following_standard_op_get_shapes(a, b, attrs) -> None:
    # reference: numpy on arrays transposed as the attributes say
    values = dict(item.split(" = ") for item in attrs.split(", "))
    x, y = np.zeros(a), np.zeros(b)
    if "transBatchA" in values:
        x = np.moveaxis(x, 0, -2)
    if "transA" in values:
        x = np.swapaxes(x, -1, -2)
    if "transB" in values:
        y = np.swapaxes(y, -1, -2)
    out = np.matmul(x, y).shape
    k = x.shape[-1]
    rep = report(
        f"T = com.microsoft.FusedMatMul <{attrs}> (A, B)\nY = Add(T, T)",
        f"(float[{dims(*a)}] A, float[{dims(*b)}] B) => (float[{dims(*out)}] Y)",
    )
    fm = only(rep, "FusedMatMul")
    assert fm.output_shapes[0] == out
    macs = int(np.prod(out)) * k
    assert fm.macs == macs
    assert fm.flops == 2 * macs + (int(np.prod(out)) if "alpha" in values else 0)
    add = only(rep, "Add")
    assert add.output_shapes[0] == out
    assert add.flops == int(np.prod(out))


def test_fused_gemm_with_bias_and_relu() -> None:
    m, k, n = 6, 10, 7
    rep = report(
        'Y = com.microsoft.FusedGemm <transB = 1, activation = "Relu"> (A, W, C)',
        f"(float[{m},{k}] A) => (float[{m},{n}] Y)",
        {"W": ones(n, k), "C": ones(n)},
    )
    node = only(rep, "FusedGemm")
    assert node.output_shapes[0] == (m, n)
    assert node.macs == m * n * k
    assert node.flops == 2 * m * n * k + m * n * (1 + 1)  # C add, Relu
    assert node.params == n * k + n


@pytest.mark.parametrize("op", ["FusedConv", "NhwcConv"])
def test_fused_and_nhwc_conv(op: str) -> None:
    n, c, h, w, cout, k, group = 2, 8, 9, 9, 6, 3, 2
    ho = wo = (9 + 2 * 1 - 3) // 2 + 1
    x = (n, c, h, w) if op == "FusedConv" else (n, h, w, c)
    y = (n, cout, ho, wo) if op == "FusedConv" else (n, ho, wo, cout)
    act = ', activation = "Relu"' if op == "FusedConv" else ""
    rep = report(
        f"Y = com.microsoft.{op} <strides = [2, 2], pads = [1, 1, 1, 1], group = {group}{act}> (X, W, B)",
        f"(float[{dims(*x)}] X) => (float[{dims(*y)}] Y)",
        {"W": ones(cout, c // group, k, k), "B": ones(cout)},
    )
    node = only(rep, op)
    assert node.output_shapes[0] == y
    macs = n * cout * ho * wo * (c // group) * k * k
    assert node.macs == macs
    assert node.flops == 2 * macs + n * cout * ho * wo * (1 + (1 if act else 0))


def test_gemm_fast_gelu() -> None:
    b, s, k, n = 2, 3, 8, 5
    rep = report(
        "Y = com.microsoft.GemmFastGelu (X, W, Bias)",
        f"(float[{b},{s},{k}] X) => (float[{b},{s},{n}] Y)",
        {"W": ones(k, n), "Bias": ones(n)},
    )
    node = only(rep, "GemmFastGelu")
    assert node.output_shapes[0] == (b, s, n)
    assert node.macs == b * s * n * k
    assert node.flops == 2 * b * s * n * k + b * s * n * (1 + FAST_GELU)


@pytest.mark.parametrize("dtype", ["float", "float16"])
def test_matmul_nbits_weight_bytes_are_the_packed_size(dtype: str) -> None:
    m, k, n, bits, block = 4, 64, 12, 4, 32
    blob = block * bits // 8
    np_dtype = np.float32 if dtype == "float" else np.float16
    rep = report(
        f"Y = com.microsoft.MatMulNBits <K = {k}, N = {n}, bits = {bits}, block_size = {block}> (A, Bq, S)",
        f"({dtype}[1,{m},{k}] A) => ({dtype}[1,{m},{n}] Y)",
        {"Bq": ones(n, k // block, blob, dtype=np.uint8), "S": ones(n * (k // block), dtype=np_dtype)},
    )
    node = only(rep, "MatMulNBits")
    assert node.output_shapes[0] == (1, m, n)
    assert node.macs == m * n * k
    assert node.flops == 2 * m * n * k + 2 * n * k  # + dequantization of every weight
    scale_bytes = n * (k // block) * np.dtype(np_dtype).itemsize
    assert node.weight_bytes == n * k * bits // 8 + scale_bytes
    assert node.params == n * k  # logical weights, not packed bytes; scales are part of their encoding
    assert node.param_bytes == n * k * bits // 8 + scale_bytes


def test_matmul_integer_to_float_and_dynamic_quantize_matmul() -> None:
    m, k, n = 3, 16, 5
    rep = report(
        "Y = com.microsoft.MatMulIntegerToFloat (A, B, As, Bs, Az, Bz, Bias)",
        f"(uint8[{m},{k}] A, float As, uint8 Az) => (float[{m},{n}] Y)",
        {"B": ones(k, n, dtype=np.uint8), "Bs": ones(n), "Bz": ones(n, dtype=np.uint8), "Bias": ones(n)},
    )
    node = only(rep, "MatMulIntegerToFloat")
    assert node.output_shapes[0] == (m, n)
    assert node.flops == 2 * m * n * k + m * k + k * n + m * n * 2  # zero points, scale, bias
    assert node.params == k * n + n  # B and bias; scales and zero points are not parameters

    rep = report(
        "Y = com.microsoft.DynamicQuantizeMatMul (A, B, Bs)",
        f"(float[{m},{k}] A) => (float[{m},{n}] Y)",
        {"B": ones(k, n, dtype=np.int8), "Bs": ones(n)},
    )
    node = only(rep, "DynamicQuantizeMatMul")
    assert node.flops == 6 * m * k + 2 * m * n * k + m * n


# --------------------------------------------------------------------------------------------------
# A small BERT-like block: Attention + SkipLayerNormalization + BiasGelu
# --------------------------------------------------------------------------------------------------


def test_bert_block_attention_skip_layernorm_bias_gelu() -> None:
    b, s, d, heads, f = 2, 16, 32, 4, 64
    consts = {
        "Wqkv": ones(d, 3 * d),
        "Bqkv": ones(3 * d),
        "Wo": ones(d, d),
        "Bo": ones(d),
        "G1": ones(d),
        "Be1": ones(d),
        "W1": ones(d, f),
        "B1": ones(f),
        "W2": ones(f, d),
        "B2": ones(d),
        "G2": ones(d),
        "Be2": ones(d),
    }
    body = f"""
        A = com.microsoft.Attention <num_heads = {heads}> (X, Wqkv, Bqkv, Mask)
        P = MatMul(A, Wo)
        L1 = com.microsoft.SkipLayerNormalization <epsilon = 1e-12> (P, X, G1, Be1, Bo)
        H = MatMul(L1, W1)
        G = com.microsoft.BiasGelu (H, B1)
        O = MatMul(G, W2)
        Y = com.microsoft.SkipLayerNormalization <epsilon = 1e-12> (O, L1, G2, Be2, B2)
    """
    rep = report(body, f"(float[{b},{s},{d}] X, int32[{b},{s}] Mask) => (float[{b},{s},{d}] Y)", consts)
    assert rep.unsupported == {}
    tokens = b * s
    scores = b * heads * s * s
    head = d // heads

    attn = only(rep, "Attention")
    attn_macs = tokens * d * 3 * d + scores * 2 * head
    assert attn.output_shapes[0] == (b, s, d)
    assert attn.macs == attn_macs
    # 1 bias add per projected element; per score: scale, softmax, mask add
    assert attn.flops == 2 * attn_macs + tokens * 3 * d + scores * (1 + SOFTMAX + 1)

    sln = [n for n in rep.nodes if n.op_type == "SkipLayerNormalization"]
    assert [n.output_shapes[0] for n in sln] == [(b, s, d)] * 2
    # skip add, bias add, 4 statistics, normalise, gamma, beta per element; 3 per row
    assert all(n.flops == tokens * d * (1 + 1 + 4 + 1 + 1 + 1) + 3 * tokens for n in sln)

    gelu = only(rep, "BiasGelu")
    assert gelu.output_shapes[0] == (b, s, f)
    assert gelu.flops == tokens * f * (1 + GELU)

    total_macs = attn_macs + tokens * d * d + tokens * d * f + tokens * f * d
    assert rep.totals.macs == total_macs
    assert rep.totals.params == sum(v.size for v in consts.values())


def test_attention_with_past_and_present() -> None:
    b, s, d, heads, past = 1, 3, 16, 2, 5
    head = d // heads
    rep = report(
        f"Y, Present = com.microsoft.Attention <num_heads = {heads}, unidirectional = 1> (X, W, , , Past)",
        f"(float[{b},{s},{d}] X, float[2,{b},{heads},{past},{head}] Past) => (float[{b},{s},{d}] Y)",
        {"W": ones(d, 3 * d)},
    )
    node = only(rep, "Attention")
    assert node.output_shapes == ((b, s, d), (2, b, heads, past + s, head))
    core = b * heads * s * (past + s) * 2 * head
    assert node.macs == b * s * d * 3 * d + core


# --------------------------------------------------------------------------------------------------
# MultiHeadAttention, GroupQueryAttention, DecoderMaskedMultiHeadAttention, RotaryEmbedding
# --------------------------------------------------------------------------------------------------


def test_multi_head_attention_separate_qkv_with_bias_and_past() -> None:
    b, s, kv, d, heads, past = 2, 4, 4, 16, 4, 6
    head = d // heads
    total = past + kv
    cache = f"float[{b},{heads},{past},{head}]"
    rep = report(
        f"Y, Pk, Pv = com.microsoft.MultiHeadAttention <num_heads = {heads}> "
        "(Q, K, V, Bias, , , PastK, PastV)",
        f"(float[{b},{s},{d}] Q, float[{b},{kv},{d}] K, float[{b},{kv},{d}] V, "
        f"{cache} PastK, {cache} PastV) => (float[{b},{s},{d}] Y)",
        {"Bias": ones(3 * d)},
    )
    node = only(rep, "MultiHeadAttention")
    assert node.output_shapes == ((b, s, d), (b, heads, total, head), (b, heads, total, head))
    scores = b * heads * s * total
    macs = scores * 2 * head
    assert node.macs == macs
    assert node.flops == 2 * macs + scores * (1 + SOFTMAX) + b * s * d + 2 * b * kv * d
    assert node.params == 3 * d


def test_multi_head_attention_packed_qkv() -> None:
    b, s, heads, head = 1, 5, 2, 8
    rep = report(
        f"Y = com.microsoft.MultiHeadAttention <num_heads = {heads}> (QKV)",
        f"(float[{b},{s},{heads},3,{head}] QKV) => (float[{b},{s},{heads * head}] Y)",
    )
    node = only(rep, "MultiHeadAttention")
    assert node.output_shapes[0] == (b, s, heads * head)
    assert node.macs == b * heads * s * s * 2 * head


@pytest.mark.parametrize("packed", [False, True])
def test_group_query_attention_token_generation(packed: bool) -> None:
    b, s, heads, kv_heads, head, past, total = 1, 1, 8, 2, 16, 31, 32
    d, kvd = heads * head, kv_heads * head
    qkv = "Q, , " if packed else "Q, K, V"
    q_width = d + 2 * kvd if packed else d
    rep = report(
        f"""
        Y, Pk, Pv = com.microsoft.GroupQueryAttention <num_heads = {heads}, kv_num_heads = {kv_heads}>
            ({qkv}, PastK, PastV, Seqlens, Total)
        """,
        f"(float16[{b},{s},{q_width}] Q, float16[{b},{s},{kvd}] K, float16[{b},{s},{kvd}] V, "
        f"float16[{b},{kv_heads},{past},{head}] PastK, float16[{b},{kv_heads},{past},{head}] PastV, "
        f"int32[{b}] Seqlens) => (float16[{b},{s},{d}] Y)",
        {"Total": np.array(total, np.int32)},
    )
    node = only(rep, "GroupQueryAttention")
    assert node.output_shapes == ((b, s, d), (b, kv_heads, total, head), (b, kv_heads, total, head))
    scores = b * heads * s * total
    assert node.macs == scores * 2 * head
    assert node.flops == 2 * node.macs + scores * (1 + SOFTMAX)
    assert node.flags == ()


def test_group_query_attention_without_total_length_is_an_upper_bound() -> None:
    b, s, heads, kv_heads, head, past = 1, 1, 4, 2, 8, 63
    rep = report(
        f"""
        Y, Pk, Pv = com.microsoft.GroupQueryAttention <num_heads = {heads}, kv_num_heads = {kv_heads}>
            (Q, K, V, PastK, PastV, Seqlens, Total)
        """,
        f"(float[{b},{s},{heads * head}] Q, float[{b},{s},{kv_heads * head}] K, "
        f"float[{b},{s},{kv_heads * head}] V, "
        f"float[{b},{kv_heads},{past},{head}] PastK, float[{b},{kv_heads},{past},{head}] PastV, "
        f"int32[{b}] Seqlens, int32 Total) => (float[{b},{s},{heads * head}] Y)",
    )
    node = next(n for n in rep.nodes if n.op_type == "GroupQueryAttention")
    assert node.macs == b * heads * s * (past + s) * 2 * head
    assert "kv-length-upper-bound" in node.flags


def test_decoder_masked_multi_head_attention_with_known_past_length() -> None:
    b, heads, head, max_len, past = 2, 4, 8, 64, 10
    d = heads * head
    rep = report(
        f"""
        Y, Pk, Pv = com.microsoft.DecoderMaskedMultiHeadAttention
            <num_heads = {heads}, past_present_share_buffer = 1> (Q, K, V, , , PastK, PastV, PastLen)
        """,
        f"(float[{b},1,{d}] Q, float[{b},1,{d}] K, float[{b},1,{d}] V, "
        f"float[{b},{heads},{max_len},{head}] PastK, "
        f"float[{b},{heads},{max_len},{head}] PastV) => (float[{b},1,{d}] Y)",
        {"PastLen": np.array([past], np.int32)},
    )
    node = only(rep, "DecoderMaskedMultiHeadAttention")
    assert node.output_shapes[:2] == ((b, 1, d), (b, heads, max_len, head))
    assert node.macs == b * heads * (past + 1) * 2 * head
    assert node.flags == ()


def test_rotary_embedding_reads_only_the_used_cache_rows() -> None:
    b, s, heads, head, max_pos = 2, 3, 4, 16, 1024
    rep = report(
        f"Y = com.microsoft.RotaryEmbedding <num_heads = {heads}> (X, Pos, Cos, Sin)",
        f"(float[{b},{s},{heads * head}] X, int64[{b},{s}] Pos) => (float[{b},{s},{heads * head}] Y)",
        {"Cos": ones(max_pos, head // 2), "Sin": ones(max_pos, head // 2)},
    )
    node = only(rep, "RotaryEmbedding")
    assert node.output_shapes[0] == (b, s, heads * head)
    assert node.flops == 3 * b * s * heads * head
    assert node.params == 0
    assert node.weight_bytes == 2 * b * s * (head // 2) * 4


# --------------------------------------------------------------------------------------------------
# Normalisation and elementwise fusions
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["", "com.microsoft."])
def test_simplified_layer_normalization_rms_norm(domain: str) -> None:
    b, s, d = 2, 5, 12
    rep = report(
        f"Y = {domain}SimplifiedLayerNormalization <epsilon = 1e-6> (X, G)\nZ = Add(Y, X)",
        f"(float[{b},{s},{d}] X) => (float[{b},{s},{d}] Z)",
        {"G": ones(d)},
    )
    node = only(rep, "SimplifiedLayerNormalization")
    assert node.flops == 4 * b * s * d + 3 * b * s
    assert node.params == d
    assert only(rep, "Add").output_shapes[0] == (b, s, d)


def test_default_domain_simplified_layer_normalization_gets_its_output_shape() -> None:
    rep = report(
        "Y = SimplifiedLayerNormalization <epsilon = 1e-6> (X, G)\nZ = Add(Y, X)",
        "(float[2,5,12] X) => (float[2,5,12] Z)",
        {"G": ones(12)},
    )
    assert only(rep, "SimplifiedLayerNormalization").output_shapes[0] == (2, 5, 12)


def test_skip_simplified_layer_normalization_with_residual_output() -> None:
    b, s, d = 1, 7, 10
    rep = report(
        "Y, , , Sum = com.microsoft.SkipSimplifiedLayerNormalization (X, Skip, G)",
        f"(float[{b},{s},{d}] X, float[{b},{s},{d}] Skip) => (float[{b},{s},{d}] Y, float[{b},{s},{d}] Sum)",
        {"G": ones(d)},
    )
    node = only(rep, "SkipSimplifiedLayerNormalization")
    assert node.output_shapes == ((b, s, d), None, None, (b, s, d))
    assert node.flops == (1 + 2 + 1 + 1) * b * s * d + 3 * b * s


def test_embed_layer_normalization() -> None:
    b, s, d, vocab, positions = 2, 6, 8, 1000, 64
    rep = report(
        "Y, MaskIndex = com.microsoft.EmbedLayerNormalization (Ids, Seg, Word, Pos, SegEmb, G, Be, Mask)",
        f"(int32[{b},{s}] Ids, int32[{b},{s}] Seg, int32[{b},{s}] Mask) => (float[{b},{s},{d}] Y)",
        {
            "Word": ones(vocab, d),
            "Pos": ones(positions, d),
            "SegEmb": ones(2, d),
            "G": ones(d),
            "Be": ones(d),
        },
    )
    node = only(rep, "EmbedLayerNormalization")
    assert node.output_shapes[:2] == ((b, s, d), (b,))
    tokens = b * s
    assert node.flops == tokens * d * (2 + 4 + 3) + 3 * tokens + tokens
    assert node.params == (vocab + positions + 2) * d + 2 * d
    # the embedding tables are read at the gathered rows only (the 2-row segment table whole)
    assert node.weight_bytes == 4 * (tokens * d + tokens * d + 2 * d + 2 * d)


@pytest.mark.parametrize(
    ("op", "inputs", "per_element"),
    [
        ("Gelu", "X", GELU),
        ("BiasGelu", "X, Bias", 1 + GELU),
        ("FastGelu", "X", FAST_GELU),
        ("FastGelu", "X, Bias", FAST_GELU + 1),
        ("QuickGelu", "X", 1 + SIGMOID + 1),
        ("BiasAdd", "X, Bias, X", 2),
        ("BiasSoftmax", "X, X", 1 + SOFTMAX),
    ],
)
def test_elementwise_fusions(op: str, inputs: str, per_element: int) -> None:
    b, s, c = 2, 3, 8
    rep = report(
        f"Y = com.microsoft.{op} ({inputs})",
        f"(float[{b},{s},{c}] X) => (float[{b},{s},{c}] Y)",
        {"Bias": ones(c)} if "Bias" in inputs else None,
    )
    node = only(rep, op)
    assert node.output_shapes[0] == (b, s, c)
    assert node.flops == per_element * b * s * c


def test_bias_split_gelu_halves_the_last_axis() -> None:
    n, hw, d = 2, 16, 20
    rep = report(
        "Y = com.microsoft.BiasSplitGelu (X, Bias)",
        f"(float[{n},{hw},{d}] X) => (float[{n},{hw},{d // 2}] Y)",
        {"Bias": ones(d)},
    )
    node = only(rep, "BiasSplitGelu")
    assert node.output_shapes[0] == (n, hw, d // 2)
    assert node.flops == n * hw * (d // 2) * (2 + GELU + 1)


def test_group_norm_nhwc_with_silu() -> None:
    n, h, w, c, groups = 2, 4, 4, 8, 4
    rep = report(
        f"Y = com.microsoft.GroupNorm <activation = 1, groups = {groups}, epsilon = 1e-5> (X, G, Be)",
        f"(float[{n},{h},{w},{c}] X) => (float[{n},{h},{w},{c}] Y)",
        {"G": ones(c), "Be": ones(c)},
    )
    node = only(rep, "GroupNorm")
    assert node.flops == n * h * w * c * (4 + 3 + SIGMOID + 1) + 3 * n * groups


# --------------------------------------------------------------------------------------------------
# Quantized contrib ops
# --------------------------------------------------------------------------------------------------


def test_qlinear_add_broadcasts() -> None:
    rep = report(
        "Y = com.microsoft.QLinearAdd (A, As, Az, B, Bs, Bz, Cs, Cz)",
        "(uint8[2,3,4] A, uint8[4] B, float As, uint8 Az, float Bs, uint8 Bz, float Cs, uint8 Cz)"
        " => (uint8[2,3,4] Y)",
    )
    node = only(rep, "QLinearAdd")
    assert node.output_shapes[0] == (2, 3, 4)
    assert node.flops == 24 * (2 + 2 + 1 + 4)


def test_qlinear_concat_copies_inputs_already_in_the_output_quantization() -> None:
    consts = {
        "Ys": np.array(0.5, np.float32),
        "Yz": np.array(128, np.uint8),
        "S1": np.array(0.5, np.float32),
        "Z1": np.array(128, np.uint8),
        "S2": np.array(0.25, np.float32),
        "Z2": np.array(128, np.uint8),
    }
    rep = report(
        "Y = com.microsoft.QLinearConcat <axis = 1> (Ys, Yz, X1, S1, Z1, X2, S2, Z2)",
        "(uint8[1,3,4,4] X1, uint8[1,5,4,4] X2) => (uint8[1,8,4,4] Y)",
        consts,
    )
    node = only(rep, "QLinearConcat")
    assert node.output_shapes[0] == (1, 8, 4, 4)
    assert node.flops == (2 + 4) * 5 * 16  # only X2 is requantized


@pytest.mark.parametrize("channels_last", [0, 1])
def test_qlinear_global_average_pool(channels_last: int) -> None:
    x = (2, 7, 7, 16) if channels_last else (2, 16, 7, 7)
    y = (2, 1, 1, 16) if channels_last else (2, 16, 1, 1)
    rep = report(
        f"Y = com.microsoft.QLinearGlobalAveragePool <channels_last = {channels_last}> (X, Xs, Xz, Ys, Yz)",
        f"(uint8[{dims(*x)}] X, float Xs, uint8 Xz, float Ys, uint8 Yz) => (uint8[{dims(*y)}] Y)",
    )
    node = only(rep, "QLinearGlobalAveragePool")
    assert node.output_shapes[0] == y
    assert node.flops == 2 * 16 * 49 + 4 * 2 * 16


# --------------------------------------------------------------------------------------------------
# contrib_shapes directly
# --------------------------------------------------------------------------------------------------


def test_every_contrib_cost_rule_has_a_shape_rule() -> None:
    keys = REGISTRY.keys()
    costed = {k.op_type for k in keys if k.domain == MS_DOMAIN}
    shaped = {op for domain, op in CONTRIB_SHAPE_RULES if domain == MS_DOMAIN}
    assert costed - shaped == set()


def test_infer_contrib_outputs_pads_to_the_output_count_and_knows_no_stranger() -> None:
    out = infer_contrib_outputs(MS_DOMAIN, "Gelu", {}, [(2, 3)], ["float16"], [None], 1)
    assert out == [((2, 3), "float16")]
    out = infer_contrib_outputs(
        MS_DOMAIN, "SkipLayerNormalization", {}, [(2, 3, 8), (2, 3, 8), (8,)], ["float32"] * 3, [None] * 3, 4
    )
    assert out == [
        ((2, 3, 8), "float32"),
        ((2, 3, 1), "float32"),
        ((2, 3, 1), "float32"),
        ((2, 3, 8), "float32"),
    ]
    assert infer_contrib_outputs(MS_DOMAIN, "NoSuchOp", {}, [(1,)], ["float32"], [None], 1) is None
    # malformed attributes make the shape unknown, not an exception
    out = infer_contrib_outputs(MS_DOMAIN, "MatMulNBits", {}, [(2, 8)], ["float32"], [None], 1)
    assert out == [(None, "float32")]


def test_default_domain_contrib_layer_norm_shapes() -> None:
    out = infer_contrib_outputs("", "LayerNormalization", {"axis": 1}, [(2, 3, 4)], ["float16"], [None], 3)
    assert out == [((2, 3, 4), "float16"), ((2, 1, 1), "float32"), ((2, 1, 1), "float32")]


@pytest.mark.parametrize(
    ("a", "b"),
    [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((5, 1, 2, 3), (4, 3, 6)), ((2, 3), (4, 6))],
)
def test_matmul_shape_matches_numpy(a, b) -> None:
    try:
        expected = np.matmul(np.zeros(a), np.zeros(b)).shape
    except ValueError:
        expected = None
    assert matmul_shape(a, b) == expected


def test_group_query_attention_shapes_without_past() -> None:
    attrs = {"num_heads": 8, "kv_num_heads": 2}
    shapes = [(1, 10, 8 * 16), (1, 10, 32), (1, 10, 32), None, None, (1,), ()]
    values = [None] * 6 + [np.array(10, np.int32)]
    out = infer_contrib_outputs(MS_DOMAIN, "GroupQueryAttention", attrs, shapes, ["float16"] * 7, values, 3)
    assert out == [((1, 10, 128), "float16"), ((1, 2, 10, 16), "float16"), ((1, 2, 10, 16), "float16")]


# --------------------------------------------------------------------------------------------------
# Against ONNX Runtime itself (optional: runs only where onnxruntime is installed)
# --------------------------------------------------------------------------------------------------

ORT_CASES = {
    "FusedMatMul": (
        "float Y",
        "(float[8,2,5] A, float[2,8,4] B)",
        "Y = com.microsoft.FusedMatMul <transBatchA = 1, transA = 1> (A, B)",
    ),
    "FusedConv": (
        "float Y",
        "(float[2,8,9,9] X, float[6,4,3,3] W, float[6] B)",
        'Y = com.microsoft.FusedConv <strides = [2, 2], pads = [1, 1, 1, 1], group = 2, activation = "Relu">'
        " (X, W, B)",
    ),
    "Attention": (
        "float Y, float P",
        "(float[1,3,16] X, float[16,48] W, float[48] Bi, float[2,1,2,5,8] Past)",
        "Y, P = com.microsoft.Attention <num_heads = 2, unidirectional = 1> (X, W, Bi, , Past)",
    ),
    "MultiHeadAttention": (
        "float Y, float Pk, float Pv",
        "(float[2,1,16] Q, float[2,1,16] K, float[2,1,16] V, float[2,4,6,4] PK, float[2,4,6,4] PV)",
        "Y, Pk, Pv = com.microsoft.MultiHeadAttention <num_heads = 4> (Q, K, V, , , , PK, PV)",
    ),
    "SkipLayerNormalization": (
        "float Y, float M, float I, float Sum",
        "(float[2,3,8] X, float[2,3,8] S, float[8] G, float[8] Be, float[8] Bi)",
        "Y, M, I, Sum = com.microsoft.SkipLayerNormalization (X, S, G, Be, Bi)",
    ),
    "EmbedLayerNormalization": (
        "float Y, int32 Mi, float Es",
        "(int32[2,6] Ids, int32[2,6] Seg, float[50,8] Wd, float[16,8] Po, float[2,8] Se, float[8] G, "
        "float[8] Be, int32[2,6] Mask)",
        "Y, Mi, Es = com.microsoft.EmbedLayerNormalization (Ids, Seg, Wd, Po, Se, G, Be, Mask)",
    ),
    "MatMulNBits": (
        "float Y",
        "(float[1,4,64] A, uint8[12,2,16] Bq, float[24] Sc)",
        "Y = com.microsoft.MatMulNBits <K = 64, N = 12, bits = 4, block_size = 32> (A, Bq, Sc)",
    ),
    "QLinearAveragePool": (
        "uint8 Y",
        "(uint8[1,3,9,9] X, float Xs, uint8 Xz, float Ys, uint8 Yz)",
        "Y = com.microsoft.QLinearAveragePool <kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]>"
        " (X, Xs, Xz, Ys, Yz)",
    ),
    "GroupQueryAttention": (
        "float Y, float Pk, float Pv",
        "(float[1,1,64] Q, float[1,1,32] K, float[1,1,32] V, float[1,2,7,16] PK, float[1,2,7,16] PV)",
        "Y, Pk, Pv = com.microsoft.GroupQueryAttention <num_heads = 4, kv_num_heads = 2>"
        " (Q, K, V, PK, PV, Sl, T)",
    ),
}


@pytest.mark.parametrize("case", sorted(ORT_CASES))
def test_contrib_shapes_match_onnxruntime(case: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    outputs, signature, body = ORT_CASES[case]
    model = onnx.parser.parse_model(f"{HEADER}\ng {signature} => ({outputs}) {{ {body} }}")
    for vo in model.graph.output:  # declared without a shape: both sides infer it
        vo.type.tensor_type.ClearField("shape")
    model.graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.array([7], np.int32), "Sl"),
            onnx.numpy_helper.from_array(np.array(8, np.int32), "T"),
        ]
        if case == "GroupQueryAttention"
        else []
    )
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        high = 2 if np.issubdtype(dtype, np.integer) else 1
        feeds[vi.name] = np.asarray(rng.integers(0, high, shape) if high == 2 else rng.random(shape) + 0.5)
        feeds[vi.name] = feeds[vi.name].astype(dtype)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    actual = [tuple(o.shape) for o in session.run(None, feeds)]
    graph = load_graph(model)
    ours = [graph.tensor(name).shape for name in graph.nodes[-1].outputs]
    assert ours == actual
