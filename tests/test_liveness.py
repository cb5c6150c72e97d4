"""Dead code under ``x * 0`` folding."""

from __future__ import annotations

from conftest import parse

from estimator.graph import load_graph
from estimator.liveness import dead_nodes


def test_work_feeding_only_a_multiplication_by_zero_is_dead():
    g = load_graph(
        parse(
            """
            <ir_version: 8, opset_import: ["" : 17]>
            agraph (float[1, 4, 8, 8] X, float[4, 4, 3, 3] W) => (float[1, 4, 8, 8] Y) {
                c = Conv <pads = [1, 1, 1, 1]> (X, W)
                r = Relu (c)
                z = Constant <value = float {0.0}> ()
                m = Mul (r, z)
                s = Sigmoid (X)
                Y = Add (m, s)
            }
            """
        )
    )
    dead = {n.op_type: bool(dead_nodes(g)[n.index]) for n in g.nodes}
    assert dead == {
        "Conv": True,
        "Relu": True,
        "Constant": False,
        "Mul": False,
        "Sigmoid": False,
        "Add": False,
    }


def test_nothing_is_dead_without_zero_multiplications(light_dir):
    g = load_graph(light_dir / "light_squeezenet.onnx")
    assert not dead_nodes(g)[[not n.constant_folded for n in g.nodes]].any()
