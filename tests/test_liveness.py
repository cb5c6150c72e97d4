"""Dead code under ``x * 0`` folding."""

from __future__ import annotations

from conftest import parse

from estimator.graph.liveness import dead_nodes
from estimator.graph.load import load_graph


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


def test_dead_code_features_of_a_nas_bench_201_network():
    import math

    from estimator.cost.kernels import fuse_kernels
    from estimator.cost.nodes import count_costs
    from estimator.energy.hardware import load_profile
    from estimator.energy.runtimes import get_runtime
    from estimator.learn.features import FEATURE_NAMES, build_features
    from estimator.zoo import nasbench201

    # Every path to the output of each cell passes through a 'none' edge: everything before the last cell's
    # zeros is dead, and only the classifier on zeros is left.
    dead_arch = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|"
    live_arch = (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    )
    shares = []
    for arch in (dead_arch, live_arch):
        kernels = fuse_kernels(count_costs(load_graph(nasbench201(arch))))
        row = build_features(kernels, load_profile("rpi5"), get_runtime("tflite")).graph
        share = row[FEATURE_NAMES.index("dead_flops_share")]
        live = row[FEATURE_NAMES.index("log_live_flops")]
        total = row[FEATURE_NAMES.index("log_flops")]
        assert math.isclose(math.expm1(live), math.expm1(total) * (1 - share), rel_tol=1e-9)
        shares.append(share)
    assert shares[0] > 0.9 and shares[1] == 0.0
