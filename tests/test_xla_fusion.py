"""Keras 3 compiled by XLA on a GPU (``fuse="bn-apart"``, runtime ``tensorflow-xla-gpu``): element-wise diamonds
fuse into the loop kernel that produces their input (XLA's priority fusion fuses a producer into all its users),
the NCHW <-> NHWC Transposes of a channels-first export are views (Keras runs channels-last), and a Concat read
only by batch norms is fused into them (DenseNet). Bytes are
checked against closed forms computed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import parse

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.cost.xla_fusion import MAX_DIAMOND_NODES
from estimator.energy.runtimes import get_runtime
from estimator.graph.load import load_graph

N, C, H = 2, 16, 8
F32 = 4
Y = N * C * H * H * F32  # one activation tensor
BN = {"s": (C,), "b": (C,), "m": (C,), "v": (C,)}
BN_VECTORS = 4 * C * F32


def _costs(body: str, inputs: str, outputs: str, weights: dict[str, tuple[int, ...]]):
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph ({inputs}) => ({outputs}) {{
            {body}
        }}
        """,
        check=False,
    )
    rng = np.random.default_rng(0)
    for name, shape in weights.items():
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(rng.random(shape, dtype=np.float32), name)
        )
    onnx.checker.check_model(model)
    return count_costs(load_graph(model))


def _xla(costs):
    fusion = get_runtime("tensorflow-xla-gpu").fusion
    assert fusion == "bn-apart"
    return fuse_kernels(costs, fuse=fusion)


X4 = f"float[{N}, {C}, {H}, {H}] X"
Y4 = f"float[{N}, {C}, {H}, {H}] Y"
BN_NODE = "n = BatchNormalization <epsilon = 1e-5> (X, s, b, m, v)\n            "
GELU = """h = Div (n, r2)
            e = Erf (h)
            p = Add (e, one)
            q = Mul (n, p)
            Y = Mul (q, half)"""
GELU_CONSTANTS = {"r2": (1,), "one": (1,), "half": (1,)}


def test_erf_gelu_after_a_batch_norm_is_one_loop_kernel():
    """GELU(x) = x * (erf(x / sqrt 2) + 1) / 2 reads the BN's output twice; the whole diamond joins the BN."""
    ks = _xla(_costs(BN_NODE + GELU, X4, Y4, {**BN, **GELU_CONSTANTS}))
    assert [k.name for k in ks.kernels] == ["BatchNormalization+Div+Erf+Add+Mul+Mul"]
    (k,) = ks.kernels
    assert (k.activation_read_bytes, k.weight_bytes, k.write_bytes) == (Y, BN_VECTORS + 3 * F32, Y)
    # Without XLA every op is a kernel: the BN's output goes to memory and is read back twice.
    remapper = fuse_kernels(ks.costs, fuse=get_runtime("tensorflow-gpu").fusion)
    assert remapper.launches == 6


def test_a_diamond_whose_reader_is_not_element_wise_stays_apart():
    """A squeeze-and-excitation reads the activation with a reduction and a Mul: the tensor is written (the
    region does not close over element-wise ops), as before."""
    ks = _xla(
        _costs(
            BN_NODE + "g = Sigmoid (n)\n            a = Mul (n, g)\n"
            "            r = ReduceMean <axes = [2, 3], keepdims = 1> (a)\n"
            "            t = Sigmoid (r)\n            Y = Mul (a, t)",
            X4,
            Y4,
            BN,
        )
    )
    names = [k.name for k in ks.kernels]
    assert names[0] == "BatchNormalization+Sigmoid+Mul"  # the swish closes; its output has two readers
    assert len(names) == 2
    bn, squeeze = ks.kernels
    assert (bn.activation_read_bytes, bn.write_bytes) == (Y, Y)
    assert squeeze.activation_read_bytes == Y  # the swish's output, back from memory


