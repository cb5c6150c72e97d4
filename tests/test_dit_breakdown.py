"""``scripts/dit_breakdown.py``: the bytes and launches of diffusers' float32 upcasts that an exported graph lacks,
on a hand-made graph whose node names follow the exporter's module paths."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from estimator.graph.load import load_graph

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "dit_breakdown.py"


@cache
def _script():
    spec = importlib.util.spec_from_file_location("dit_breakdown", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["dit_breakdown"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _graph(shape: tuple[int, ...]):
    """X -> a query-norm Pow, a feed-forward Pow, an attention Neg and a block's norm2 LayerNormalization."""
    n = shape[-1]
    nodes = [
        helper.make_node("Pow", ["X", "two"], ["q2"], name="/transformer_blocks.0/attn/norm_q/node_pow_1"),
        helper.make_node("Pow", ["X", "two"], ["f2"], name="/transformer_blocks.0/ff/node_pow_9"),
        helper.make_node("Neg", ["X"], ["neg"], name="/blocks.0/attn1/node_neg"),
        helper.make_node(
            "LayerNormalization", ["X", "scale"], ["ln"], name="/blocks.0/norm2/node_layer_norm", axis=-1
        ),
        helper.make_node("Sum", ["q2", "f2", "neg", "ln"], ["Y"], name="/out/node_sum"),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, list(shape))],
        [
            numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
            numpy_helper.from_array(np.ones(n, dtype=np.float32), "scale"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return load_graph(model.SerializeToString())


def test_upcast_bytes_per_model_follow_the_eager_byte_counts() -> None:
    shape = (2, 5, 8)
    elements = int(np.prod(shape))
    # Per element, bytes read + written in bfloat16 eager (float32 intermediates) minus the graph's bfloat16 ops:
    rmsnorm = (2 + 4) + (4 + 4) + 4 + (2 + 4) + (4 + 2) + (2 + 2) - ((2 + 2) + 2 + (2 + 2) + (2 + 2))
    rotary = 2 + 4 + 2 * (2 + 4) + 2 * (4 + 4) + (8 + 4) + (4 + 2) - (2 + 4 + 4 + 4 + (4 + 2))
    fp32_layer_norm = (2 + 4) + (4 + 4) + (4 + 2) - (2 + 2)
    assert (rmsnorm, rotary, fp32_layer_norm) == (20, 32, 16)
    script = _script()
    graph = _graph(shape)

    hunyuan = script.eager_upcasts(graph, "dit-hunyuandit-toy")
    # The query norm's Pow, the Neg (x has twice its elements: the Neg sees one half of x) and norm2; never the
    # feed-forward Pow.
    assert hunyuan.extra_bytes == elements * (rmsnorm + 2 * rotary + fp32_layer_norm)
    assert hunyuan.extra_launches == 2 + 3 + 2
    assert hunyuan.elements == {
        "diffusers RMSNorm": elements,
        "rotary (float32)": 2 * elements,
        "FP32LayerNorm": elements,
    }

    # A model without diffusers' rotary embedding and FP32LayerNorm: only the query norm.
    pixart = script.eager_upcasts(graph, "dit-pixart-toy")
    assert pixart.extra_bytes == elements * rmsnorm
    assert pixart.extra_launches == 2


def test_graph_without_upcasts_gets_nothing() -> None:
    nodes = [helper.make_node("Relu", ["X"], ["Y"], name="/blocks.0/attn1/node_relu")]
    graph = helper.make_graph(
        nodes,
        "plain",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    up = _script().eager_upcasts(load_graph(onnx.load_from_string(model.SerializeToString())), "dit-flux-toy")
    assert (up.extra_bytes, up.extra_launches, up.elements) == (0.0, 0, {})
