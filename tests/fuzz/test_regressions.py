"""Inputs the fuzz found that once broke the contract, each pinned where it was fixed."""

from __future__ import annotations

import re

import onnx
import onnx.parser
import pytest

from estimator.errors import ModelFormatError
from estimator.graph.load import load_graph

#: ``scripts/fuzz.py --family onnx_bytes --seed 2058 --cases 1`` (seed 2026 sample): one flipped bit turned the
#: field tag of a Shape node's input, leaving a Shape with no input; folding read ``node.input[0]``.
_NO_INPUT = """<ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4,8] x) => (float[N,32] y) {{
      s = {op}()  m = Constant<value = int64[1] {{32}}>()  t = Concat<axis = 0>(s, m)  y = Reshape(x, t) }}"""


@pytest.mark.parametrize("op", ["Shape", "Size"])
def test_a_shape_node_without_input_is_refused_as_malformed(op):
    """Once folded as an unknown value; a node with fewer inputs than its schema takes is now refused by name."""
    expected = f"node '{op}' ({op}) has 0 inputs, but {op} at opset 17 takes 1;"
    with pytest.raises(ModelFormatError, match=re.escape(expected)):
        load_graph(onnx.parser.parse_model(_NO_INPUT.format(op=op)), batch=1)


def test_a_stripped_small_weight_of_a_fixed_batch_model_is_rebatched_by_its_shape():
    """``scripts/fuzz.py --family onnx_proto --seed 553 --cases 1`` (seed 7 long run): an initializer with dims
    but no data (a weight stripped from the file, which the loader accepts by its shape) in a model exported
    with batch 2, estimated at batch 4; rebatching read the values of every small 1-D initializer."""
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2,4] x) => (float[2,4] y) { y = Add(x, b) }"""
    )
    model.graph.initializer.append(onnx.TensorProto(name="b", data_type=onnx.TensorProto.FLOAT, dims=[4]))
    graph = load_graph(model, batch=4)
    assert graph.tensors["x"].shape == (4, 4) and graph.tensors["y"].shape == (4, 4)
    assert graph.tensors["b"].shape == (4,)
