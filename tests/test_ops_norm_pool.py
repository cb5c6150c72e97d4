"""Cost rules of normalization.py, pooling.py and resize.py on tiny text graphs, against closed forms.

The per-element FLOP counts asserted here are the ones documented in each module's docstring.
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
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones(shape, dtype=dtype), name))
    report = count_costs(load_graph(model))
    assert dict(report.unsupported) == {}
    return report.totals


def dims(shape: tuple[int, ...]) -> str:
    return ",".join(str(d) for d in shape)


def pool_out(size: int, k: int, stride: int, pad_total: int, dilation: int = 1, ceil: bool = False) -> int:
    span = size + pad_total - dilation * (k - 1) - 1
    return (math.ceil(span / stride) if ceil else span // stride) + 1


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [9, 14, 15])
def test_batch_normalization_inference(opset: int) -> None:
    n, c, h, w = 2, 6, 5, 4
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[{n},{c},{h},{w}] X, float[{c}] s, float[{c}] b, float[{c}] m, float[{c}] v)
            => (float[{n},{c},{h},{w}] Y) {{ Y = BatchNormalization(X, s, b, m, v) }}
    """
    t = totals(text, {name: ((c,), "float32") for name in "sbmv"})
    assert t.macs == 0
    assert t.flops == 2 * n * c * h * w + 4 * c
    assert t.params == 2 * c  # scale and bias; the running mean and variance are not parameters


def test_batch_normalization_training() -> None:
    n, c, h = 4, 3, 8
    text = f"""
        <ir_version: 8, opset_import: ["" : 15]>
        g (float[{n},{c},{h}] X, float[{c}] s, float[{c}] b, float[{c}] m, float[{c}] v)
            => (float[{n},{c},{h}] Y, float[{c}] rm, float[{c}] rv)
        {{ Y, rm, rv = BatchNormalization <training_mode = 1> (X, s, b, m, v) }}
    """
    t = totals(text, {name: ((c,), "float32") for name in "sbmv"})
    assert t.flops == 6 * n * c * h + 4 * c


@pytest.mark.parametrize(("axis", "bias"), [(-1, True), (1, False), (2, True)])
def test_layer_normalization(axis: int, bias: bool) -> None:
    shape = (2, 3, 4, 5)
    normalized = shape[axis:]
    rows = math.prod(shape) // math.prod(normalized)
    b_in, b_arg = (f", float[{dims(normalized)}] B", ", B") if bias else ("", "")
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[{dims(shape)}] X, float[{dims(normalized)}] S{b_in}) => (float[{dims(shape)}] Y)
        {{ Y = LayerNormalization <axis = {axis}> (X, S{b_arg}) }}
    """
    consts = {"S": (normalized, "float32")} | ({"B": (normalized, "float32")} if bias else {})
    t = totals(text, consts)
    assert t.flops == (6 + bias) * math.prod(shape) + 3 * rows
    assert t.params == math.prod(normalized) * (1 + bias)


@pytest.mark.parametrize("opset", [18, 21])
def test_group_normalization(opset: int) -> None:
    n, c, h, w, groups = 2, 8, 3, 3, 4
    affine = groups if opset == 18 else c  # opset 18: one scale per group; 21: one per channel
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[{n},{c},{h},{w}] X, float[{affine}] S, float[{affine}] B) => (float[{n},{c},{h},{w}] Y)
        {{ Y = GroupNormalization <num_groups = {groups}> (X, S, B) }}
    """
    t = totals(text, {"S": ((affine,), "float32"), "B": ((affine,), "float32")})
    assert t.flops == 7 * n * c * h * w + 3 * n * groups
    assert t.params == 2 * affine


