"""The node-cost memo never changes an answer: nodes that differ in one attribute, one shape or one constant value get
their own costs; parameters shared by identical nodes are counted once; and whole reports are identical with the
memo on and off. Expected values are the closed forms of the rules (FLOPs per element, parameter counts)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onnx import parser

from estimator.cost.kernels import fuse_kernels
from estimator.cost.memo import NODE_COST_MEMO, CostTemplate, NodeCostMemo, _attributes_key
from estimator.cost.nodes import CostReport, count_costs
from estimator.graph.load import load_graph
from estimator.zoo.nasbench201 import nasbench201
from estimator.zoo.transformers import bert_encoder


def cost(text: str, opset: int = 20) -> CostReport:
    """Cost a graph body written after the opset header."""
    model = parser.parse_model(f'<ir_version: 10, opset_import: ["" : {opset}]>\n{text}')
    return count_costs(load_graph(model))


def gelu(approximate: str) -> CostReport:
    return cost(
        f"""g (float[2, 8] x) => (float[2, 8] y) {{ y = Gelu <approximate = "{approximate}"> (x) }}"""
    )


def test_one_attribute_apart_gives_two_costs():
    # Gelu: 5 FLOPs per element in the erf form, 9 in the tanh form (elementwise.py), 16 elements.
    for _ in range(2):  # the second time both come from the memo
        assert gelu("none").nodes[0].flops == 5 * 16
        assert gelu("tanh").nodes[0].flops == 9 * 16


def test_one_shape_apart_gives_two_costs():
    def matmul(n: int) -> int:
        report = cost(f"g (float[2, 8] a, float[8, {n}] b) => (float[2, {n}] y) {{ y = MatMul (a, b) }}")
        return report.nodes[0].macs

    for _ in range(2):
        assert matmul(4) == 2 * 8 * 4
        assert matmul(6) == 2 * 8 * 6


def add_constant(value: float) -> CostReport:
    values = ", ".join([repr(value)] * 4)
    return cost(f"g (float[3, 4] x) => (float[3, 4] y) <float[4] c = {{{values}}}> {{ y = Add (x, c) }}")


def test_one_constant_value_apart_gives_two_costs():
    # A constant operand of Add is a learned weight (4 parameters) unless its values make it an additive mask.
    for _ in range(2):
        assert add_constant(0.5).nodes[0].params == 4
        assert add_constant(-1e9).nodes[0].params == 0


def test_float_attributes_are_typed_and_signed():
    assert _attributes_key({"alpha": 0.0}) != _attributes_key({"alpha": -0.0})
    assert _attributes_key({"alpha": 1}) != _attributes_key({"alpha": 1.0})
    assert _attributes_key({"axes": [1]}) != _attributes_key({"axes": [1.0]})
    assert _attributes_key({"t": np.zeros(2, np.float32)}) != _attributes_key({"t": np.zeros(2, np.float16)})


def test_a_weight_read_by_identical_nodes_is_counted_once():
    report = cost(
        """g (float[2, 8] a, float[2, 8] b) => (float[2, 4] y, float[2, 4] z) <float[8, 4] w = {0.1, 0.2, 0.3, 0.4,
        0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4,
        0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4}> { y = MatMul (a, w) z = MatMul (b, w) }"""
    )
    first, second = report.nodes
    assert (first.params, second.params) == (32, 0)
    assert first.macs == second.macs == 2 * 8 * 4
    assert [r.tensor for r in second.reads] == ["b", "w"]
    assert second.writes == (("z", 2 * 4 * 4),)


def test_the_memo_is_bounded():
    memo = NodeCostMemo(limit=3)
    graph = load_graph(
        parser.parse_model(
            '<ir_version: 10, opset_import: ["" : 20]>\ng (float[2] x) => (float[2] y) { y = Relu (x) }'
        )
    )
    node = graph.nodes[0]
    for k in range(7):
        memo.put(("key", k), CostTemplate("zero-cost", "float32", (), ()), graph, node, (), [])
        assert len(memo) <= 3


def _answers(report: CostReport) -> tuple:
    kernels = [fuse_kernels(report, fuse=f) for f in (True, False)]
    return (
        report.nodes,
        report.unsupported,
        report.not_costed,
        report.flags,
        [(k.kernels, dict(k.kernel_of_node)) for k in kernels],
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda: nasbench201(
            "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
        ),
        lambda: nasbench201(
            "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|nor_conv_3x3~1|skip_connect~2|",
            fold_batchnorm=True,
        ),
        lambda: bert_encoder(layers=2, hidden=64, heads=4, ffn=256, batch=2, seq=16),
    ],
)
def test_reports_are_identical_with_the_memo_on_and_off(build):
    graph = load_graph(build())
    NODE_COST_MEMO.enabled = False
    try:
        off = _answers(count_costs(graph))
    finally:
        NODE_COST_MEMO.enabled = True
    first, again = _answers(count_costs(graph)), _answers(count_costs(graph))  # fills the memo, then reads it
    assert off == first == again
    assert all(dataclasses.is_dataclass(n) for n in again[0])
