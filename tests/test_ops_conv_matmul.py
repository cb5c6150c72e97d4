"""Cost rules of conv.py, matmul.py and quantized.py on tiny text graphs, against closed forms.

Each graph holds one costed node; weights listed in ``consts`` become initializers (so they count as
parameters). Expected values are computed here from the formulas, never by the engine.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx.parser
import pytest

from estimator.cost.nodes import count_costs
from estimator.graph.load import load_graph


def totals(text: str, consts: dict[str, tuple[tuple[int, ...], str]] | None = None):
    """Parse ``text``, turn the inputs named in ``consts`` into initializers, cost the graph."""
    model = onnx.parser.parse_model(text)
    for name, (shape, dtype) in (consts or {}).items():
        (vi,) = [v for v in model.graph.input if v.name == name]
        model.graph.input.remove(vi)
        value = np.ones(shape, dtype=dtype)
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    report = count_costs(load_graph(model))
    assert dict(report.unsupported) == {}
    return report.totals


def conv_out(size: int, k: int, stride: int = 1, pad: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution/pooling window (floor mode)."""
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def dims(shape: tuple[int, ...]) -> str:
    return ",".join(str(d) for d in shape)


# --------------------------------------------------------------------------------------------------
# Conv
# --------------------------------------------------------------------------------------------------

CONV_CASES = [
    # (N, Cin, spatial, Cout, kernel, group, stride, pad, dilation, bias)
    (1, 3, (8, 8), 4, (3, 3), 1, 1, 0, 1, False),
    (2, 8, (9, 7), 16, (3, 3), 2, 2, 1, 1, True),
    (1, 16, (10, 10), 16, (3, 3), 16, 1, 1, 1, True),  # depthwise
    (1, 4, (12, 12), 8, (3, 3), 1, 1, 2, 2, False),  # dilation
    (3, 4, (20,), 6, (5,), 1, 2, 2, 1, True),  # 1-D
    (1, 2, (6, 5, 4), 4, (3, 3, 3), 2, 1, 1, 1, True),  # 3-D, grouped
]


@pytest.mark.parametrize("opset", [1, 11, 22])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv(opset: int, case: tuple) -> None:
    n, c_in, spatial, c_out, kernel, group, stride, pad, dilation, bias = case
    out_spatial = tuple(conv_out(s, k, stride, pad, dilation) for s, k in zip(spatial, kernel, strict=True))
    w_shape = (c_out, c_in // group, *kernel)
    rank = len(spatial)
    attrs = (
        f"group = {group}, strides = [{dims((stride,) * rank)}], pads = [{dims((pad,) * 2 * rank)}], "
        f"dilations = [{dims((dilation,) * rank)}]"
    )
    b_in = f", float[{c_out}] B" if bias else ""
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[{dims((n, c_in, *spatial))}] X, float[{dims(w_shape)}] W{b_in})
            => (float[{dims((n, c_out, *out_spatial))}] Y)
        {{ Y = Conv <{attrs}> (X, W{", B" if bias else ""}) }}
    """
    consts = {"W": (w_shape, "float32")} | ({"B": ((c_out,), "float32")} if bias else {})
    t = totals(text, consts)
    outputs = n * c_out * math.prod(out_spatial)
    macs = outputs * (c_in // group) * math.prod(kernel)
    assert t.macs == macs
    assert t.flops == 2 * macs + (outputs if bias else 0)
    assert t.params == math.prod(w_shape) + (c_out if bias else 0)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(auto_pad: str) -> None:
    n, c_in, hw, c_out, k, stride = 1, 3, 11, 5, 3, 2
    out = math.ceil(hw / stride) if auto_pad.startswith("SAME") else conv_out(hw, k, stride)
    text = f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[{n},{c_in},{hw},{hw}] X, float[{c_out},{c_in},{k},{k}] W)
            => (float[{n},{c_out},{out},{out}] Y)
        {{ Y = Conv <auto_pad = "{auto_pad}", strides = [{stride}, {stride}]> (X, W) }}
    """
    t = totals(text, {"W": ((c_out, c_in, k, k), "float32")})
    assert t.macs == n * c_out * out * out * c_in * k * k


