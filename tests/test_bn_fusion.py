"""BatchNormalization per runtime: folded into the convolution by graph runtimes, its own kernel under eager
PyTorch and TensorFlow on a GPU (whose fused convolution takes BiasAdd + Relu only), one kernel with the
element-wise ops after it under Keras 3's XLA."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import parse

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.data.importers.fischer import keras_gpu_runtime
from estimator.energy.runtimes import get_runtime
from estimator.errors import InputFileError
from estimator.graph.load import load_graph

N, C_IN, C, H, K = 2, 8, 16, 16, 3
OUT = H - K + 1  # no padding
F32 = 4  # bytes per float32


def _graph(side_input: bool = False) -> onnx.ModelProto:
    """Conv -> BatchNormalization -> [Add(side input)] -> Relu with the weights and the BN's scale, shift, mean
    and variance as initializers (learned constants), the input (and side input) as graph inputs."""
    side = f", float[{N}, {C}, {OUT}, {OUT}] S" if side_input else ""
    add = "a = Add (n, S)\n    Y = Relu (a)" if side_input else "Y = Relu (n)"
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{N}, {C_IN}, {H}, {H}] X{side}) => (float[{N}, {C}, {OUT}, {OUT}] Y) {{
            c = Conv (X, W)
            n = BatchNormalization <epsilon = 1e-5> (c, s, b, m, v)
            {add}
        }}
        """,
        check=False,
    )
    rng = np.random.default_rng(0)
    tensors = {"W": (C, C_IN, K, K), "s": (C,), "b": (C,), "m": (C,), "v": (C,)}
    for name, shape in tensors.items():
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(rng.random(shape, dtype=np.float32), name)
        )
    onnx.checker.check_model(model)
    return model


def _kernels(runtime: str, side_input: bool = False):
    return fuse_kernels(count_costs(load_graph(_graph(side_input))), fuse=get_runtime(runtime).fusion)


# Closed forms (float32): the conv's output, its input, its weights, the BN's four per-channel vectors.
Y_BYTES = N * C * OUT * OUT * F32
X_BYTES = N * C_IN * H * H * F32
W_BYTES = C * C_IN * K * K * F32
BN_VECTOR_BYTES = 4 * C * F32  # scale, shift, running mean, running variance


@pytest.mark.parametrize("runtime", ["tensorrt", "onnxruntime-cuda", "onnxruntime", "onnxruntime-cpu"])
def test_graph_runtimes_fold_batch_norm_into_the_convolution(runtime):
    k = _kernels(runtime)
    assert [x.name for x in k.kernels] == ["Conv+BatchNormalization+Relu"]
    (kernel,) = k.kernels
    assert kernel.activation_read_bytes == X_BYTES
    assert kernel.weight_bytes == W_BYTES + BN_VECTOR_BYTES
    assert kernel.write_bytes == Y_BYTES  # the conv's and the BN's outputs never reach memory


def test_tensorflow_gpu_runs_batch_norm_as_its_own_kernel_with_the_relu():
    k = _kernels("tensorflow-gpu")
    assert get_runtime("tensorflow-gpu").fusion == "remapper"
    assert [x.name for x in k.kernels] == ["Conv", "BatchNormalization+Relu"]
    conv, bn = k.kernels
    assert (conv.activation_read_bytes, conv.weight_bytes, conv.write_bytes) == (X_BYTES, W_BYTES, Y_BYTES)
    # The BN kernel reads the conv's output back and its four vectors, and writes the activation once.
    assert bn.activation_read_bytes == Y_BYTES
    assert bn.weight_bytes == BN_VECTOR_BYTES
    assert bn.write_bytes == Y_BYTES
    # x * s' + b' (2 per element), the fold of the statistics (4 per channel) and the Relu (1 per element)
    assert bn.macs == 0 and bn.flops == 3 * N * C * OUT * OUT + 4 * C
    assert k.launches == 2
    # Exactly one more round trip of the conv's output than the folded runtimes.
    fused = _kernels("tensorrt")
    traffic = sum(x.activation_read_bytes + x.weight_bytes + x.write_bytes for x in k.kernels)
    fused_traffic = sum(x.activation_read_bytes + x.weight_bytes + x.write_bytes for x in fused.kernels)
    assert traffic - fused_traffic == 2 * Y_BYTES


def test_tensorflow_gpu_fuses_batch_norm_with_side_input_and_relu():
    """_FusedBatchNormEx's second pattern: FusedBatchNorm + Add(side input) + Relu is one kernel."""
    k = _kernels("tensorflow-gpu", side_input=True)
    assert [x.name for x in k.kernels] == ["Conv", "BatchNormalization+Add+Relu"]
    bn = k.kernels[1]
    assert bn.activation_read_bytes == 2 * Y_BYTES  # the conv's output and the side input
    assert bn.write_bytes == Y_BYTES


