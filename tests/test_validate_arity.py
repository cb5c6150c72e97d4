"""A node must give as many inputs and outputs as its ONNX schema allows at the model's opset; the bounds are
onnx's own schemas (``onnx.defs``), so each case below is checked against the ONNX operator docs' counts."""

from __future__ import annotations

import onnx
import onnx.parser
import pytest

from estimator.errors import ModelFormatError
from estimator.graph.load import load_graph


def _model(body: str, opset: int = 17, extra_domain: str = "") -> onnx.ModelProto:
    imports = f'"" : {opset}' + extra_domain
    return onnx.parser.parse_model(
        f"""<ir_version: 8, opset_import: [{imports}]>
        g (float[1,3,8,8] x, float[4,3,3,3] w, float[4] b) => (float[1,4,6,6] y) {{ {body} }}"""
    )


def test_optional_trailing_inputs_may_be_omitted():
    """Conv takes 2 to 3 inputs (X, W, optional B): both counts load."""
    assert load_graph(_model("y = Conv(x, w)")).nodes[0].op_type == "Conv"
    assert load_graph(_model("y = Conv(x, w, b)")).nodes[0].op_type == "Conv"


def test_too_few_inputs_are_refused_with_the_schema_bounds():
    with pytest.raises(
        ModelFormatError, match=r"has 1 inputs, but Conv at opset 17 takes 2 to 3; .*re-export"
    ):
        load_graph(_model("y = Conv(x)"))


def test_too_many_inputs_are_refused():
    model = _model("y = Conv(x, w, b)")
    model.graph.node[0].input.append("b")
    with pytest.raises(ModelFormatError, match=r"has 4 inputs, but Conv at opset 17 takes 2 to 3"):
        load_graph(model)


def test_too_many_outputs_are_refused():
    """Relu has exactly one output."""
    model = _model("y = Conv(x, w, b)")
    relu = onnx.helper.make_node("Relu", ["y"], ["r", "extra"], name="relu")
    model.graph.node.append(relu)
    with pytest.raises(
        ModelFormatError, match=r"node 'relu' \(Relu\) has 2 outputs, but Relu at opset 17 takes 1"
    ):
        load_graph(model)


def test_variadic_inputs_name_their_lower_bound():
    """Sum takes one or more inputs: zero is refused as 'at least 1'."""
    model = _model("y = Conv(x, w, b)")
    model.graph.node.append(onnx.helper.make_node("Sum", [], ["s"], name="sum"))
    with pytest.raises(ModelFormatError, match=r"Sum at opset 17 takes at least 1"):
        load_graph(model)


def test_the_bounds_follow_the_imported_opset():
    """Clip's min/max became inputs at opset 11: Clip(x, lo, hi) is malformed at opset 10 (one input)."""
    body = "lo = Constant<value = float {0.0}>() hi = Constant<value = float {6.0}>() c = Clip(x, lo, hi) y = Conv(c, w, b)"
    load_graph(_model(body, opset=11))
    with pytest.raises(ModelFormatError, match=r"Clip at opset 10 takes 1;"):
        load_graph(_model(body, opset=10))


def test_ops_without_an_onnx_schema_are_left_to_the_costing_rules():
    """A contrib-domain op has no schema in the onnx package: its count is not judged here."""
    model = _model("y = Conv(x, w, b) f = com.microsoft.FusedGemm(x)", extra_domain=', "com.microsoft" : 1')
    graph = load_graph(model)
    assert [n.op_type for n in graph.nodes] == ["Conv", "FusedGemm"]