def test_a_diamond_after_a_contraction_is_not_pulled_into_it():
    """A library GEMM / cuDNN call takes no GELU (cudnn_fused_conv_rewriter: bias, side input, Relu only): the
    diamond after a MatMul stays a loop kernel of its own that reads the product back."""
    m, k_in = 32, 24
    ks = _xla(
        _costs(
            "n = MatMul (A, W)\n            " + GELU,
            f"float[{m}, {k_in}] A",
            f"float[{m}, {C}] Y",
            {"W": (k_in, C), **GELU_CONSTANTS},
        )
    )
    assert [k.name for k in ks.kernels] == ["MatMul", "Div+Erf+Add+Mul+Mul"]
    gelu = ks.kernels[1]
    assert (gelu.activation_read_bytes, gelu.write_bytes) == (m * C * F32, m * C * F32)


def test_a_region_beyond_the_node_limit_is_left_alone():
    """A chain of MAX_DIAMOND_NODES element-wise ops between the two readers' paths is not searched."""
    chain = "\n            ".join(f"c{i + 1} = Sigmoid (c{i})" for i in range(MAX_DIAMOND_NODES + 1)).replace(
        "(c0)", "(n)"
    )
    ks = _xla(_costs(BN_NODE + chain + f"\n            Y = Mul (n, c{MAX_DIAMOND_NODES + 1})", X4, Y4, BN))
    assert ks.kernels[0].name == "BatchNormalization"
    assert ks.kernels[0].write_bytes == Y


def _convnext_block(perm_in: str, perm_out: str):
    """Depthwise conv -> Transpose -> LayerNorm over channels -> Transpose back -> residual Add (timm's ConvNeXt
    block without its MLP)."""
    return _costs(
        f"""d = Conv <group = {C}, pads = [1, 1, 1, 1]> (X, W, B)
            t = Transpose <perm = {perm_in}> (d)
            l = LayerNormalization <axis = -1> (t, g, be)
            u = Transpose <perm = {perm_out}> (l)
            Y = Add (u, X)""",
        X4,
        Y4,
        {"W": (C, 1, 3, 3), "B": (C,), "g": (C,), "be": (C,)},
    )


def test_layout_transposes_are_views_under_keras_xla():
    costs = _convnext_block("[0, 2, 3, 1]", "[0, 3, 1, 2]")
    ks = _xla(costs)
    assert [k.name for k in ks.kernels] == ["Conv", "LayerNormalization+Add"]
    assert ks.launches == 2
    conv, ln = ks.kernels
    assert (conv.activation_read_bytes, conv.write_bytes) == (Y, Y)
    # The LayerNorm reads the conv's output through the (free) transpose and the residual, writes the sum.
    assert (ln.activation_read_bytes, ln.weight_bytes, ln.write_bytes) == (2 * Y, 2 * C * F32, Y)
    # Other runtimes keep them: TensorRT and the remapper launch each Transpose.
    for runtime in ("tensorrt", "tensorflow-gpu"):
        names = [k.name for k in fuse_kernels(costs, fuse=get_runtime(runtime).fusion).kernels]
        assert names.count("Transpose") == 2, runtime


@pytest.mark.parametrize("perm", ["[0, 1, 3, 2]", "[1, 0, 2, 3]"])
def test_other_permutations_stay_kernels(perm):
    ks = _xla(_convnext_block(perm, perm))
    assert [k.name for k in ks.kernels].count("Transpose") == 2


G = 8  # a dense layer's growth (output channels of its convolution)


def _dense_block(final: str):
    """Two DenseNet layers (BN, Relu, 1x1 conv; concatenated with their input), then ``final`` reads the second
    concatenation ``k2``; the block's input X is read by the first BN and the first Concat."""
    bn = {f"{v}{i}": (C + i * G,) for i in range(3) for v in "sbmv"}
    return _costs(
        f"""n0 = BatchNormalization (X, s0, b0, m0, v0)
            r0 = Relu (n0)
            y0 = Conv (r0, W0)
            k1 = Concat <axis = 1> (X, y0)
            n1 = BatchNormalization (k1, s1, b1, m1, v1)
            r1 = Relu (n1)
            y1 = Conv (r1, W1)
            k2 = Concat <axis = 1> (k1, y1)
            {final}""",
        X4,
        "float Y",
        {**bn, "W0": (G, C, 1, 1), "W1": (G, C + G, 1, 1), "W2": (G, C + 2 * G, 1, 1)},
    )