@pytest.mark.parametrize("opset", [6, 22])
def test_instance_normalization(opset: int) -> None:
    n, c, h, w = 2, 3, 4, 4
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[{n},{c},{h},{w}] X, float[{c}] S, float[{c}] B) => (float[{n},{c},{h},{w}] Y)
        {{ Y = InstanceNormalization(X, S, B) }}
    """
    t = totals(text, {"S": ((c,), "float32"), "B": ((c,), "float32")})
    assert t.flops == 7 * n * c * h * w + 3 * n * c
    assert t.params == 2 * c


@pytest.mark.skipif(onnx.defs.onnx_opset_version() < 23, reason="RMSNormalization needs opset 23")
def test_rms_normalization() -> None:
    shape, hidden = (2, 7, 16), 16
    text = f"""
        <ir_version: 10, opset_import: ["" : 23]>
        g (float[{dims(shape)}] X, float[{hidden}] S) => (float[{dims(shape)}] Y)
        {{ Y = RMSNormalization(X, S) }}
    """
    t = totals(text, {"S": ((hidden,), "float32")})
    assert t.flops == 4 * math.prod(shape) + 3 * 2 * 7
    assert t.params == hidden


@pytest.mark.parametrize("opset", [1, 13])
def test_lrn(opset: int) -> None:
    size = 5
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[1,16,7,7] X) => (float[1,16,7,7] Y) {{ Y = LRN <size = {size}> (X) }}
    """
    assert totals(text).flops == (size + 4) * 16 * 7 * 7


@pytest.mark.parametrize("opset", [9, 13])
def test_mean_variance_normalization(opset: int) -> None:
    n, c, h, w = 2, 3, 4, 5
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[{n},{c},{h},{w}] X) => (float[{n},{c},{h},{w}] Y) {{ Y = MeanVarianceNormalization(X) }}
    """
    assert totals(text).flops == 5 * n * c * h * w + 3 * c  # default axes (0, 2, 3): one group per channel


@pytest.mark.parametrize(("p", "root"), [(1, 0), (2, 1)])
def test_lp_normalization(p: int, root: int) -> None:
    text = f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[6,10] X) => (float[6,10] Y) {{ Y = LpNormalization <axis = 1, p = {p}> (X) }}
    """
    assert totals(text).flops == 3 * 60 + root * 6


# --------------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------------

POOL_CASES = [
    # (op, opset, kernel, stride, pads(total per dim), dilation, ceil_mode, extra attributes)
    ("MaxPool", 8, 3, 2, 0, 1, False, ""),
    ("MaxPool", 11, 3, 2, 2, 1, False, ""),
    ("MaxPool", 12, 3, 2, 2, 2, True, "dilations = [2, 2], ceil_mode = 1, "),
    ("MaxPool", 22, 2, 2, 0, 1, False, ""),
    ("AveragePool", 7, 3, 1, 2, 1, False, "count_include_pad = 1, "),
    ("AveragePool", 11, 3, 2, 2, 1, True, "ceil_mode = 1, count_include_pad = 0, "),
    ("AveragePool", 19, 3, 2, 2, 2, False, "dilations = [2, 2], count_include_pad = 1, "),
    ("AveragePool", 22, 3, 2, 2, 1, False, "count_include_pad = 0, "),
]


@pytest.mark.parametrize(("op", "opset", "k", "stride", "pad", "dilation", "ceil", "extra"), POOL_CASES)
def test_window_pool(
    op: str, opset: int, k: int, stride: int, pad: int, dilation: int, ceil: bool, extra: str
) -> None:
    n, c, hw = 2, 3, 11
    out = pool_out(hw, k, stride, pad, dilation, ceil)
    half = pad // 2
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[{n},{c},{hw},{hw}] X) => (float[{n},{c},{out},{out}] Y)
        {{ Y = {op} <{extra}kernel_shape = [{k}, {k}], strides = [{stride}, {stride}],
                    pads = [{half}, {half}, {pad - half}, {pad - half}]> (X) }}
    """
    t = totals(text)
    assert t.flops == n * c * out * out * k * k
    assert t.macs == 0


def test_lp_pool_and_global_pools() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[1,4,8,8] X) => (float[1,4,4,4] L, float[1,4,1,1] A, float[1,4,1,1] M, float[1,4,1,1] P) {
            L = LpPool <kernel_shape = [2, 2], strides = [2, 2], p = 2> (X)
            A = GlobalAveragePool(X)
            M = GlobalMaxPool(X)
            P = GlobalLpPool <p = 3> (X)
        }
    """
    elements = 4 * 8 * 8
    lp = 4 * 4 * 4 * (2 * 4 + 1)
    assert totals(text).flops == lp + elements + elements + (2 * elements + 4)


