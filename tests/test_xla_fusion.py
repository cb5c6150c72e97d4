"""Keras 3 compiled by XLA on a GPU (``fuse="bn-apart"``, runtime ``tensorflow-xla-gpu``): element-wise diamonds
fuse into the loop kernel that produces their input (XLA's priority fusion fuses a producer into all its users),
and the NCHW <-> NHWC Transposes of a channels-first export are views (Keras runs channels-last). Bytes are
checked against closed forms computed here."""

from __future__ import annotations

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
