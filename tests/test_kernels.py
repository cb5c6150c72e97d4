"""Fusion into kernels: which nodes fuse, and that internal tensors do not count as memory traffic."""

from __future__ import annotations

import pytest
from conftest import parse

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.graph.load import load_graph

CONV_BN_RELU = """
<ir_version: 8, opset_import: ["" : 17]>
agraph (float[1, 8, 16, 16] X, float[16, 8, 3, 3] W, float[16] s, float[16] b, float[16] m, float[16] v)
    => (float[1, 16, 14, 14] Y) {
    c = Conv (X, W)
    n = BatchNormalization (c, s, b, m, v)
    Y = Relu (n)
}
"""


def _kernels(text, **kw):
    return fuse_kernels(count_costs(load_graph(parse(text), **kw)))


def test_conv_bn_relu_is_one_kernel_and_intermediates_stay_on_chip():
    k = _kernels(CONV_BN_RELU)
    assert [x.name for x in k.kernels] == ["Conv+BatchNormalization+Relu"]
    (kernel,) = k.kernels
    x_bytes, w_bytes, vec_bytes, y_bytes = 8 * 16 * 16 * 4, 16 * 8 * 9 * 4, 16 * 4, 16 * 14 * 14 * 4
    # These are graph inputs (not constants) in this tiny graph: all reads are activations.
    assert kernel.activation_read_bytes == x_bytes + w_bytes + 4 * vec_bytes
    assert kernel.write_bytes == y_bytes  # c and n never reach memory
    assert kernel.macs == 16 * 14 * 14 * 8 * 9
    assert k.launches == 1


def test_two_consumers_break_fusion_and_the_shared_tensor_is_written():
    k = _kernels(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[4, 32] X, float[32, 32] W) => (float[4, 32] A, float[4, 32] B) {
            h = MatMul (X, W)
            A = Relu (h)
            B = Sigmoid (h)
        }
        """
    )
    names = [x.name for x in k.kernels]
    assert names == ["MatMul", "Relu", "Sigmoid"]
    assert k.kernels[0].write_bytes == 4 * 32 * 4


def test_elementwise_chain_fuses_and_views_are_transparent():
    k = _kernels(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 3, 8] X) => (float[6, 8] Y) {
            a = Exp (X)
            s = Constant <value = int64[2] {6, 8}> ()
            r = Reshape (a, s)
            Y = Tanh (r)
        }
        """
    )
    assert [x.name for x in k.kernels] == ["Exp+Tanh"]
    kernel = k.kernels[0]
    assert kernel.activation_read_bytes == 48 * 4 and kernel.write_bytes == 48 * 4


def test_attention_pattern_is_one_kernel_and_scores_never_reach_memory():
    b, h, s, d = 1, 4, 64, 16
    k = _kernels(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{b}, {h}, {s}, {d}] Q, float[{b}, {h}, {d}, {s}] Kt, float[{b}, {h}, {s}, {d}] V)
            => (float[{b}, {h}, {s}, {d}] O) {{
            scores = MatMul (Q, Kt)
            c = Constant <value = float {{4.0}}> ()
            scaled = Div (scores, c)
            p = Softmax <axis = -1> (scaled)
            O = MatMul (p, V)
        }}
        """
    )
    assert len(k.kernels) == 1
    kernel = k.kernels[0]
    assert kernel.kind == "attention"
    qkv = 3 * b * h * s * d * 4
    assert kernel.activation_read_bytes == qkv
    assert kernel.write_bytes == b * h * s * d * 4
    assert kernel.macs == 2 * b * h * s * s * d


def test_resnet50_kernels(light_dir):
    k = fuse_kernels(count_costs(load_graph(light_dir / "light_resnet50.onnx")))
    # 53 convolutions each with its BatchNorm (and ReLU / residual add), a max pool, an average pool, the
    # classifier Gemm and the Softmax: 57 launches.
    assert k.launches == 57
    assert sum(x.name.startswith("Conv+BatchNormalization") for x in k.kernels) == 53
    total_macs = sum(x.macs for x in k.kernels)
    assert total_macs == k.costs.totals.macs


def test_eager_runtime_launches_one_kernel_per_op():
    k = fuse_kernels(count_costs(load_graph(parse(CONV_BN_RELU))), fuse=False)
    assert [x.name for x in k.kernels] == ["Conv", "BatchNormalization", "Relu"]
    y = 16 * 14 * 14 * 4
    assert [x.write_bytes for x in k.kernels] == [y, y, y]


def test_a_node_never_joins_an_earlier_kernel_while_reading_a_later_one():
    n = 64
    k = _kernels(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{n}, {n}] X, float[{n}, {n}] W, float[{n}, {n}] W2) => (float[{n}, {n}] Y) {{
            a = Relu (X)
            c = MatMul (X, W)
            d = MatMul (c, W2)
            Y = Add (a, d)
        }}
        """
    )
    assert [x.name for x in k.kernels] == ["Relu", "MatMul", "MatMul+Add"]
    tensor = n * n * 4
    # `a` must be written by the Relu kernel and read back by the last kernel.
    assert k.kernels[0].write_bytes == tensor
    assert k.kernels[2].activation_read_bytes == 3 * tensor  # c, W2 and a


ATTENTION_BLOCK = """
<ir_version: 8, opset_import: ["" : 17]>
agraph (float[1, 4, 64, 16] Q, float[1, 4, 16, 64] Kt, float[1, 4, 64, 16] V, float[16, 16] W)
    => (float[1, 4, 64, 16] Y, float[1, 4, 64, 64] S2) {
    scores = MatMul (Q, Kt)
    c = Constant <value = float {4.0}> ()
    scaled = Div (scores, c)
    p = Softmax <axis = -1> (scaled)
    o = MatMul (p, V)
    proj = MatMul (o, W)
    Y = Relu (proj)
    s2 = MatMul (Q, Kt)
    S2 = Mul (s2, c)
}
"""


def test_attention_only_fusion_keeps_the_chain_whole_and_every_other_op_alone():
    """fuse="attention" (eager PyTorch calling scaled_dot_product_attention): the full chain is one kernel whose
    scores never reach memory, exactly as the fusing runtime has it; the projection, its ReLU and a score
    MatMul with no Softmax after it (whose scale the fusing runtime would absorb) stay apart, as eager."""
    costs = count_costs(load_graph(parse(ATTENTION_BLOCK)))
    fused, eager = fuse_kernels(costs, fuse=True), fuse_kernels(costs, fuse=False)
    k = fuse_kernels(costs, fuse="attention")
    assert [x.name for x in fused.kernels] == ["MatMul+Div+Softmax+MatMul", "MatMul+Relu", "MatMul+Mul"]
    assert [x.name for x in k.kernels] == ["MatMul+Div+Softmax+MatMul", "MatMul", "Relu", "MatMul", "Mul"]
    assert k.kernels[0] == fused.kernels[0] and k.kernels[0].kind == "attention"
    b, h, s, d = 1, 4, 64, 16
    assert k.kernels[0].write_bytes == b * h * s * d * 4  # the 64 x 64 scores stay on chip
    assert [x.write_bytes for x in k.kernels[1:]] == [x.write_bytes for x in eager.kernels[4:]]
    assert sum(x.macs for x in k.kernels) == costs.totals.macs
    assert k.launches == 5 and eager.launches == 8 and fused.launches == 3


def test_fuse_takes_only_its_modes():
    costs = count_costs(load_graph(parse(CONV_BN_RELU)))
    for bad in ("all", 1, None):
        with pytest.raises(ValueError, match="fuse must be one of"):
            fuse_kernels(costs, fuse=bad)