@pytest.mark.parametrize("runtime", ["pytorch-cuda", "hf-pipeline"])
def test_eager_pytorch_runs_conv_batch_norm_and_relu_apart(runtime):
    k = _kernels(runtime)
    assert [x.name for x in k.kernels] == ["Conv", "BatchNormalization", "Relu"]
    bn = k.kernels[1]
    assert (bn.activation_read_bytes, bn.weight_bytes, bn.write_bytes) == (Y_BYTES, BN_VECTOR_BYTES, Y_BYTES)
    assert [x.write_bytes for x in k.kernels] == [Y_BYTES] * 3


def test_bn_apart_changes_nothing_in_a_graph_without_batch_norm():
    costs = count_costs(
        load_graph(
            parse(
                """
                <ir_version: 8, opset_import: ["" : 17]>
                agraph (float[1, 8, 16, 16] X, float[16, 8, 3, 3] W, float[16] B) => (float[1, 16, 14, 14] Y) {
                    c = Conv (X, W, B)
                    Y = Relu (c)
                }
                """
            )
        )
    )
    assert fuse_kernels(costs, fuse="bn-apart").kernels == fuse_kernels(costs, fuse=True).kernels


def _swish_graph() -> onnx.ModelProto:
    """Conv -> BatchNormalization -> swish (x * sigmoid(x), as Keras' swish runs: a Sigmoid and a Mul)."""
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{N}, {C_IN}, {H}, {H}] X) => (float[{N}, {C}, {OUT}, {OUT}] Y) {{
            c = Conv (X, W)
            n = BatchNormalization <epsilon = 1e-5> (c, s, b, m, v)
            g = Sigmoid (n)
            Y = Mul (n, g)
        }}
        """,
        check=False,
    )
    rng = np.random.default_rng(1)
    for name, shape in {"W": (C, C_IN, K, K), "s": (C,), "b": (C,), "m": (C,), "v": (C,)}.items():
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(rng.random(shape, dtype=np.float32), name)
        )
    return model


def test_keras3_xla_runs_batch_norm_apart_with_its_elementwise_chain():
    """tensorflow-xla-gpu (Keras 3, XLA): the conv is one cuDNN call and the BN (element-wise in Keras 3) a
    kernel apart from it. The swish reads the BN's output twice; XLA's priority fusion fuses a producer into all
    its users, so the BN's arithmetic, the Sigmoid and the Mul are one loop kernel that never writes the BN's
    output (under TensorRT the swish is a Sigmoid+Mul kernel after the conv's). Without XLA (remapper) the
    Sigmoid and the Mul are kernels of their own."""
    assert get_runtime("tensorflow-xla-gpu").fusion == "bn-apart"
    costs = count_costs(load_graph(_swish_graph()))
    xla = fuse_kernels(costs, fuse=get_runtime("tensorflow-xla-gpu").fusion)
    assert [x.name for x in xla.kernels] == ["Conv", "BatchNormalization+Sigmoid+Mul"]
    conv, bn_swish = xla.kernels
    assert (conv.activation_read_bytes, conv.write_bytes) == (X_BYTES, Y_BYTES)
    # One read of the conv's output, the BN's four vectors, one write of the swish's output.
    assert (bn_swish.activation_read_bytes, bn_swish.weight_bytes, bn_swish.write_bytes) == (
        Y_BYTES,
        BN_VECTOR_BYTES,
        Y_BYTES,
    )
    assert xla.launches == 2
    trt = fuse_kernels(costs, fuse=get_runtime("tensorrt").fusion)
    assert [x.name for x in trt.kernels] == ["Conv+BatchNormalization", "Sigmoid+Mul"]
    graph_mode = fuse_kernels(costs, fuse=get_runtime("tensorflow-gpu").fusion)
    assert [x.name for x in graph_mode.kernels] == ["Conv", "BatchNormalization", "Sigmoid", "Mul"]
    # The same as bn-apart on the Conv+BN+Relu graph: the Relu joins the BN either way.
    assert [x.name for x in _kernels("tensorflow-xla-gpu").kernels] == ["Conv", "BatchNormalization+Relu"]


@pytest.mark.parametrize(
    ("software", "runtime"),
    [
        ("Tensorflow 2.18.0", "tensorflow-xla-gpu"),
        ("Tensorflow 2.20.0", "tensorflow-xla-gpu"),
        ("TensorFlow 2.16.1", "tensorflow-xla-gpu"),
        ("Tensorflow 2.15.0", "tensorflow-gpu"),
        ("tensorflow==2.8.0", "tensorflow-gpu"),
    ],
)
def test_keras_runs_from_tensorflow_2_16_are_xla(software, runtime):
    assert keras_gpu_runtime(software) == runtime


def test_a_keras_run_without_a_tensorflow_version_is_refused():
    with pytest.raises(InputFileError, match="no TensorFlow version"):
        keras_gpu_runtime("PyTorch 1.10.2")
