"""GatherBlockQuantized against closed forms: output shape, FLOPs, bytes of the gathered rows, parameters."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from estimator.cost.nodes import count_costs
from estimator.graph.load import load_graph

ROWS, K, BLOCK = 100, 64, 32


def _model(bits: int, zero_points: bool, indices: tuple[int, ...]) -> onnx.ModelProto:
    per_byte = 8 // bits
    inits = [
        onnx.numpy_helper.from_array(np.zeros((ROWS, K // per_byte), np.uint8), "data"),
        onnx.numpy_helper.from_array(np.ones((ROWS, K // BLOCK), np.float16), "scales"),
    ]
    inputs = ["data", "ids", "scales"]
    if zero_points:
        inits.append(
            onnx.numpy_helper.from_array(np.zeros((ROWS, -(-K // BLOCK * bits // 8)), np.uint8), "zp")
        )
        inputs.append("zp")
    node = oh.make_node(
        "GatherBlockQuantized",
        inputs,
        ["y"],
        domain="com.microsoft",
        block_size=BLOCK,
        bits=bits,
        quantize_axis=1,
    )
    graph = oh.make_graph(
        [node],
        "g",
        [oh.make_tensor_value_info("ids", onnx.TensorProto.INT64, list(indices))],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT16, None)],
        inits,
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize(("bits", "zero_points"), [(4, True), (4, False), (8, True)])
def test_gather_block_quantized_closed_form(bits, zero_points):
    indices = (2, 3)
    costs = count_costs(load_graph(_model(bits, zero_points, indices)))
    node = costs.nodes[0]
    assert node.status == "costed"
    gathered = 6
    assert costs.graph.tensor("y").shape == (2, 3, K) and costs.graph.tensor("y").dtype == "float16"
    assert node.flops == 2 * gathered * K and node.macs == 0
    data_bytes = ROWS * K * bits // 8
    scale_bytes = ROWS * (K // BLOCK) * 2
    zp_bytes = ROWS * -(-K // BLOCK * bits // 8) if zero_points else 0
    assert costs.totals.params == ROWS * K * bits // 8 + ROWS * (K // BLOCK) + (
        zp_bytes if zero_points else 0
    )
    assert costs.totals.param_bytes == data_bytes + scale_bytes + zp_bytes
    reads = {r.tensor: r.nbytes for r in node.reads}
    assert reads["data"] == data_bytes * gathered // ROWS
    assert reads["scales"] == scale_bytes * gathered // ROWS
    assert reads.get("zp", 0) == zp_bytes * gathered // ROWS
    assert node.write_bytes == gathered * K * 2
