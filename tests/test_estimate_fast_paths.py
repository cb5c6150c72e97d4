"""``estimate_kernels``' fast paths give the answers of the slow forms, computed here the slow way: feature
columns one by one, xgboost's own predictions on every kernel's row, the training-range rule feature by feature,
``np.add.at`` placement, per-layer rows built at once; and what they keep between calls stays bounded."""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from estimator.api import Estimator
from estimator.energy.placement import CacheLevel, place
from estimator.layers import LayerRows, layer_view
from estimator.learn import features as F
from estimator.learn import regressor as R
from estimator.zoo.nasbench201 import nasbench201
from estimator.zoo.transformers import bert_encoder

xgb = pytest.importorskip("xgboost")

CELLS = (
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|",
)
CPU = (("rpi5", "onnxruntime"), ("xeon-gold-5120", "pytorch-cpu"))


@pytest.fixture(scope="module")
def graphs():
    return [nasbench201(CELLS[0]), nasbench201(CELLS[1]), bert_encoder(batch=2, seq=16, layers=2)]


def _reference_rows(a, peak_live, model_level, input_elements, hw, batch, fixed) -> np.ndarray:
    """Feature rows the slow way: every column on its own, by name."""
    sizes = [c.size_bytes for c in hw.caches]
    llc = sizes[-1] if sizes else 1.0
    r = np.zeros((len(a), len(F.FEATURE_NAMES)))

    def col(name):
        return a[:, F._A[name]]

    def put(name, value):
        r[:, F.FEATURE_NAMES.index(name)] = value

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)

    put("log_input_elements_per_sample", np.log1p(input_elements / batch))
    flops, wb, ab, w = col("flops"), col("weight_bytes"), col("act_bytes"), col("write_bytes")
    for name, value in (("flops", flops), ("weight_bytes", wb), ("activation_read_bytes", ab)):
        put(f"log_{name}", np.log1p(value))
    put("log_write_bytes", np.log1p(w))
    put("log_launches", np.log1p(col("launches")))
    for k in F._KINDS:
        put(f"log_kernels_{k}", np.log1p(col(f"kind_{k}")))
    for c in F.OP_CATEGORIES:
        put(f"log_{c}_nodes", np.log1p(col(f"{c}_nodes")))
        put(f"log_{c}_flops", np.log1p(col(f"{c}_flops")))
    put("log_conv_kernel_elems_flop_weighted", np.log1p(ratio(col("conv_kelems_x_flops"), col("conv_flops"))))
    put("matrix_flops_share", ratio(col("matrix_flops"), flops))
    put("dead_flops_share", ratio(col("dead_flops"), flops))
    put("log_live_flops", np.log1p(flops - col("dead_flops")))
    put("log_live_launches", np.log1p(col("launches") - col("dead_launches")))
    put("log_arith_intensity", np.log1p(ratio(flops, wb + ab + w)))
    n_levels = len(sizes) + 1
    by_level = F._slots(a[:, F._A["level0"] : F._A["level0"] + n_levels])
    at_level = F._slots(a[:, F._A["at0"] : F._A["at0"] + n_levels])
    for i in range(F._LEVEL_SLOTS):
        put(f"log_bytes_level{i}", np.log1p(by_level[:, i]))
        put(f"log_kernels_at_level{i}", np.log1p(at_level[:, i]))
    moved = by_level.sum(axis=1)
    put("share_bytes_beyond_level0", ratio(by_level[:, 1:].sum(axis=1), moved))
    put("share_bytes_beyond_level1", ratio(by_level[:, 2:].sum(axis=1), moved))
    put("share_bytes_dram", ratio(by_level[:, -1], moved))
    mw = col("model_weight_bytes")
    put("log_weights_over_level0", np.log((mw + 1) / (sizes[0] if sizes else llc)))
    put("log_weights_over_level1", np.log((mw + 1) / (sizes[1] if len(sizes) > 1 else llc)))
    put("log_weights_over_llc", np.log((mw + 1) / llc))
    put("log_peak_live_over_llc", np.log((peak_live + 1) / llc))
    put("model_level", model_level)
    put("log_peak_live_bytes", np.log1p(peak_live))
    put("log_prior_joules", np.log(np.maximum(col("joules"), 1e-30)))
    put("log_prior_seconds", np.log(np.maximum(col("seconds"), 1e-30)))
    for part in ("compute", "memory", "static"):
        put(f"log_prior_{part}_joules", np.log1p(col(f"{part}_j") * 1e6))
    for bound in ("compute", "memory", "launch"):
        put(f"share_time_{bound}_bound", ratio(col(f"t_{bound}"), col("seconds")))
    return r + fixed


