"""TensorFlow graph execution on a GPU (``fuse="remapper"``, the ``tensorflow-gpu`` runtime): one kernel per op
except the two patterns grappler's remapper rewrites on a GPU (tensorflow/tensorflow @ 599ec86,
tensorflow/core/grappler/optimizers/remapper.cc): Conv2D + BiasAdd + Relu for float32 spatial convolutions
(_FusedConv2D) and FusedBatchNorm + [same-shape Add] + Relu (_FusedBatchNormEx). Bytes are checked against
closed forms computed here."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import parse

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.runtimes import get_runtime
from estimator.graph.load import load_graph

N, C, H = 2, 16, 12  # batch, channels (in and out), height = width of the input
F32, F16 = 4, 2  # bytes per element


def _kernels(body: str, inputs: str, output: str, weights: dict[str, tuple[int, ...]], dtype=np.float32):
    """The tensorflow-gpu kernels of a graph ``body`` whose ``weights`` are initializers (learned constants)."""
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph ({inputs}) => ({output}) {{
            {body}
        }}
        """,
        check=False,
    )
    rng = np.random.default_rng(0)
    for name, shape in weights.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(rng.random(shape).astype(dtype), name))
    onnx.checker.check_model(model)
    fusion = get_runtime("tensorflow-gpu").fusion
    assert fusion == "remapper"
    return fuse_kernels(count_costs(load_graph(model)), fuse=fusion)


