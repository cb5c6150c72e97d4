"""Elementwise, activation, softmax and reduction cost rules on tiny text graphs with closed forms."""

from __future__ import annotations

import math

import pytest
from onnx import parser

from estimator.cost.nodes import CostReport, NodeCost, count_costs
from estimator.cost.ops.base import REGISTRY
from estimator.graph.load import load_graph


def cost(text: str, opset: int) -> CostReport:
    """Parse a graph body written after the opset header and cost it."""
    model = parser.parse_model(f'<ir_version: 10, opset_import: ["" : {opset}]>\n{text}')
    return count_costs(load_graph(model))


def only(report: CostReport, op_type: str) -> NodeCost:
    """The single node of ``op_type`` in ``report``."""
    [node] = [n for n in report.nodes if n.op_type == op_type]
    return node


# FLOPs per output element written down from each op's formula (the reasoning is in elementwise.py's table):
# a transcendental, compare, min/max or select counts as one.
EXPECTED_UNARY_FLOAT = {
    "Abs": 1,
    "Neg": 1,
    "Reciprocal": 1,
    "Sqrt": 1,
    "Exp": 1,
    "Log": 1,
    "Erf": 1,
    "Floor": 1,
    "Ceil": 1,
    "Round": 1,
    "Sign": 1,
    "Sin": 1,
    "Cos": 1,
    "Tan": 1,
    "Asin": 1,
    "Acos": 1,
    "Atan": 1,
    "Sinh": 1,
    "Cosh": 1,
    "Tanh": 1,
    "Asinh": 1,
    "Acosh": 1,
    "Atanh": 1,
    "Relu": 1,
    "ThresholdedRelu": 1,  # x > alpha ? x : 0
    "LeakyRelu": 2,  # compare, multiply
    "Shrink": 3,  # two compares, add/sub
    "Softsign": 3,  # abs, add, div
    "Softplus": 3,  # exp, add, log
    "Sigmoid": 4,  # neg, exp, add, div
    "HardSigmoid": 4,  # mul, add, min, max
    "Elu": 4,  # compare, exp, sub, mul
    "HardSwish": 5,  # HardSigmoid + mul
    "Selu": 5,  # Elu + mul gamma
    "Mish": 5,  # exp, add, log, tanh, mul
    "Celu": 7,  # div, exp, sub, mul, min, max, add
}


@pytest.mark.parametrize(("op", "per_element"), sorted(EXPECTED_UNARY_FLOAT.items()))
def test_unary_float_ops(op: str, per_element: int) -> None:
    report = cost(f"g (float[2,3,5] X) => (float[2,3,5] Y) {{ Y = {op}(X) }}", 18)
    node = only(report, op)
    assert node.status == "costed"
    assert (node.macs, node.flops) == (0, per_element * 30)
    assert node.activation_read_bytes == 30 * 4
    assert node.write_bytes == 30 * 4
    assert node.params == 0


def test_isnan_isinf_write_bool() -> None:
    report = cost("g (float[4,5] X) => (bool[4,5] A, bool[4,5] B) { A = IsNaN(X)\n B = IsInf(X) }", 20)
    for op in ("IsNaN", "IsInf"):
        node = only(report, op)
        assert node.flops == 20
        assert (node.activation_read_bytes, node.write_bytes) == (20 * 4, 20 * 1)


@pytest.mark.parametrize(
    ("op", "in_type", "out_type", "attrs"),
    [
        ("Add", "float", "float", ""),
        ("Sub", "float", "float", ""),
        ("Mul", "float", "float", ""),
        ("Div", "float", "float", ""),
        ("Pow", "float", "float", ""),
        ("Mod", "int32", "int32", ""),
        ("Equal", "float", "bool", ""),
        ("Greater", "float", "bool", ""),
        ("Less", "float", "bool", ""),
        ("GreaterOrEqual", "float", "bool", ""),
        ("LessOrEqual", "float", "bool", ""),
        ("And", "bool", "bool", ""),
        ("Or", "bool", "bool", ""),
        ("Xor", "bool", "bool", ""),
        ("BitwiseAnd", "int32", "int32", ""),
        ("BitwiseOr", "int32", "int32", ""),
        ("BitwiseXor", "int32", "int32", ""),
        ("BitShift", "uint32", "uint32", '<direction="LEFT">'),
    ],
)
def test_binary_ops_broadcast(op: str, in_type: str, out_type: str, attrs: str) -> None:
    """One op per output element; the broadcast operand is read once at its own size."""
    report = cost(
        f"g ({in_type}[2,3,4] A, {in_type}[3,1] B) => ({out_type}[2,3,4] Y) {{ Y = {op}{attrs}(A, B) }}", 18
    )
    node = only(report, op)
    itemsize = {"float": 4, "int32": 4, "uint32": 4, "bool": 1}
    assert node.flops == 24
    assert node.activation_read_bytes == (24 + 3) * itemsize[in_type]
    assert node.write_bytes == 24 * itemsize[out_type]