def _reference_static_additive(kernels) -> np.ndarray:
    """The hardware-free additive columns the slow way: a Python row per kernel, its nodes one by one."""
    from estimator.dtypes import dtype_bits
    from estimator.graph.liveness import dead_nodes

    nodes, graph = kernels.costs.nodes, kernels.costs.graph
    dead = dead_nodes(graph).tolist()
    rows = []
    for k in kernels.kernels:
        a = [0.0] * len(F._A_NAMES)
        a[F._A["flops"]], a[F._A["weight_bytes"]] = k.flops, k.weight_bytes
        a[F._A["act_bytes"]], a[F._A["write_bytes"]] = k.activation_read_bytes, k.write_bytes
        a[F._A["launches"]] = k.launches
        a[F._A[f"kind_{k.kind if k.kind in F._KINDS[:-1] else 'other'}"]] = 1
        if k.kind in ("contraction", "attention"):
            a[F._A["matrix_flops"]] = k.flops
        a[F._A["dead_flops"]] = sum(nodes[i].flops for i in k.nodes if dead[i])
        a[F._A["dead_launches"]] = k.launches if all(dead[i] for i in k.nodes) else 0
        for i in k.nodes:
            c = F._CATEGORY_OF.get(nodes[i].op_type)
            if c is None:
                continue
            a[F._A[f"{c}_nodes"]] += 1
            a[F._A[f"{c}_flops"]] += nodes[i].flops
            if c == "conv" and nodes[i].flops:
                inputs = graph.nodes[i].inputs
                w = graph.tensor(inputs[1]) if len(inputs) > 1 else None
                kelems = (
                    float(np.prod(w.shape[2:])) if w is not None and w.shape and len(w.shape) > 2 else 1.0
                )
                a[F._A["conv_kelems_x_flops"]] += kelems * nodes[i].flops
        a[F._A["model_weight_bytes"]] = k.weight_bytes
        a[F._A["act_elements"]] = k.activation_read_bytes * 8 / (dtype_bits(k.dtype) or 32)
        rows.append(a)
    return np.array(rows, dtype=float).reshape(len(rows), len(F._A_NAMES))


def test_static_columns_equal_the_kernel_by_kernel_reference(graphs):
    dead = nasbench201("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|")  # dead branches
    resnet = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    fusing, eager = Estimator("rpi5", runtime="tflite"), Estimator("xeon-gold-5120", runtime="pytorch-cpu")
    for model in (*graphs, dead, resnet):
        for kernels in (fusing.kernels(model), eager.kernels(model)):  # kernels of one node and of several
            fast = F.static_additive(kernels)
            assert fast.tobytes() == _reference_static_additive(kernels).tobytes()
            if model is dead:
                assert fast[:, F._A["dead_flops"]].any() and fast[:, F._A["dead_launches"]].any()


def _outside_reference(row, domain, names, tolerance=0.05):
    """The training-range rule feature by feature."""
    out = []
    for i, name in enumerate(names):
        lo, hi = domain.get(name, (-np.inf, np.inf))
        pad = tolerance * (hi - lo)
        if not lo - pad <= row[i] <= hi + pad:
            out.append(name)
    return out


@pytest.mark.parametrize(("hardware", "runtime"), CPU)
def test_feature_rows_equal_the_column_by_column_reference(graphs, hardware, runtime):
    est = Estimator(hardware, runtime=runtime)
    for model in graphs:
        kernels = est.kernels(model)
        rows = F.build_features(kernels, est.profile, est.runtime, threads=2)
        add = F._additive(kernels, rows.prior)[F.launched_kernels(kernels)]
        batch = kernels.costs.graph.batch
        fixed = F.fixed_columns(est.profile, est.runtime, rows.prior.threads, batch, kernels.dominant_dtype)
        inputs = float(sum(t.numel for t in map(kernels.costs.graph.tensor, kernels.costs.graph.inputs)))
        graph = _reference_rows(
            add.sum(axis=0)[None, :],
            np.array([rows.prior.placement.peak_live_activation_bytes]),
            np.array([float(rows.prior.placement.model_level)]),
            np.array([inputs]),
            est.profile,
            batch,
            fixed,
        )[0]
        per_kernel = _reference_rows(
            add,
            add[:, F._A["act_bytes"]] + add[:, F._A["write_bytes"]],
            add[:, F._A["own_level"]].astype(int).astype(float),
            add[:, F._A["act_elements"]],
            est.profile,
            batch,
            fixed,
        )
        np.testing.assert_array_equal(rows.graph, graph)
        np.testing.assert_array_equal(rows.kernels, per_kernel)
        distinct = F.build_features(kernels, est.profile, est.runtime, threads=2, distinct=True)
        assert len(distinct.kernels) < len(rows.kernels)  # the cells and the encoder repeat their blocks
        np.testing.assert_array_equal(distinct.kernels[distinct.kernel_row], rows.kernels)


