"""Inputs the fuzz found that once broke the contract, each pinned where it was fixed."""

from __future__ import annotations

import onnx.parser
import pytest

from estimator.graph.load import load_graph

#: ``scripts/fuzz.py --family onnx_bytes --seed 2058 --cases 1`` (seed 2026 sample): one flipped bit turned the
#: field tag of a Shape node's input, leaving a Shape with no input; folding read ``node.input[0]``.
_NO_INPUT = """<ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4,8] x) => (float[N,32] y) {{
      s = {op}()  m = Constant<value = int64[1] {{32}}>()  t = Concat<axis = 0>(s, m)  y = Reshape(x, t) }}"""


@pytest.mark.parametrize("op", ["Shape", "Size"])
def test_a_shape_node_without_input_folds_nothing_instead_of_raising(op):
    graph = load_graph(onnx.parser.parse_model(_NO_INPUT.format(op=op)), batch=1)
    node = next(n for n in graph.nodes if n.op_type == op)
    assert node.inputs == ()
    assert "s" not in graph.constants  # nothing to fold from: its value stays unknown
