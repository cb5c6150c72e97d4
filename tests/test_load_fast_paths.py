"""Loading's fast paths give what the general code gives: the stored order accepted when it is topological (and
only then), types read once per content, typed inputs built in place as onnx.helper builds them."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper
import pytest
from onnx import parser

from estimator.graph.folding import _ints
from estimator.graph.inference import _collect_types
from estimator.graph.reading import _stored_order_if_topological, _topological_order, node_views
from estimator.zoo.nasbench201 import nasbench201
from estimator.zoo.transformers import bert_encoder

HEADER = '<ir_version: 10, opset_import: ["" : 20]>\n'


def _orders(model: onnx.ModelProto) -> tuple[list[int] | None, list[int], list[int]]:
    g = model.graph
    available = {vi.name for vi in g.input} | {t.name for t in g.initializer}
    views = node_views(g)
    fast = _stored_order_if_topological(views, available, set())
    return fast, _topological_order(g, available, set(), views=views), _topological_order(g, available, set())


@pytest.mark.parametrize(
    "model",
    [
        nasbench201(
            "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
        ),
        bert_encoder(layers=1, hidden=32, heads=2, ffn=64, batch=1, seq=8),
    ],
)
def test_a_topological_stored_order_is_kept_as_the_general_algorithm_keeps_it(model):
    fast, with_views, general = _orders(model)
    assert fast == with_views == general == list(range(len(model.graph.node)))


def test_an_order_that_is_not_topological_is_sorted_by_the_general_algorithm():
    model = parser.parse_model(HEADER + "g (float[2] x) => (float[2] z) { z = Relu (y) y = Neg (x) }")
    fast, with_views, general = _orders(model)
    assert fast is None
    assert with_views == general == [1, 0]


def test_a_name_both_given_and_produced_later_waits_for_its_producer():
    # 'x' is a graph input and also the output of the second node: the reader waits for that node.
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [
                onnx.helper.make_node("Relu", ["x"], ["y"]),
                onnx.helper.make_node("Neg", ["w"], ["x"]),
            ],
            "g",
            [
                onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2]),
                onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [2]),
            ],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        )
    )
    fast, with_views, general = _orders(model)
    assert fast is None
    assert with_views == general == [1, 0]


def test_types_read_once_per_content_equal_a_fresh_read():
    model = parser.parse_model(
        HEADER + "g (float[2, N] x, int64[3] s, float[1] c) => (float[2, N] y) { y = Mul (x, c) }"
    )
    first = _collect_types(model.graph)
    again = _collect_types(model.graph, {"N": 5})
    expected = {
        "x": (None, "float32"),  # N is symbolic
        "s": ((3,), "int64"),
        "c": ((1,), "float32"),
        "y": (None, "float32"),
    }
    assert first == expected
    assert again["x"] == ((2, 5), "float32") and again["y"] == ((2, 5), "float32")
    assert again["c"] == ((1,), "float32") and again["s"] == ((3,), "int64")


def test_ints_read_like_int_of_each_element():
    for values in (np.array([2, 3], np.int64), np.array([2**40, 7], np.uint64), np.array([2.7, 3.0])):
        assert _ints(values) == [int(d) for d in values]
        assert all(type(v) is int for v in _ints(values))
    with pytest.raises(TypeError):  # as int() of each row raises
        _ints(np.array([[3], [4]], np.int64))