@pytest.mark.parametrize(("hardware", "runtime"), CPU)
def test_calibrated_answers_equal_xgboost_on_every_row(graphs, hardware, runtime):
    est = Estimator(hardware, runtime=runtime)
    booster = est.model.regressor.booster_
    domain, kernel_level = est.model.sidecar["domain"], est.model.sidecar["granularity"] == "kernel"
    for model in (*graphs, graphs[0]):  # the first again: kernel rows then come from the remembered ones
        kernels = est.kernels(model)
        e = est.estimate_kernels(kernels)
        rows = F.build_features(kernels, est.profile, est.runtime)
        if kernel_level:
            factors = np.exp(booster.inplace_predict(rows.kernels.astype(np.float32)))
            per_kernel = rows.kernel_prior_joules * factors
            assert e.joules == float(per_kernel.sum())
            outside = {n for row in rows.kernels for n in _outside_reference(row, domain, F.FEATURE_NAMES)}
            assert list(e.extrapolated) == sorted(outside)
        else:
            factor = float(np.exp(booster.inplace_predict(rows.graph[None, :].astype(np.float32))[0]))
            assert e.joules == e.prior.joules * factor
            assert list(e.extrapolated) == _outside_reference(rows.graph, domain, F.FEATURE_NAMES)
        assert math.isclose(sum(layer.joules for layer in e.layers), e.joules, rel_tol=1e-9)


def test_remembered_predictions_are_bounded_and_never_pickled(monkeypatch):
    est = Estimator("xeon-gold-5120", runtime="pytorch-cpu")
    reg = est.model.regressor
    rows = F.build_features(est.kernels(nasbench201(CELLS[0])), est.profile, est.runtime).kernels
    expected = reg.booster_.inplace_predict(rows.astype(np.float32))
    monkeypatch.setattr(R, "MEMO_ROWS", 5)
    np.testing.assert_array_equal(reg.predict_distinct(rows), expected)
    np.testing.assert_array_equal(reg.predict_distinct(rows[::-1]), expected[::-1])
    assert len(reg._memo_) <= len({r.tobytes() for r in rows.astype(np.float32)})
    reg.predict_distinct(rows[:2])
    assert 0 < len(reg._memo_) <= 5
    copy = pickle.loads(pickle.dumps(reg))
    assert copy._memo_ == {}
    np.testing.assert_array_equal(copy.predict_distinct(rows), expected)


def test_training_range_check_follows_the_feature_by_feature_rule():
    rng = np.random.default_rng(3)
    names = [f"f{i}" for i in range(40)]
    domain = {n: sorted(rng.normal(size=2) * 10) for n in names[:30]}  # the last 10: no recorded range
    domain["f0"] = [1.0, 1.0]  # a feature that never varied
    check = R.DomainCheck.of(domain, names)
    rows = rng.normal(size=(50, 40)) * 12
    rows[rng.random(rows.shape) < 0.02] = np.nan
    for row in rows:
        assert check.outside(row) == _outside_reference(row, domain, names)
        assert R.outside_domain(row, domain, names) == _outside_reference(row, domain, names)
    every = sorted({n for row in rows for n in _outside_reference(row, domain, names)})
    assert sorted(check.outside(rows)) == every == R.outside_domain_any(rows, domain, names)


def test_placement_adds_bytes_as_add_at_does():
    rng = np.random.default_rng(4)
    levels = (
        CacheLevel("L1", 64e3, True, 8),
        CacheLevel("L2", 1e6, True, 8),
        CacheLevel("L3", 8e6, False, 1),
    )
    w, a, out = (rng.integers(0, 4e6, size=200).astype(float) for _ in range(3))
    p = place(levels, w, a, out, model_weight_bytes=3e6, peak_live_activation_bytes=1e6, units_used=4)
    expected = np.zeros((200, 4))
    np.add.at(expected, (np.arange(200), p.kernel_level), a + out)
    np.add.at(expected, (np.arange(200), p.weight_level), w)
    np.testing.assert_array_equal(p.bytes_by_level, expected)