def test_unary_logic_and_bitwise_not() -> None:
    report = cost(
        "g (bool[6] A, int32[6] B) => (bool[6] Y, int32[6] Z) { Y = Not(A)\n Z = BitwiseNot(B) }", 18
    )
    assert only(report, "Not").flops == 6
    assert only(report, "BitwiseNot").flops == 6


def test_where_reads_condition_and_both_branches() -> None:
    report = cost(
        "g (bool[1,1,8,8] C, float[2,4,8,8] X, float F) => (float[2,4,8,8] Y) { Y = Where(C, X, F) }", 16
    )
    node = only(report, "Where")
    n = 2 * 4 * 8 * 8
    assert node.flops == n
    assert node.activation_read_bytes == 64 * 1 + n * 4 + 4
    assert node.write_bytes == n * 4


@pytest.mark.parametrize(
    ("op", "n_inputs", "per_element"),
    [("Sum", 1, 0), ("Sum", 3, 2), ("Max", 2, 1), ("Min", 4, 3), ("Mean", 3, 3), ("Mean", 1, 0)],
)
def test_variadic(op: str, n_inputs: int, per_element: int) -> None:
    names = [f"X{i}" for i in range(n_inputs)]
    inputs = ", ".join(f"float[5,7] {x}" for x in names)
    report = cost(f"g ({inputs}) => (float[5,7] Y) {{ Y = {op}({', '.join(names)}) }}", 13)
    node = only(report, op)
    assert node.flops == per_element * 35
    assert node.activation_read_bytes == n_inputs * 35 * 4


def test_linear_bias_add_counts_as_parameter() -> None:
    """PyTorch exports a Linear's bias as Add(MatMul(...), initializer): the bias is a parameter."""
    report = cost(
        "g (float[2,3,4] X) => (float[2,3,4] Y) <float[4] B = {1.0, 2.0, 3.0, 4.0}> { Y = Add(X, B) }", 17
    )
    node = only(report, "Add")
    assert (node.params, node.param_bytes) == (4, 16)
    assert node.weight_bytes == 16
    assert node.activation_read_bytes == 24 * 4
    assert node.flops == 24


@pytest.mark.parametrize("fill", ["-inf", "-10000.0", "-3.4e38"])
def test_additive_attention_mask_is_not_a_parameter(fill: str) -> None:
    """A causal mask (0 on and below the diagonal, a huge negative above) added to scores is a buffer."""
    values = ", ".join("0.0" if col <= row else fill for row in range(4) for col in range(4))
    report = cost(
        f"g (float[1,2,4,4] S) => (float[1,2,4,4] Y) <float[4,4] M = {{{values}}}> {{ Y = Add(S, M) }}", 17
    )
    node = only(report, "Add")
    assert node.params == 0
    assert node.weight_bytes == 16 * 4
    assert node.flops == 32


@pytest.mark.parametrize("op", ["Div", "Mul", "Add", "Sub", "Pow"])
def test_scalar_constant_is_not_a_parameter(op: str) -> None:
    report = cost(f"g (float[2,3] X) => (float[2,3] Y) <float[1] C = {{8.0}}> {{ Y = {op}(X, C) }}", 17)
    node = only(report, op)
    assert node.params == 0
    assert node.weight_bytes == 4
    assert node.flops == 6


def test_integer_and_pow_operands_are_not_parameters() -> None:
    report = cost(
        "g (int64[3] S, float[3] X) => (int64[3] T, float[3] Y) "
        "<int64[3] K = {1, 2, 3}, float[3] E = {2.0, 2.0, 2.0}> { T = Add(S, K)\n Y = Pow(X, E) }",
        17,
    )
    assert only(report, "Add").params == 0
    assert only(report, "Pow").params == 0


@pytest.mark.parametrize("slope_shape", [(1,), (3, 1, 1)])
def test_prelu_slope_is_always_a_parameter(slope_shape: tuple[int, ...]) -> None:
    n_slope = math.prod(slope_shape)
    values = ", ".join(["0.25"] * n_slope)
    dims = ",".join(map(str, slope_shape))
    report = cost(
        f"g (float[1,3,4,4] X) => (float[1,3,4,4] Y) <float[{dims}] S = {{{values}}}> {{ Y = PRelu(X, S) }}",
        16,
    )
    node = only(report, "PRelu")
    assert node.flops == 2 * 48
    assert node.params == n_slope