@pytest.mark.parametrize("opset", [11, 22])
@pytest.mark.parametrize(("group", "bias"), [(1, False), (2, True)])
def test_conv_transpose(opset: int, group: int, bias: bool) -> None:
    n, c_in, hw, c_out, k, stride, pad = 2, 4, 5, 6, 3, 2, 1
    out = (hw - 1) * stride - 2 * pad + k
    w_shape = (c_in, c_out // group, k, k)
    b_in, b_arg = (f", float[{c_out}] B", ", B") if bias else ("", "")
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[{n},{c_in},{hw},{hw}] X, float[{dims(w_shape)}] W{b_in})
            => (float[{n},{c_out},{out},{out}] Y)
        {{ Y = ConvTranspose <group = {group}, strides = [{stride}, {stride}], pads = [1, 1, 1, 1]>
               (X, W{b_arg}) }}
    """
    consts = {"W": (w_shape, "float32")} | ({"B": ((c_out,), "float32")} if bias else {})
    t = totals(text, consts)
    macs = n * c_in * hw * hw * (c_out // group) * k * k
    assert t.macs == macs
    assert t.flops == 2 * macs + (n * c_out * out * out if bias else 0)
    assert t.params == math.prod(w_shape) + (c_out if bias else 0)


# --------------------------------------------------------------------------------------------------
# Gemm, MatMul, Einsum
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [9, 11, 13])
@pytest.mark.parametrize(
    ("trans_a", "trans_b", "alpha", "beta", "with_c"),
    [
        (0, 0, 1.0, 1.0, True),
        (1, 0, 2.0, 1.0, True),
        (0, 1, 1.0, 0.5, True),
        (1, 1, 0.5, 3.0, True),
        (0, 1, 1.0, 1.0, False),
        (0, 0, 2.0, 1.0, False),
    ],
)
def test_gemm(opset: int, trans_a: int, trans_b: int, alpha: float, beta: float, with_c: bool) -> None:
    if opset < 11 and not with_c:
        pytest.skip("C is required before Gemm-11")
    m, k, n = 3, 7, 5
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    c_in, c_arg = (f", float[{n}] C", ", C") if with_c else ("", "")
    text = f"""
        <ir_version: 7, opset_import: ["" : {opset}]>
        g (float[{dims(a_shape)}] A, float[{dims(b_shape)}] B{c_in}) => (float[{m},{n}] Y)
        {{ Y = Gemm <transA = {trans_a}, transB = {trans_b}, alpha = {alpha}, beta = {beta}> (A, B{c_arg}) }}
    """
    consts = {"B": (b_shape, "float32")} | ({"C": ((n,), "float32")} if with_c else {})
    t = totals(text, consts)
    macs = m * k * n
    extra = m * n * ((alpha != 1.0) + with_c + (with_c and beta != 1.0))
    assert t.macs == macs
    assert t.flops == 2 * macs + extra
    assert t.params == k * n + (n if with_c else 0)


MATMUL_CASES = [
    # (A shape, B shape, Y shape) per numpy.matmul
    ((3, 4), (4, 5), (3, 5)),
    ((2, 1, 3, 4), (5, 4, 6), (2, 5, 3, 6)),  # broadcast batch
    ((4,), (4, 6), (6,)),  # 1-D A
    ((2, 3, 4), (4,), (2, 3)),  # 1-D B
    ((4,), (4,), ()),  # dot product
]


@pytest.mark.parametrize("opset", [9, 13])
@pytest.mark.parametrize(("a", "b", "y"), MATMUL_CASES)
def test_matmul(opset: int, a: tuple, b: tuple, y: tuple) -> None:
    assert np.matmul(np.zeros(a), np.zeros(b)).shape == y
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[{dims(a)}] A, float[{dims(b)}] B) => (float[{dims(y)}] Y) {{ Y = MatMul(A, B) }}
    """
    t = totals(text)
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    macs = math.prod(batch) * a2[-2] * a2[-1] * b2[-1]
    assert t.macs == macs
    assert t.flops == 2 * macs
    assert t.params == 0


def test_matmul_constant_weight_is_a_parameter() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[2,8,16] A, float[16,32] W) => (float[2,8,32] Y) { Y = MatMul(A, W) }
    """
    t = totals(text, {"W": ((16, 32), "float32")})
    assert t.macs == 2 * 8 * 16 * 32
    assert t.params == 16 * 32


EINSUM_CASES = [
    # (equation, operand shapes, output shape, macs, flops)
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], (2, 3, 5), 2 * 3 * 4 * 5, 2 * 2 * 3 * 4 * 5),
    ("ij,jk", [(3, 4), (4, 5)], (3, 5), 3 * 4 * 5, 2 * 3 * 4 * 5),  # implicit output "ik"
    ("...ij,...jk->...ik", [(7, 3, 4), (4, 5)], (7, 3, 5), 7 * 3 * 4 * 5, 2 * 7 * 3 * 4 * 5),
    ("bhqd,bhkd->bhqk", [(2, 4, 6, 8), (2, 4, 5, 8)], (2, 4, 6, 5), 2 * 4 * 6 * 5 * 8, 2 * 2 * 4 * 6 * 5 * 8),
    ("i,j->ij", [(3,), (4,)], (3, 4), 0, 12),  # outer product: multiplies only
    ("ij->ji", [(3, 4)], (4, 3), 0, 0),  # transpose
    ("ij->i", [(3, 4)], (3,), 0, 3 * 4 - 3),  # row sums
    ("ii->i", [(5, 5)], (5,), 0, 0),  # diagonal
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], (2, 5), 2 * 3 * 4 + 2 * 4 * 5, 2 * (2 * 3 * 4 + 2 * 4 * 5)),
]


@pytest.mark.parametrize("opset", [12, 18])
@pytest.mark.parametrize(("equation", "shapes", "out", "macs", "flops"), EINSUM_CASES)
def test_einsum(opset: int, equation: str, shapes: list, out: tuple, macs: int, flops: int) -> None:
    assert np.einsum(equation, *[np.zeros(s) for s in shapes]).shape == out
    names = [f"I{i}" for i in range(len(shapes))]
    inputs = ", ".join(f"float[{dims(s)}] {nm}" for s, nm in zip(shapes, names, strict=True))
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g ({inputs}) => (float[{dims(out)}] Y) {{ Y = Einsum <equation = "{equation}"> ({", ".join(names)}) }}
    """
    t = totals(text)
    assert t.macs == macs
    assert t.flops == flops