def test_layer_rows_are_built_on_first_read_and_equal_the_eager_rows(graphs):
    est = Estimator("a100")
    kernels = est.kernels(graphs[2])
    e = est.estimate_kernels(kernels)
    assert isinstance(e.layers, LayerRows) and e.layers._rows is None  # nothing built yet
    scale = e.joules / e.prior.joules
    eager = layer_view(kernels, e.prior, e.prior.kernel_joules * scale)
    assert e.layers == eager and tuple(e.layers) == eager and e.layers[:3] == eager[:3]
    assert len(e.layers) == len(eager) and e.layers[0] == eager[0]
    again = pickle.loads(pickle.dumps(e))
    assert isinstance(again.layers, LayerRows) and again.layers == eager and again.joules == e.joules
    assert e.to_json(top=5)["top_layers"] == again.to_json(top=5)["top_layers"]


def test_profile_rates_are_remembered_and_unknown_dtypes_still_fail():
    from estimator.energy.hardware import load_profile
    from estimator.errors import ProfileError

    hw = load_profile("v100")
    first = [
        hw.peak_flops_per_s(d, m) for d in ("float32", "bfloat16", "float16", "int8") for m in (True, False)
    ]
    assert first == [
        hw.peak_flops_per_s(d, m) for d in ("float32", "bfloat16", "float16", "int8") for m in (True, False)
    ]
    assert hw.energy_per_flop_j("bfloat16") == hw.energy_per_flop_j("float32")  # no bf16 units: FP32's
    assert hw == load_profile("v100") and hash(hw) == hash(load_profile("v100"))
    with pytest.raises(ProfileError):
        hw.peak_flops_per_s("complex64")


def _reference_peak_live(kernels) -> int:
    """Peak live activation bytes the slow way: nodes in topological order, each read resolved through views
    one step at a time, each tensor's last reading step kept as the largest seen."""
    from estimator.energy.placement import peak_live_bytes

    report, graph = kernels.costs, kernels.costs.graph
    kernel_of, views, constant = kernels.kernel_of_node, kernels.views, graph.constant_roots
    steps = max(len(kernels.kernels), 1)
    last_use: dict[str, int] = {}
    for n, gn in zip(report.nodes, graph.nodes, strict=True):
        if n.status == "folded":
            continue
        step = kernel_of.get(n.index, 0)
        for name in gn.inputs:
            if name and name not in constant:
                while name in views:
                    name = views[name]
                last_use[name] = max(last_use.get(name, -1), step)
    sizes, born, dies = [], [], []
    for name in graph.inputs:
        info = graph.tensor(name)
        if info is not None and info.nbytes:
            sizes.append(info.nbytes)
            born.append(0)
            dies.append(last_use.get(name, 0))
    outputs = {kernels.root(o) for o in graph.outputs}
    for n in report.nodes:
        if n.status == "costed":
            start = kernel_of.get(n.index, 0)
            for tensor, nbytes in n.writes:
                sizes.append(nbytes)
                born.append(start)
                dies.append(steps - 1 if tensor in outputs else max(last_use.get(tensor, start), start))
    return peak_live_bytes(sizes, born, dies, steps)


def test_peak_live_bytes_and_kernel_arrays_equal_the_node_by_node_reference(graphs):
    from estimator.dtypes import dtype_bits
    from estimator.energy import physics as P
    from estimator.llm.steps import repeat_blocks
    from estimator.zoo.decoder_configs import DECODERS
    from estimator.zoo.decoders import decoder

    dead = nasbench201("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|")
    resnet = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    fusing, eager = Estimator("rpi5", runtime="tflite"), Estimator("xeon-gold-5120", runtime="pytorch-cpu")
    reports = [k for m in (*graphs, dead, resnet) for k in (fusing.kernels(m), eager.kernels(m))]
    llm = decoder(dataclasses.replace(DECODERS["gpt2"], layers=2))
    symbolic = {d.dim_param for vi in llm.graph.input for d in vi.type.tensor_type.shape.dim if d.dim_param}
    two_blocks = fusing.kernels(llm, batch=1, shapes={name: (8,) for name in symbolic})
    reports.append(repeat_blocks(two_blocks, 5))  # kernels repeated: a node in several kernels
    for kernels in reports:
        assert P._peak_live_activation_bytes(kernels) == _reference_peak_live(kernels)
        for dtype in (None, "float16", "int8"):
            ka = P._kernel_arrays(kernels, dtype)
            for i, k in enumerate(kernels.kernels):
                retyped = dtype is not None and k.dtype in P._FLOAT_DTYPES and dtype != k.dtype
                retyped = retyped and k.dtype not in P.kept_dtypes(kernels)
                runs = dtype if retyped else (k.dtype if k.dtype != "undefined" else "float32")
                scale = dtype_bits(dtype) / dtype_bits(k.dtype) if retyped else 1.0
                assert ka.dtypes[i] == runs
                assert ka.weight_bytes[i] == k.weight_bytes * scale
                assert ka.path_keys[ka.path_index[i]] == (runs, k.kind in ("contraction", "attention"))