@pytest.mark.parametrize("opset", [11, 22])
def test_max_unpool_reads_no_output_shape(opset: int) -> None:
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[1,2,4,4] X, int64[1,2,4,4] I) => (float[1,2,8,8] Y)
        {{ Y = MaxUnpool <kernel_shape = [2, 2], strides = [2, 2]> (X, I) }}
    """
    t = totals(text)
    assert t.flops == 0
    assert t.write_bytes == 1 * 2 * 8 * 8 * 4


def test_roi_align_fixed_sampling() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 16]>
        g (float[1,8,16,16] X, float[5,4] rois, int64[5] bi) => (float[5,8,7,7] Y)
        { Y = RoiAlign <output_height = 7, output_width = 7, sampling_ratio = 2> (X, rois, bi) }
    """
    assert totals(text).flops == 5 * 8 * 7 * 7 * 4 * 16


# --------------------------------------------------------------------------------------------------
# Resize and Upsample
# --------------------------------------------------------------------------------------------------

#: FLOPs per output element for 1, 2 and 3 interpolated dimensions (module docstring of resize.py).
LINEAR = {1: 3, 2: 9, 3: 21}
CUBIC = {1: 7, 2: 35}


@pytest.mark.parametrize("opset", [11, 13, 18, 19])
@pytest.mark.parametrize(("mode", "per_output"), [("nearest", 0), ("linear", LINEAR[2]), ("cubic", CUBIC[2])])
def test_resize_scales(opset: int, mode: str, per_output: int) -> None:
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[1,3,5,6] X) => (float[1,3,10,12] Y) <float[4] scales = {{1.0, 1.0, 2.0, 2.0}}>
        {{ Y = Resize <mode = "{mode}"> (X, , scales) }}
    """
    t = totals(text)
    assert t.flops == per_output * 3 * 10 * 12
    assert t.params == 0  # scales are metadata, not data or parameters


@pytest.mark.parametrize("opset", [11, 13, 18, 19])
def test_resize_sizes_one_dimension(opset: int) -> None:
    text = f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[2,3,8,6] X) => (float[2,3,8,9] Y) <int64[4] sizes = {{2, 3, 8, 9}}>
        {{ Y = Resize <mode = "linear"> (X, , , sizes) }}
    """
    assert totals(text).flops == LINEAR[1] * 2 * 3 * 8 * 9


def test_resize_antialias_downscale() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[1,1,12,12] X) => (float[1,1,4,4] Y) <float[4] scales = {1.0, 1.0, 0.3333334, 0.3333334}>
        { Y = Resize <mode = "linear", antialias = 1> (X, , scales) }
    """
    taps = 2 * math.ceil(12 / 4)  # the linear filter stretched by 1 / scale
    per_output = (2 * taps - 1) * taps + (2 * taps - 1)
    assert totals(text).flops == per_output * 16


def test_resize_opset10_and_upsample() -> None:
    text = """
        <ir_version: 5, opset_import: ["" : 10]>
        g (float[1,2,3,3,4] X) => (float[1,2,6,6,8] Y) <float[5] scales = {1.0, 1.0, 2.0, 2.0, 2.0}>
        { Y = Resize <mode = "linear"> (X, scales) }
    """
    assert totals(text).flops == LINEAR[3] * 2 * 6 * 6 * 8
    text = """
        <ir_version: 4, opset_import: ["" : 9]>
        g (float[1,2,3,4] X) => (float[1,2,6,8] Y) <float[4] scales = {1.0, 1.0, 2.0, 2.0}>
        { Y = Upsample <mode = "linear"> (X, scales) }
    """
    t = totals(text)
    assert t.flops == LINEAR[2] * 2 * 6 * 8
    assert t.params == 0
    text = """
        <ir_version: 3, opset_import: ["" : 7]>
        g (float[1,2,3,4] X) => (float[1,2,6,12] Y)
        { Y = Upsample <mode = "nearest", scales = [1.0, 1.0, 2.0, 3.0]> (X) }
    """
    assert totals(text).flops == 0