def _conv_relu(
    k: int, group: int = 1, bias: bool = True, dtype: str = "float", elem=F32, np_dtype=np.float32
):
    """Conv (k x k, stride 1, no padding, optional bias) -> Relu; returns the kernels and the closed forms."""
    out = H - k + 1
    w_shape = (C, C // group, k, k)
    weights = {"W": w_shape, **({"B": (C,)} if bias else {})}
    conv_inputs = "X, W, B" if bias else "X, W"
    ks = _kernels(
        f"c = Conv <group = {group}> ({conv_inputs})\n            Y = Relu (c)",
        f"{dtype}[{N}, {C}, {H}, {H}] X",
        f"{dtype}[{N}, {C}, {out}, {out}] Y",
        weights,
        np_dtype,
    )
    x_bytes = N * C * H * H * elem
    y_bytes = N * C * out * out * elem
    w_bytes = int(np.prod(w_shape)) * elem + (C * elem if bias else 0)
    return ks, x_bytes, y_bytes, w_bytes


def test_spatial_float32_conv_with_bias_and_relu_is_one_fused_conv2d():
    ks, x_bytes, y_bytes, w_bytes = _conv_relu(3)
    assert [k.name for k in ks.kernels] == ["Conv+Relu"]
    (k,) = ks.kernels
    assert (k.activation_read_bytes, k.weight_bytes, k.write_bytes) == (x_bytes, w_bytes, y_bytes)
    assert ks.launches == 1


@pytest.mark.parametrize(
    "k, group, bias, why",
    [
        (1, 1, True, "1x1: is_spatial_conv is false"),
        (3, C, True, "depthwise: DepthwiseConv2dNative is never fused on the GPU"),
        (3, 1, False, "no bias: Conv2D -> Relu has no BiasAdd to match"),
    ],
)
def test_conv_then_relu_are_two_kernels_outside_the_pattern(k, group, bias, why):
    ks, x_bytes, y_bytes, w_bytes = _conv_relu(k, group, bias)
    assert [x.name for x in ks.kernels] == ["Conv", "Relu"], why
    conv, relu = ks.kernels
    # Keras' bias is a BiasAdd of its own where no _FusedConv2D takes it: it reads the convolution's output
    # and writes it again, one more launch.
    bias_trip = y_bytes if bias else 0
    assert (conv.activation_read_bytes, conv.weight_bytes, conv.write_bytes) == (
        x_bytes + bias_trip,
        w_bytes,
        y_bytes + bias_trip,
    )
    assert conv.launches == (2 if bias else 1)
    # The Relu reads the convolution's output back from memory and writes it again.
    assert (relu.activation_read_bytes, relu.weight_bytes, relu.write_bytes) == (y_bytes, 0, y_bytes)
    assert ks.launches == (3 if bias else 2)


def test_spatial_conv_with_bias_and_no_relu_runs_its_bias_add_apart():
    """Conv2D + BiasAdd without an activation is not fused on the GPU: Conv2D, then BiasAdd."""
    out = H - 2
    ks = _kernels(
        "Y = Conv (X, W, B)",
        f"float[{N}, {C}, {H}, {H}] X",
        f"float[{N}, {C}, {out}, {out}] Y",
        {"W": (C, C, 3, 3), "B": (C,)},
    )
    (k,) = ks.kernels
    x_bytes, y_bytes = N * C * H * H * F32, N * C * out * out * F32
    assert (k.activation_read_bytes, k.weight_bytes, k.write_bytes) == (
        x_bytes + y_bytes,
        (C * C * 9 + C) * F32,
        2 * y_bytes,
    )
    assert k.launches == ks.launches == 2


@pytest.mark.parametrize("bias", [True, False])
def test_gemm_bias_is_a_bias_add_apart(bias):
    """Keras' Dense is MatMul + BiasAdd; without cuBLASLt the remapper fuses neither on the GPU."""
    m, k_in, n = 8, 64, 32
    ks = _kernels(
        f"Y = Gemm <transB = 1> ({'A, W, B' if bias else 'A, W'})",
        f"float[{m}, {k_in}] A",
        f"float[{m}, {n}] Y",
        {"W": (n, k_in), **({"B": (n,)} if bias else {})},
    )
    (k,) = ks.kernels
    y_bytes = m * n * F32
    trip = y_bytes if bias else 0
    assert (k.activation_read_bytes, k.write_bytes) == (m * k_in * F32 + trip, y_bytes + trip)
    assert k.launches == (2 if bias else 1)


def test_float16_conv_is_not_fused():
    """IsGpuCompatibleDataType: a Conv2D fuses on the GPU for DT_FLOAT only."""
    ks, *_ = _conv_relu(3, dtype="float16", elem=F16, np_dtype=np.float16)
    assert [x.name for x in ks.kernels] == ["Conv", "Relu"]


BN_WEIGHTS = {"s": (C,), "b": (C,), "m": (C,), "v": (C,)}
Y4 = N * C * H * H * F32  # one activation tensor of the BN tests
BN_VECTORS = 4 * C * F32


def _bn_then(body: str, extra_inputs: str = ""):
    return _kernels(
        "n = BatchNormalization <epsilon = 1e-5> (X, s, b, m, v)\n            " + body,
        f"float[{N}, {C}, {H}, {H}] X" + extra_inputs,
        f"float[{N}, {C}, {H}, {H}] Y",
        BN_WEIGHTS,
    )


def test_batch_norm_and_relu_are_one_fused_batch_norm_ex():
    ks = _bn_then("Y = Relu (n)")
    assert [k.name for k in ks.kernels] == ["BatchNormalization+Relu"]
    (k,) = ks.kernels
    assert (k.activation_read_bytes, k.weight_bytes, k.write_bytes) == (Y4, BN_VECTORS, Y4)


def test_batch_norm_side_input_add_and_relu_are_one_kernel():
    ks = _bn_then("a = Add (n, S)\n            Y = Relu (a)", f", float[{N}, {C}, {H}, {H}] S")
    assert [k.name for k in ks.kernels] == ["BatchNormalization+Add+Relu"]
    (k,) = ks.kernels
    assert (k.activation_read_bytes, k.write_bytes) == (2 * Y4, Y4)


def test_batch_norm_broadcasting_add_is_not_fused():
    """Add supports broadcasting, FusedBatchNormEx does not: a per-channel Add stays its own kernel."""
    ks = _bn_then("a = Add (n, S)\n            Y = Relu (a)", f", float[1, {C}, 1, 1] S")
    assert [k.name for k in ks.kernels] == ["BatchNormalization", "Add", "Relu"]


def test_batch_norm_then_swish_is_three_kernels():
    """Keras' swish is tf.nn.silu, x * sigmoid(x): Sigmoid and Mul, neither fused with the batch norm."""
    ks = _bn_then("g = Sigmoid (n)\n            Y = Mul (n, g)")
    assert [k.name for k in ks.kernels] == ["BatchNormalization", "Sigmoid", "Mul"]
    bn, sig, mul = ks.kernels
    assert (bn.activation_read_bytes, bn.weight_bytes, bn.write_bytes) == (Y4, BN_VECTORS, Y4)
    assert (sig.activation_read_bytes, sig.write_bytes) == (Y4, Y4)
    # The Mul reads the batch norm's output and the sigmoid's: two tensors back from memory.
    assert (mul.activation_read_bytes, mul.write_bytes) == (2 * Y4, Y4)
    assert ks.launches == 3


def test_batch_norm_then_relu6_is_two_kernels():
    """Relu6 (ONNX Clip 0..6) is not IsRelu: FusedBatchNormEx does not take it."""
    ks = _kernels(
        "n = BatchNormalization <epsilon = 1e-5> (X, s, b, m, v)\n            Y = Clip (n, lo, hi)",
        f"float[{N}, {C}, {H}, {H}] X",
        f"float[{N}, {C}, {H}, {H}] Y",
        BN_WEIGHTS | {"lo": (), "hi": ()},
    )
    assert [k.name for k in ks.kernels] == ["BatchNormalization", "Clip"]


def test_elementwise_ops_are_not_fused_with_each_other():
    ks = _kernels(
        "a = Add (X, X)\n            b = Mul (a, a)\n            Y = Relu (b)",
        f"float[{N}, {C}, {H}, {H}] X",
        f"float[{N}, {C}, {H}, {H}] Y",
        {},
    )
    assert [k.name for k in ks.kernels] == ["Add", "Mul", "Relu"]
    assert [k.write_bytes for k in ks.kernels] == [Y4] * 3