def test_dense_block_concats_are_fused_into_the_batch_norms_that_read_them():
    """Each Concat is read by a BN and by the next Concat: XLA fuses it into both, so nothing is concatenated in
    memory and each BN reads the pieces (the block's input and every earlier conv's output)."""
    costs = _dense_block("n2 = BatchNormalization (k2, s2, b2, m2, v2)\n            Y = Relu (n2)")
    ks = _xla(costs)
    launched = [k for k in ks.kernels if k.launches]
    assert [k.name for k in launched] == ["BatchNormalization+Relu", "Conv"] * 2 + ["BatchNormalization+Relu"]
    assert ks.launches == 5
    assert all(k.kind == "view" for k in ks.kernels if k.name == "Concat")
    per_channel = N * H * H * F32  # bytes of one channel of the batch
    bn0, conv0, bn1, conv1, bn2 = launched
    assert (bn0.activation_read_bytes, bn0.write_bytes) == (C * per_channel, C * per_channel)
    assert conv0.write_bytes == G * per_channel  # y0: read by the second and the third BN
    assert (bn1.activation_read_bytes, bn1.write_bytes) == ((C + G) * per_channel, (C + G) * per_channel)
    assert conv1.write_bytes == G * per_channel
    assert bn2.activation_read_bytes == (C + 2 * G) * per_channel  # X + y0 + y1, never k2
    assert bn2.weight_bytes == 4 * (C + 2 * G) * F32
    # Each Concat launched, its output written and read back, under every other runtime's rules.
    for runtime in ("tensorrt", "tensorflow-gpu", "pytorch-cuda", "onnxruntime-cuda"):
        other = fuse_kernels(costs, fuse=get_runtime(runtime).fusion)
        concats = [k for k in other.kernels if k.name == "Concat"]
        assert [k.launches for k in concats] == [1, 1], runtime
        assert [k.write_bytes for k in concats] == [(C + G) * per_channel, (C + 2 * G) * per_channel], runtime


def test_a_concat_read_by_a_convolution_stays_a_kernel():
    """A cuDNN convolution is a custom call XLA fuses nothing into: the second Concat, read by a Conv, is written
    (and with it the first, which it reads); an Inception module's Concat stays a kernel likewise."""
    ks = _xla(_dense_block("Y = Conv (k2, W2)"))
    concats = [k for k in ks.kernels if k.name == "Concat"]
    per_channel = N * H * H * F32
    assert [k.launches for k in concats] == [1, 1]
    assert [k.write_bytes for k in concats] == [(C + G) * per_channel, (C + 2 * G) * per_channel]
    assert ks.launches == 7


def test_densenet121_launches_no_concat_under_keras_xla():
    """timm's DenseNet-121 (data/graphs): each of its 58 dense layers concatenates its inputs for its BN, and each
    of the 4 blocks concatenates its features for the next BN; under Keras/XLA none is launched, and every BN
    still reads the whole of its input (the pieces); the generic rules (fuse=True, here TensorRT's) launch all 62."""
    graph = Path(__file__).resolve().parents[1] / "data" / "graphs" / "densenet121.onnx"
    costs = count_costs(load_graph(graph, batch=2))
    concat_nodes = [n for n in costs.nodes if n.op_type == "Concat"]
    assert len(concat_nodes) == 6 + 12 + 24 + 16 + 4
    ks = _xla(costs)
    concats = [k for k in ks.kernels if k.name == "Concat"]
    assert len(concats) == 62 and not any(k.launches for k in concats)
    read_of = {n.index: sum(r.nbytes for r in n.reads if not r.weight) for n in costs.nodes}
    for k in ks.kernels:
        if k.name.startswith("BatchNormalization"):
            assert k.activation_read_bytes == read_of[k.nodes[0]]
    trt = fuse_kernels(costs, fuse=get_runtime("tensorrt").fusion)
    assert sum(k.launches for k in trt.kernels if k.name == "Concat") == 62