@pytest.mark.parametrize(
    ("opset", "body", "inits", "bounds"),
    [
        (6, "Y = Clip<min=0.0, max=6.0>(X)", "", 2),
        (6, "Y = Clip(X)", "", 2),
        (11, "Y = Clip(X, lo)", "<float lo = {0.0}>", 1),
        (11, "Y = Clip(X)", "", 0),
        (13, "Y = Clip(X, lo, hi)", "<float lo = {0.0}, float hi = {6.0}>", 2),
        (13, "Y = Clip(X, , hi)", "<float hi = {6.0}>", 1),
    ],
)
def test_clip_counts_present_bounds(opset: int, body: str, inits: str, bounds: int) -> None:
    report = cost(f"g (float[2,8] X) => (float[2,8] Y) {inits} {{ {body} }}", opset)
    node = only(report, "Clip")
    assert node.flops == bounds * 16
    assert node.weight_bytes == 0  # scalar bounds are not data reads
    assert node.params == 0
    assert node.activation_read_bytes == 16 * 4


@pytest.mark.parametrize(("approximate", "per_element"), [(None, 5), ("none", 5), ("tanh", 9)])
def test_gelu_opset20(approximate: str | None, per_element: int) -> None:
    attrs = "" if approximate is None else f'<approximate="{approximate}">'
    report = cost(f"g (float[2,16,32] X) => (float[2,16,32] Y) {{ Y = Gelu{attrs}(X) }}", 20)
    assert only(report, "Gelu").flops == per_element * 2 * 16 * 32


def test_swish_opset24() -> None:
    report = cost("g (float[3,10] X) => (float[3,10] Y) { Y = Swish<alpha=1.5>(X) }", 24)
    assert only(report, "Swish").flops == 6 * 30  # alpha*x, sigmoid (4), x*


def test_cast_moves_bytes_without_flops() -> None:
    report = cost("g (float[4,6] X) => (float16[4,6] Y) { Y = Cast<to=10>(X) }", 19)
    node = only(report, "Cast")
    assert node.flops == 0
    assert (node.activation_read_bytes, node.write_bytes) == (24 * 4, 24 * 2)


def test_castlike_reads_only_its_data_input() -> None:
    report = cost("g (float[4,6] X, float16[1] T) => (float16[4,6] Y) { Y = CastLike(X, T) }", 19)
    node = only(report, "CastLike")
    assert node.flops == 0
    assert (node.activation_read_bytes, node.write_bytes) == (24 * 4, 24 * 2)


REQUIRED_ELEMENTWISE = [
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "Max",
    "Min",
    "Mean",
    "Sum",
    "Abs",
    "Neg",
    "Reciprocal",
    "Sqrt",
    "Exp",
    "Log",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Erf",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Tanh",
    "Asinh",
    "Acosh",
    "Atanh",
    "IsNaN",
    "IsInf",
    "Not",
    "And",
    "Or",
    "Xor",
    "Equal",
    "Greater",
    "Less",
    "GreaterOrEqual",
    "LessOrEqual",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "BitwiseNot",
    "Where",
    "Clip",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Gelu",
    "Mish",
    "ThresholdedRelu",
    "Shrink",
    "Swish",
    "Cast",
    "CastLike",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ArgMax",
    "ArgMin",
    "TopK",
    "CumSum",
]


@pytest.mark.parametrize("op", REQUIRED_ELEMENTWISE)
def test_every_required_op_has_a_rule(op: str) -> None:
    assert REGISTRY.lookup("", op, 21) is not None


# --- softmax family ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_family_axis_semantics(opset: int) -> None:
    """Before 13 a row is shape[axis:] with axis=1 by default; from 13 a row is shape[-1]."""
    shape = (2, 3, 4)
    elements = math.prod(shape)
    rows = shape[0] if opset < 13 else elements // shape[-1]
    report = cost(
        "g (float[2,3,4] X) => (float[2,3,4] A, float[2,3,4] B, float[2,3,4] C) "
        "{ A = Softmax(X)\n B = LogSoftmax(X)\n C = Hardmax(X) }",
        opset,
    )
    assert only(report, "Softmax").flops == 5 * elements
    assert only(report, "LogSoftmax").flops == 5 * elements + rows
    assert only(report, "Hardmax").flops == elements - rows
    softmax = only(report, "Softmax")
    assert (softmax.activation_read_bytes, softmax.write_bytes) == (elements * 4, elements * 4)


