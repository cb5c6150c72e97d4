"""The estimate path's fast paths give the answers of the slow ones: the trees walked as numpy arrays predict what
xgboost predicts, bit for bit; small initializers read directly equal ONNX's reader; quantities kept with a
KernelReport are computed once and equal a fresh computation."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from estimator.api import Estimator
from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.physics import kernel_arrays, peak_live_activation_bytes
from estimator.graph.load import load_graph
from estimator.graph.reading import node_views, to_array_fast
from estimator.learn.features import FEATURE_NAMES, build_features
from estimator.learn.forest import Forest
from estimator.learn.regressor import ResidualRegressor
from estimator.zoo.nasbench201 import nasbench201

xgb = pytest.importorskip("xgboost")

CELLS = (
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|",
)


def _rows(rng: np.random.Generator, n: int, features: int, missing: float) -> np.ndarray:
    """Rows spanning many magnitudes (so that they fall on both sides of many splits), some values NaN."""
    x = rng.standard_normal((n, features)) * rng.choice([1e-3, 1.0, 10.0, 1e3, 1e6], size=(n, features))
    x[rng.random(x.shape) < missing] = np.nan
    return x.astype(np.float32)


def test_forest_predicts_bit_identically_to_xgboost_on_a_freshly_trained_model():
    rng = np.random.default_rng(0)
    x = _rows(rng, 400, 12, 0.0)
    y = np.sin(np.nan_to_num(x[:, 0])) + 0.1 * np.log1p(np.abs(x[:, 3]))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values seen in training: learned default directions
    reg = ResidualRegressor(n_estimators=40, max_depth=5, n_jobs=1).fit(x, y)
    forest = Forest.of(reg.booster_)
    assert forest is not None and forest.depth == 5
    for missing in (0.0, 0.1):
        rows = _rows(rng, 300, 12, missing)
        expected = reg.booster_.inplace_predict(rows)
        np.testing.assert_array_equal(forest.predict(rows), expected)
        np.testing.assert_array_equal(reg.predict(rows), expected)
        np.testing.assert_array_equal(
            reg.predict_distinct(np.concatenate([rows, rows[::-1]])), [*expected, *expected[::-1]]
        )


@pytest.mark.parametrize(
    ("hardware", "runtime"), [("rpi5", "onnxruntime"), ("xeon-gold-5120", "pytorch-cpu")]
)
def test_shipped_models_predict_bit_identically_to_xgboost(hardware, runtime):
    est = Estimator(hardware, runtime=runtime)
    booster = est.model.regressor.booster_
    feature_rows = []
    for arch in CELLS:
        kernels = est.kernels(nasbench201(arch))
        rows = build_features(kernels, est.profile, est.runtime)
        feature_rows += [rows.graph[None, :], rows.kernels]
    x = np.concatenate([*feature_rows, _rows(np.random.default_rng(1), 200, len(FEATURE_NAMES), 0.05)])
    x = x.astype(np.float32)
    np.testing.assert_array_equal(est.model.regressor.predict(x), booster.inplace_predict(x))


def test_a_booster_the_forest_does_not_walk_is_left_to_xgboost():
    rng = np.random.default_rng(2)
    x = _rows(rng, 200, 4, 0.0)
    booster = xgb.train(
        {"objective": "reg:absoluteerror", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(x, label=x[:, 0]),
        num_boost_round=5,
    )
    assert Forest.of(booster) is None


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([-1.5, 0.0, 2.25], dtype=np.float64),
        np.array([[1, -2], [3, 4]], dtype=np.int64),
        np.array([7], dtype=np.int32),
        np.array([1, 0, 1], dtype=np.bool_),
        np.array([0.5, -1.0], dtype=np.float16),
        np.array([250, 3], dtype=np.uint8),
        np.zeros((0, 3), dtype=np.float32),
        np.array(3.5, dtype=np.float32),
    ],
)
def test_small_initializers_read_directly_equal_onnx_reader(array):
    raw = onnx.numpy_helper.from_array(array, "t")
    typed = onnx.helper.make_tensor("t", raw.data_type, array.shape, array.reshape(-1).tolist())
    for tensor in (raw, typed):
        got, expected = to_array_fast(tensor), onnx.numpy_helper.to_array(tensor)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_node_views_hold_the_proto_fields():
    model = nasbench201(CELLS[0])
    for view, node in zip(node_views(model.graph), model.graph.node, strict=True):
        assert (view.name, view.op_type, view.domain) == (node.name, node.op_type, node.domain)
        assert view.input == tuple(node.input) and view.output == tuple(node.output)
        assert len(view.attribute) == len(node.attribute) and not view.has_subgraphs


def test_quantities_kept_with_a_kernel_report_are_computed_once_and_equal_fresh_ones():
    model = nasbench201(CELLS[0])
    kernels = fuse_kernels(count_costs(load_graph(model)))
    calls = []
    first = kernels.derived("probe", lambda: calls.append(1) or 42)
    assert first == 42 and kernels.derived("probe", lambda: calls.append(1) or 0) == 42 and len(calls) == 1
    fresh = fuse_kernels(count_costs(load_graph(model)))
    assert peak_live_activation_bytes(kernels) == peak_live_activation_bytes(fresh)
    assert kernel_arrays(kernels, "float16") is kernel_arrays(kernels, "float16")
    assert kernel_arrays(kernels, None) is not kernel_arrays(kernels, "float16")
    with pytest.raises(ValueError):
        kernel_arrays(kernels, None).flops[0] = 1.0  # shared: read-only
    # One KernelReport used by several profiles answers as fresh reports do.
    for hardware, runtime in (("rpi5", "onnxruntime"), ("xeon-gold-5120", "pytorch-cpu"), ("a100", None)):
        est = Estimator(hardware, runtime=runtime)
        shared, own = (
            est.estimate_kernels(kernels),
            est.estimate_kernels(fuse_kernels(count_costs(load_graph(model)))),
        )
        assert shared.joules == own.joules and shared.seconds == own.seconds and shared.layers == own.layers


def _fill_model(fill: float, kernel: int) -> onnx.ModelProto:
    """x * ConstantOfShape(fill), then a MaxPool of ``kernel``: two attributes remembered by content."""
    return onnx.parser.parse_model(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 2, 8, 8] x) => (float[1, 2, {9 - kernel}, {9 - kernel}] y) {{
            s = Constant <value = int64[4] {{1, 2, 8, 8}}> ()
            z = ConstantOfShape <value = float[1] {{{fill}}}> (s)
            m = Mul (x, z)
            y = MaxPool <kernel_shape = [{kernel}, {kernel}]> (m)
        }}
        """
    )