# --------------------------------------------------------------------------------------------------
# Quantized ops
# --------------------------------------------------------------------------------------------------


def test_qlinear_conv() -> None:
    n, c_in, hw, c_out, k = 1, 8, 10, 16, 3
    out = hw - k + 1
    text = f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (uint8[{n},{c_in},{hw},{hw}] X, float xs, uint8 xz,
           int8[{c_out},{c_in},{k},{k}] W, float ws, int8 wz, float ys, uint8 yz, int32[{c_out}] B)
            => (uint8[{n},{c_out},{out},{out}] Y)
        {{ Y = QLinearConv(X, xs, xz, W, ws, wz, ys, yz, B) }}
    """
    consts = {
        "W": ((c_out, c_in, k, k), "int8"),
        "B": ((c_out,), "int32"),
        "xs": ((), "float32"),
        "xz": ((), "uint8"),
        "ws": ((), "float32"),
        "wz": ((), "int8"),
        "ys": ((), "float32"),
        "yz": ((), "uint8"),
    }
    t = totals(text, consts)
    outputs = n * c_out * out * out
    macs = outputs * c_in * k * k
    assert t.macs == macs
    # zero-point subtraction on X and W, requantization (4) and bias (1) per output
    assert t.flops == 2 * macs + n * c_in * hw * hw + c_out * c_in * k * k + 5 * outputs
    assert t.params == c_out * c_in * k * k + c_out


def test_conv_integer() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 13]>
        g (uint8[1,4,6,6] X, uint8[8,4,3,3] W, uint8 xz) => (int32[1,8,4,4] Y) { Y = ConvInteger(X, W, xz) }
    """
    t = totals(text, {"W": ((8, 4, 3, 3), "uint8"), "xz": ((), "uint8")})
    macs = 8 * 4 * 4 * 4 * 3 * 3
    assert t.macs == macs
    assert t.flops == 2 * macs + 4 * 6 * 6  # only X has a zero point
    assert t.params == 8 * 4 * 3 * 3


def test_matmul_integer_and_qlinear_matmul() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 13]>
        g (uint8[2,3,4] A, uint8[4,5] B, uint8 az, uint8 bz) => (int32[2,3,5] Y)
        { Y = MatMulInteger(A, B, az, bz) }
    """
    t = totals(text, {"B": ((4, 5), "uint8")})
    macs = 2 * 3 * 4 * 5
    assert t.macs == macs
    assert t.flops == 2 * macs + 2 * 3 * 4 + 4 * 5
    text = """
        <ir_version: 8, opset_import: ["" : 13]>
        g (uint8[3,4] A, float sa, uint8 az, uint8[4,5] B, float bs, uint8 bz, float ys, uint8 yz)
            => (uint8[3,5] Y)
        { Y = QLinearMatMul(A, sa, az, B, bs, bz, ys, yz) }
    """
    t = totals(text, {"B": ((4, 5), "uint8")})
    assert t.macs == 3 * 4 * 5
    assert t.flops == 2 * 3 * 4 * 5 + 3 * 4 + 4 * 5 + 4 * 3 * 5
    assert t.params == 4 * 5


@pytest.mark.parametrize("opset", [13, 19, 21])
def test_quantize_dequantize(opset: int) -> None:
    text = f"""
        <ir_version: 9, opset_import: ["" : {opset}]>
        g (float[2,3,8] X, float s, uint8 z) => (uint8[2,3,8] Q, float[2,3,8] D)
        {{ Q = QuantizeLinear(X, s, z)  D = DequantizeLinear(Q, s, z) }}
    """
    t = totals(text, {"s": ((), "float32"), "z": ((), "uint8")})
    assert t.macs == 0
    assert t.flops == (4 + 2) * 2 * 3 * 8
    assert t.params == 0


def test_dynamic_quantize_linear() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[4,16] X) => (uint8[4,16] Y, float s, uint8 z) { Y, s, z = DynamicQuantizeLinear(X) }
    """
    assert totals(text).flops == 6 * 4 * 16