@pytest.mark.parametrize(("opset", "axis", "rows"), [(11, 2, 6), (11, 0, 1), (13, 1, 8), (13, 0, 12)])
def test_logsoftmax_explicit_axis(opset: int, axis: int, rows: int) -> None:
    report = cost(f"g (float[2,3,4] X) => (float[2,3,4] Y) {{ Y = LogSoftmax<axis={axis}>(X) }}", opset)
    assert only(report, "LogSoftmax").flops == 5 * 24 + rows


# --- reductions -------------------------------------------------------------------------------------------

REDUCE_CLOSED_FORMS = {
    "ReduceSum": lambda e, r: e - r,
    "ReduceMax": lambda e, r: e - r,
    "ReduceMin": lambda e, r: e - r,
    "ReduceProd": lambda e, r: e - r,
    "ReduceMean": lambda e, r: (e - r) + r,  # adds + one divide per row
    "ReduceLogSum": lambda e, r: (e - r) + r,  # adds + one log per row
    "ReduceSumSquare": lambda e, r: e + (e - r),  # squares + adds
    "ReduceL1": lambda e, r: e + (e - r),  # abs + adds
    "ReduceL2": lambda e, r: e + (e - r) + r,  # squares + adds + sqrt
    "ReduceLogSumExp": lambda e, r: (e - r) + e + e + (e - r) + r + r,  # max, sub, exp, sum, log, add
}


@pytest.mark.parametrize("op", sorted(REDUCE_CLOSED_FORMS))
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_ops_axes_input_opset18(op: str, keepdims: int) -> None:
    out = "float[2,1,5]" if keepdims else "float[2,5]"
    report = cost(
        f"g (float[2,3,5] X) => ({out} Y) <int64[1] ax = {{1}}> {{ Y = {op}<keepdims={keepdims}>(X, ax) }}",
        18,
    )
    node = only(report, op)
    assert node.flops == REDUCE_CLOSED_FORMS[op](30, 10)
    assert node.weight_bytes == 0  # the axes input is metadata
    assert node.activation_read_bytes == 30 * 4
    assert node.write_bytes == 10 * 4


@pytest.mark.parametrize(
    ("op", "opset", "axes_as_input"),
    [("ReduceMean", 13, False), ("ReduceMean", 18, True), ("ReduceSum", 11, False), ("ReduceSum", 13, True)],
)
def test_reduce_axes_attribute_vs_input(op: str, opset: int, axes_as_input: bool) -> None:
    if axes_as_input:
        body, inits = f"Y = {op}<keepdims=0>(X, ax)", "<int64[2] ax = {0, 2}>"
    else:
        body, inits = f"Y = {op}<keepdims=0, axes=[0, 2]>(X)", ""
    report = cost(f"g (float[4,3,6] X) => (float[3] Y) {inits} {{ {body} }}", opset)
    node = only(report, op)
    elements, rows = 72, 3
    assert node.flops == (elements if op == "ReduceMean" else elements - rows)
    assert node.weight_bytes == 0


@pytest.mark.parametrize(("noop", "expected"), [(0, 24 - 1), (1, 0)])
def test_reduce_sum_empty_axes(noop: int, expected: int) -> None:
    out = "float[2,3,4]" if noop else "float[1,1,1]"
    report = cost(f"g (float[2,3,4] X) => ({out} Y) {{ Y = ReduceSum<noop_with_empty_axes={noop}>(X) }}", 13)
    assert only(report, "ReduceSum").flops == expected


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_arg_reduce(op: str) -> None:
    report = cost(f"g (float[3,7,2] X) => (int64[3,1,2] Y) {{ Y = {op}<axis=1>(X) }}", 13)
    node = only(report, op)
    assert node.flops == 6 * (7 - 1)
    assert node.write_bytes == 6 * 8


@pytest.mark.parametrize(("opset", "k"), [(1, 5), (11, 5), (11, 1), (11, 8)])
def test_topk_heap_model(opset: int, k: int) -> None:
    if opset < 10:
        body, inits = f"V, I = TopK<k={k}, axis=1>(X)", ""
    else:
        body, inits = "V, I = TopK<axis=1>(X, K)", f"<int64[1] K = {{{k}}}>"
    report = cost(f"g (float[2,100] X) => (float[2,{k}] V, int64[2,{k}] I) {inits} {{ {body} }}", opset)
    node = only(report, "TopK")
    depth = math.floor(math.log2(k)) + 1  # compares per element against a binary heap of k
    assert node.flops == 200 * depth
    assert node.write_bytes == 2 * k * (4 + 8)
    assert node.weight_bytes == 0


def test_cumsum_one_add_per_element() -> None:
    report = cost("g (float[4,9] X) => (float[4,9] Y) <int64 ax = {1}> { Y = CumSum(X, ax) }", 14)
    node = only(report, "CumSum")
    assert node.flops == 36
    assert node.weight_bytes == 0