def test_graphs_differing_in_one_attribute_get_their_own_values_and_costs():
    import estimator.graph.freeze as freeze
    import estimator.graph.validate as validate

    loaded = {(fill, k): load_graph(_fill_model(fill, k)) for fill in (0.0, 1.0) for k in (2, 3)}
    assert loaded[0.0, 2].constant_value("z").reshape(-1)[0] == 0.0
    assert loaded[1.0, 2].constant_value("z").reshape(-1)[0] == 1.0
    costs = {key: count_costs(graph) for key, graph in loaded.items()}
    assert costs[0.0, 2].nodes[-1].flops != costs[0.0, 3].nodes[-1].flops
    # Without anything remembered, the same graphs and costs.
    freeze._SMALL_TENSORS.clear()
    validate._PASSED.clear()
    for (fill, k), graph in loaded.items():
        fresh = load_graph(_fill_model(fill, k))
        assert fresh.tensors == graph.tensors and len(fresh.nodes) == len(graph.nodes)
        for a, b in zip(fresh.nodes, graph.nodes, strict=True):
            assert (a.name, a.op_type, a.inputs, a.outputs, a.constant_folded) == (
                b.name,
                b.op_type,
                b.inputs,
                b.outputs,
                b.constant_folded,
            )
            assert a.attributes.keys() == b.attributes.keys()
            assert all(np.array_equal(a.attributes[k], b.attributes[k]) for k in a.attributes)
        assert all(np.array_equal(fresh.constants[n], graph.constants[n]) for n in graph.constants)
        assert count_costs(fresh).nodes == costs[fill, k].nodes


def test_a_rule_added_after_a_lookup_is_found():
    from estimator.cost.ops.base import OpCost, Registry

    registry = Registry()
    registry.add("Foo", lambda ctx: OpCost(), since=1)
    assert registry.lookup("ai.onnx", "Foo", 13) is not None and registry.lookup("ai.onnx", "Bar", 13) is None
    newer = lambda ctx: OpCost(flops=1)  # noqa: E731
    registry.add("Foo", newer, since=13)
    registry.add("Bar", newer, since=1)
    assert registry.lookup("ai.onnx", "Foo", 13) is newer and registry.lookup("ai.onnx", "Bar", 13) is newer


def test_a_bert_is_shaped_with_one_pass_of_onnx_inference(monkeypatch):
    import estimator.graph.load as load
    from estimator.zoo.transformers import bert_encoder

    passes = []
    infer = load._infer
    monkeypatch.setattr(load, "_infer", lambda model: passes.append(1) or infer(model))
    graph = load_graph(bert_encoder(batch=2, seq=16, layers=1, hidden=64, heads=2, ffn=128, vocab=100))
    assert len(passes) == 1
    for node in graph.nodes:
        if node.op_type == "Gather":  # ONNX's formula: data[:axis] + indices + data[axis + 1:]
            data, indices = (graph.tensor(name).shape for name in node.inputs)
            axis = node.attributes.get("axis", 0) % len(data)
            assert graph.tensor(node.outputs[0]).shape == (*data[:axis], *indices, *data[axis + 1 :])
