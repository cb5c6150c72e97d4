"""The cross-device GPU correction on tiny synthetic tables: feature closed forms, leave-one-device-out hygiene
(the held-out GPU never trains a model nor a constant) and the product answer (calibrated vs cross-device)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import numpy_helper

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.hardware import load_profile
from estimator.energy.prior_v2 import energy_prior_v2
from estimator.energy.runtimes import get_runtime
from estimator.graph.load import load_graph
from estimator.learn import gpu_pipeline, gpu_training
from estimator.learn.features import FEATURE_NAMES
from estimator.learn.gpu_features import GPU_FEATURE_NAMES, gpu_feature_row, graph_aggregates
from tests.conftest import parse

DEVICES = ("gtx1070", "gtx1080ti", "a100")
SIZES = {"net_a": (64, 64), "net_b": (256, 128), "net_c": (512, 512), "net_d": (1024, 256)}
FACTOR = {"gtx1070": 1.3, "gtx1080ti": 1.6, "a100": 2.2}


def _mlp(k: int, m: int) -> onnx.ModelProto:
    """x[B,k] -> MatMul(w[k,m]) -> Relu -> MatMul(v[m,k]), the weights as initializers."""
    model = parse(
        f"""<ir_version: 8, opset_import: ["" : 17]>
        g (float[B,{k}] x) => (float[B,{k}] y) {{
            h = MatMul(x, w)
            r = Relu(h)
            y = MatMul(r, v)
        }}""",
        check=False,
    )
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.zeros((k, m), np.float32), "w"),
            numpy_helper.from_array(np.zeros((m, k), np.float32), "v"),
        ]
    )
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """A GpuSet of five two-layer MLPs at three batches on three GPUs; measured = v2 prior x a device factor
    x a per-network wobble (so the residual has something device- and network-dependent to learn)."""
    monkeypatch.setitem(gpu_training.GPU_PARAMS, "n_estimators", 20)
    monkeypatch.setattr(gpu_training, "FIT_MAX_ROWS", 12)
    monkeypatch.setattr(gpu_training, "FIT_STEPS", 8)
    rows = []
    for name, (k, m) in SIZES.items():
        path = tmp_path / f"{name}.onnx"
        onnx.save(_mlp(k, m), path)
        for device in DEVICES:
            hw, rt = load_profile(device), get_runtime("pytorch-cuda")
            for batch in (1, 32):
                kernels = fuse_kernels(count_costs(load_graph(path, batch=batch)), fuse=False)
                prior = energy_prior_v2(kernels, hw, runtime=rt)
                wobble = 1 + 0.1 * math.sin(k + m + batch)
                rows.append(
                    {
                        "model_ref": str(path),
                        "group": name,
                        "family": name,
                        "task": "synthetic",
                        "batch": batch,
                        "dtype": "float32",
                        "hardware": device,
                        "runtime": "pytorch-cuda",
                        "boundary": "gpu-board-nvml",
                        "joules_per_inference": prior.joules * FACTOR[device] * wobble,
                        "latency_s": None,
                        "source": "synthetic",
                    }
                )
    return gpu_training.build_gpu_set(pd.DataFrame(rows), root=tmp_path, cache_dir=tmp_path / "cache")


def test_gpu_schema_is_separate_and_relative_to_the_device():
    assert "log_intensity_over_ridge" in GPU_FEATURE_NAMES and "log_intensity_over_ridge" not in FEATURE_NAMES
    # no absolute device constant is a GPU feature (a tree cannot extrapolate in it to an unseen GPU)
    assert not {"log_peak_matrix_flops", "log_dram_bandwidth", "tdp_w"} & set(GPU_FEATURE_NAMES)


def test_feature_closed_forms_for_one_mlp():
    b, k, m = 8, 256, 128
    kernels = fuse_kernels(count_costs(load_graph(_mlp(k, m), batch=b)), fuse=False)
    hw, rt = load_profile("a100"), get_runtime("pytorch-cuda")
    prior = energy_prior_v2(kernels, hw, runtime=rt)
    row = gpu_feature_row(
        graph_aggregates(kernels, hw), prior, hw, rt, boundary="machine-total", boards=8, level="module"
    )
    f = dict(zip(GPU_FEATURE_NAMES, row, strict=True))
    flops = 2 * b * k * m * 2 + b * m  # two MatMuls, one Relu (1 FLOP per element)
    moved = 4 * ((b * k + k * m + b * m) + (b * m + b * m) + (b * m + m * k + b * k))  # MatMul, Relu, MatMul
    ridge = hw.peak_flops_per_s("float32", matrix=True) / hw.dram_bandwidth_bytes_per_s
    assert f["log_flops"] == pytest.approx(math.log1p(flops))
    assert f["log_intensity_over_ridge"] == pytest.approx(math.log((flops + 1) / moved / ridge), rel=1e-6)
    assert f["log_prior_joules"] == pytest.approx(math.log(prior.joules))
    assert f["log_prior_joules_per_sample"] == pytest.approx(math.log(prior.joules / b))
    assert f["log_prior_seconds_per_sample"] == pytest.approx(math.log(prior.seconds / b))
    assert f["share_time_host_dispatch"] == pytest.approx(min(prior.host_seconds / prior.seconds, 1))
    assert f["boundary_machine-total"] == 1 and f["boundary_gpu-board-nvml"] == 0
    assert (
        f["runtime_pytorch-cuda"] == 1
        and f["level_module"] == 1
        and f["log_boards"] == pytest.approx(math.log(8))
    )
    assert f["idle_context_over_tdp"] == pytest.approx(hw.idle_with_context_w / hw.tdp_w)


def test_leave_one_device_out_never_trains_on_the_held_out_device(synthetic, monkeypatch):
    seen: list[set[str]] = []
    real_fit = gpu_training.fit_constants

    def spy(cases, *args, **kwargs):
        seen.append({c.hw.name for c in cases})
        return real_fit(cases, *args, **kwargs)

    monkeypatch.setattr(gpu_training, "fit_constants", spy)
    real_gpu_fit = gpu_training.fit_gpu
    trained_rows: list[int] = []

    def spy_gpu(X, y, params=None, weights=None):
        trained_rows.append(len(X))
        assert weights is None or len(weights) == len(X)
        return real_gpu_fit(X, y, params, weights)

    monkeypatch.setattr(gpu_training, "fit_gpu", spy_gpu)
    devices = synthetic.table["hardware"].to_numpy()
    for held_out in DEVICES:
        seen.clear()
        trained_rows.clear()
        train, test = gpu_training.held_out_split(devices, held_out)
        assert held_out not in set(devices[train]) and set(devices[test]) == {held_out}
        out = gpu_training.predict_split(synthetic, train, test, devices)
        assert seen and all(held_out not in s for s in seen)  # every fitted constant saw only other devices
        assert max(trained_rows) == train.sum()  # no fit saw more rows than the training devices have
        assert np.all(np.isfinite(out["model"])) and len(out["model"]) == test.sum()
        assert np.all(out["interval"][0] < out["interval"][1])
    with pytest.raises(ValueError):
        gpu_training.predict_split(synthetic, test | train, test, devices)


def test_judged_only_rows_never_train_in_leave_one_device_out():
    """A judged-only source's rows (JUDGED_GPU_TABLES) are in the held-out device's test rows and in no
    training fold of any held-out device."""
    devices = np.array(["a100", "a100", "h100", "h100", "v100", "v100"])
    trainable = np.array([True, False, False, False, True, True])
    for held_out in ("a100", "h100", "v100"):
        train, test = gpu_training.held_out_split(devices, held_out, trainable)
        assert not (train & ~trainable).any()
        np.testing.assert_array_equal(test, devices == held_out)
        np.testing.assert_array_equal(train, (devices != held_out) & trainable)


def test_estimates_answer_from_calibrated_or_cross_device_model_and_say_which(synthetic, tmp_path):
    from estimator.api import Estimator
    from estimator.learn.gpu_model import CROSS_DEVICE
    from estimator.learn.gpu_store import train_one
    from estimator.learn.regressor import save_model

    devices = synthetic.table["hardware"].to_numpy()
    groups = synthetic.table["group"].to_numpy()
    store = tmp_path / "models"
    save_model(train_one(synthetic, np.ones(len(devices), bool), devices, CROSS_DEVICE, "lodo"), store)
    rows = devices == "gtx1070"
    save_model(train_one(synthetic, rows, groups, ("gtx1070", "pytorch-cuda"), "logo"), store)
    graph = _mlp(256, 128)
    cal = Estimator("gtx1070", "pytorch-cuda", models_dir=store).estimate(graph, batch=8)
    cross = Estimator("h100", "pytorch-cuda", models_dir=store).estimate(graph, batch=8)
    assert cal.correction == "calibrated" and cal.method.startswith("calibrated")
    assert cross.correction == "cross-device" and "no measurements of h100/pytorch-cuda" in cross.method
    assert cross.to_json()["correction"] == "cross-device" and cross.boundary == "gpu-board-nvml"
    for e in (cal, cross):
        assert e.interval[0] <= e.joules <= e.interval[1]
        assert e.prior.name == "energy-roofline v2"
    # the calibrated model corrects toward the device's factor (1.3 x the shipped prior on gtx1070)
    prior_only = Estimator("gtx1070", "pytorch-cuda", calibrated=False).estimate(graph, batch=8)
    assert prior_only.correction == "none"
    assert 1.0 < cal.joules / prior_only.joules < 1.7
    # A runtime the cross-device model has no rows of is answered by it but flagged as extrapolated.
    from estimator.learn.gpu_model import trained_runtimes

    assert trained_runtimes(cross_model_domain(store)) == set(synthetic.table["runtime"].unique())
    unseen = Estimator("h100", "tensorrt", models_dir=store).estimate(graph, batch=8)
    assert unseen.correction == "cross-device"
    assert unseen.extrapolated[0] == "runtime tensorrt (no training rows)"
    assert not any(f.startswith("runtime pytorch-cuda") for f in cross.extrapolated)


def test_a_users_gpu_measurements_train_the_calibrated_model_gpu_estimates_load(synthetic, tmp_path):
    """``estimate train --hw <GPU>``: the rows train a GPU-schema calibrated model (not the CPU kind, which GPU
    estimates never load); too few networks or no row at the board is one DataError line."""
    from estimator.api import Estimator
    from estimator.errors import DataError
    from estimator.learn.model_store import train_and_store

    columns = ["model_ref", "group", "family", "task", "batch", "dtype", "hardware", "runtime", "boundary"]
    t = synthetic.table
    table = t[[*columns, "joules_per_inference", "source"]][t["hardware"] == "gtx1070"].assign(
        idle_subtracted=False,
        repeats=3,
        citation="own measurement (synthetic: 1.3 x the v2 prior x a wobble)",
    )
    path = tmp_path / "mine.csv"
    table.to_csv(path, index=False)
    store = tmp_path / "models"
    lines = train_and_store([path], "gtx1070", models_dir=store)
    assert len(lines) == 1 and lines[0].startswith("gtx1070/pytorch-cuda: 8 rows (gtx1070)")
    graph = _mlp(256, 128)
    cal = Estimator("gtx1070", "pytorch-cuda", models_dir=store).estimate(graph, batch=8)
    prior_only = Estimator("gtx1070", "pytorch-cuda", calibrated=False).estimate(graph, batch=8)
    assert cal.correction == "calibrated" and "trained on 8 measurements of gtx1070" in cal.method
    assert 1.0 < cal.joules / prior_only.joules < 1.7  # toward the rows' factor, 1.3 x the prior
    # a second run keeps the stored model unless --force
    assert train_and_store([path], "gtx1070", models_dir=store)[0].startswith("gtx1070/pytorch-cuda: kept")
    assert "wrote" in train_and_store([path], "gtx1070", models_dir=store, force=True)[0]
    # two networks: no model, one line saying what to do
    two = table[table["group"].isin(["net_a", "net_b"])]
    two.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"2 network\(s\) of gtx1070 measured; .* at least 3"):
        train_and_store([path], "gtx1070", models_dir=tmp_path / "other")
    # no row at the board the estimates answer at
    table.assign(boundary="machine-total").to_csv(path, index=False)
    with pytest.raises(DataError, match="no row of gtx1070 at gpu-board-nvml"):
        train_and_store([path], "gtx1070", models_dir=tmp_path / "other")


def cross_model_domain(store):
    import json

    from estimator.learn.gpu_model import CROSS_DEVICE
    from estimator.learn.regressor import model_paths

    return json.loads(model_paths(store, *CROSS_DEVICE)[1].read_text())["domain"]


def test_rows_that_timed_their_input_pipeline_get_their_own_constants_and_flag(synthetic):
    devices = synthetic.table["hardware"].to_numpy()
    synthetic.table.loc[devices == "a100", "source"] = (
        "fischer_eff22"  # a source that timed its input pipeline
    )
    constants = gpu_training.fit_runtime_constants(synthetic, np.ones(len(devices), bool))
    assert set(constants) == {"pytorch-cuda", "pytorch-cuda+input-pipeline"}
    assert "a100" in constants["pytorch-cuda+input-pipeline"].fitted_on
    assert "a100" not in constants["pytorch-cuda"].fitted_on
    _, X = gpu_training.prior_and_features(synthetic, constants)
    flag = X[:, GPU_FEATURE_NAMES.index("input_pipeline_timed")]
    assert np.all(flag[devices == "a100"] == 1) and np.all(flag[devices != "a100"] == 0)


def test_device_weights_give_every_device_the_same_total():
    w = gpu_training.device_weights(np.array(["a"] * 90 + ["b"] * 10))
    assert w[:90].sum() == pytest.approx(w[90:].sum()) and w.mean() == pytest.approx(1.0)


@pytest.mark.parametrize("n", [6, 60])
def test_leaves_of_few_rows_are_shrunk_toward_the_mean_by_the_closed_form(n):
    """Two groups of ``n`` rows, residuals 0 and 1 (mean 0.5, xgboost's intercept): every round moves each
    group's prediction by eta * n / (n + lambda) of its remaining gap, so after T rounds a group has
    1 - (1 - eta * n / (n + lambda))^T of its deviation from the mean - few rows keep less of it, and a fit on
    fewer than SMALL_FIT_ROWS rows shrinks harder (its lambda)."""
    p = gpu_training.GPU_PARAMS
    small = 2 * n < gpu_training.SMALL_FIT_ROWS
    lam = gpu_training.SMALL_FIT_PARAMS["reg_lambda"] if small else p.get("reg_lambda", 1.0)
    eta, rounds = p["learning_rate"], p["n_estimators"]
    X = np.repeat([[0.0], [1.0]], n, axis=0)
    y = np.repeat([0.0, 1.0], n)
    reg = gpu_training.fit_gpu(X, y, params={"subsample": 1.0, "colsample_bytree": 1.0})
    kept = 1 - (1 - eta * n / (n + lam)) ** rounds
    assert small == (n == 6) and (kept < 0.98) == small
    assert reg.predict(np.array([[0.0], [1.0]])) == pytest.approx(
        [0.5 - 0.5 * kept, 0.5 + 0.5 * kept], abs=1e-4
    )


def test_interval_weighs_units_equally_where_a_pooled_quantile_follows_the_big_unit():
    from estimator.learn.gpu_interval import calibrate
    from estimator.learn.training import conformal_quantiles

    # unit a (100 rows) is 1 too high, unit b (3 rows) 1 too low, no spread inside either: an unseen unit
    # is as likely to be either, so the interval is [-1, 1]; a pooled quantile is the big unit's [1, 1]
    resid = np.array([1.0] * 100 + [-1.0] * 3)
    labels = np.array(["a"] * 100 + ["b"] * 3)
    assert conformal_quantiles(resid) == (1.0, 1.0)
    iv = calibrate(resid, labels)
    assert (iv.low, iv.high) == (-1.0, 1.0) and iv.labels == 2


def test_interval_of_unit_bias_plus_spread_has_the_known_quantiles_and_covers_unseen_units():
    from estimator.learn.gpu_interval import calibrate

    rng = np.random.default_rng(0)
    # 400 units of 1-60 rows: bias ~ N(0, 0.3), spread inside a unit ~ N(0, 0.1); a new unit's residual is
    # N(0, sqrt(0.3^2 + 0.1^2)), whose 90% interval is +-1.645 x 0.316 = +-0.520
    sizes = rng.integers(1, 60, 400)
    labels = np.repeat(np.arange(400), sizes)
    resid = rng.normal(0, 0.3, 400)[labels] + rng.normal(0, 0.1, len(labels))
    iv = calibrate(resid, labels)
    assert iv.low == pytest.approx(-0.520, abs=0.06) and iv.high == pytest.approx(0.520, abs=0.06)
    new = rng.normal(0, 0.3, 2000)[:, None] + rng.normal(0, 0.1, (2000, 5))
    assert 0.87 <= np.mean((new >= iv.low) & (new <= iv.high)) <= 0.93


def test_mondrian_intervals_take_the_spread_of_their_own_category_and_biases_from_every_unit():
    from estimator.learn.gpu_interval import mondrian, unit_effects_quantiles

    # units u and v (category 0) spread +-0.1 around biases 0.5 and -0.5; unit w (category 1) spreads +-2
    resid = np.concatenate(
        [0.5 + np.linspace(-0.1, 0.1, 20), -0.5 + np.linspace(-0.1, 0.1, 20), np.linspace(-2, 2, 20)]
    )
    labels = np.repeat(np.array(["u", "v", "w"]), 20)
    category = np.repeat(np.array([0, 0, 1]), 20)
    everything = np.ones(60, bool)
    lo, hi = mondrian(resid, labels, category, everything, everything)
    assert (lo[0], hi[0]) == unit_effects_quantiles(resid, labels, category == 0)
    assert (lo[-1], hi[-1]) == unit_effects_quantiles(resid, labels, category == 1)
    assert hi[0] - lo[0] < 1.4 < hi[-1] - lo[-1]  # biases +-0.5 plus +-0.1 inside, against +-2 inside
    assert lo[0] < -0.5 and hi[0] > 0.5  # the bias of either unit is inside the forward interval


def test_category_with_three_gpus_takes_its_own_biases_and_a_gpus_two_categories_are_two_units():
    from scipy.stats import t as student_t

    from estimator.learn.gpu_interval import category_interval, mondrian, unit_effects_quantiles

    # forward passes (category 0) on GPUs a, b, c with biases 0.0, 0.2, 0.4 and no spread; GPU a also timed an
    # input pipeline (category 1) with bias 3.0, spread +-0.5
    resid = np.concatenate(
        [np.full(5, 0.0), np.full(5, 0.2), np.full(5, 0.4), 3.0 + np.linspace(-0.5, 0.5, 5)]
    )
    labels = np.repeat(np.array(["a", "b", "c", "a"]), 5)
    category = np.repeat(np.array([0, 0, 0, 1]), 5)
    forward = category_interval(resid, labels, category, 0, min_rows=1, predictive=True)
    half = student_t.ppf(0.95, 2) * 0.2 * math.sqrt(1 + 1 / 3)  # mean 0.2, sd 0.2 (k-1), k = 3
    assert forward.low == pytest.approx(0.2 - half, abs=2e-3) and forward.high == pytest.approx(
        0.2 + half, abs=2e-3
    )
    assert forward.labels == 3  # the pipeline's bias 3.0 is not one of them
    # the pipeline category has one GPU: biases of all four units (a's two apart), spread of the pipeline rows
    pipeline = category_interval(resid, labels, category, 1, min_rows=1, predictive=True)
    units = np.repeat(np.arange(4), 5)
    expected = unit_effects_quantiles(resid, units, category == 1, predictive=True)
    assert (pipeline.low, pipeline.high) == pytest.approx(expected) and pipeline.labels == 4
    # mondrian gives each test row its category's interval
    lo, hi = mondrian(
        resid, labels, category, np.ones(20, bool), np.ones(20, bool), min_rows=1, predictive=True
    )
    assert (lo[0], hi[0]) == (forward.low, forward.high) and (lo[-1], hi[-1]) == (pipeline.low, pipeline.high)


def test_judged_rows_calibrate_only_outside_the_held_out_rows(synthetic):
    from estimator.learn.gpu_cross import judged_calibration
    from estimator.learn.gpu_set import held_out_split

    t = synthetic.table
    devices = t["hardware"].to_numpy()
    judged = (devices == "a100") | ((devices == "gtx1080ti") & (t["batch"] == 1).to_numpy())
    t["judged_only"] = judged
    # leave-one-device-out: a held-out GPU's judged rows are in its test rows, the others' calibrate
    _, test = held_out_split(devices, "gtx1080ti", synthetic.trainable)
    np.testing.assert_array_equal(judged_calibration(synthetic, test), devices == "a100")
    _, test = held_out_split(devices, "gtx1070", synthetic.trainable)
    np.testing.assert_array_equal(judged_calibration(synthetic, test), judged)
    # leave-one-source-out: the held-out source's rows never calibrate, a trainable row never does
    sources = np.where(devices == "a100", "judged_a", "synthetic")
    t["source"] = sources
    calib = judged_calibration(synthetic, sources == "judged_a")
    np.testing.assert_array_equal(calib, judged & (devices == "gtx1080ti"))
    assert not (calib & synthetic.trainable).any()


def test_power_floor_closed_form():
    from estimator.learn.gpu_model import bounded

    hw = load_profile("a100")
    floor = hw.idle_with_context_w * 0.002
    # below the floor: the answer is the floor, the interval's factors are taken around it, its low end floored
    j, lo, hi, notes = bounded(0.5 * floor, 0.4, 6.0, 0.002, hw)
    assert (j, lo, hi) == (floor, floor, 6 * floor) and "power floor binds" in notes[0]
    assert bounded(2 * floor, 0.75, 1.5, 0.002, hw) == (2 * floor, 1.5 * floor, 3 * floor, ())
    j, lo, hi, notes = bounded(2 * floor, 0.25, 1.5, 0.002, hw)
    assert (j, lo, hi) == (2 * floor, floor, 3 * floor) and "low end" in notes[0]


def test_a_correction_that_would_go_below_idle_power_is_floored_and_says_so(synthetic, tmp_path):
    from estimator.api import Estimator
    from estimator.learn.gpu_model import CROSS_DEVICE
    from estimator.learn.gpu_store import train_one
    from estimator.learn.regressor import save_model

    # every GPU measured at 1% of its prior: the learned correction (~x0.01) alone would put the board far
    # below its idle-with-context power over the prior's latency
    synthetic.table["joules_per_inference"] *= 0.01
    devices = synthetic.table["hardware"].to_numpy()
    store = tmp_path / "models"
    save_model(train_one(synthetic, np.ones(len(devices), bool), devices, CROSS_DEVICE, "lodo"), store)
    e = Estimator("h100", "pytorch-cuda", models_dir=store).estimate(_mlp(256, 128), batch=8)
    hw = load_profile("h100")
    floor = hw.idle_with_context_w * e.prior.seconds
    assert e.correction == "cross-device"
    assert e.joules == pytest.approx(floor) and e.avg_power_w == pytest.approx(hw.idle_with_context_w)
    assert e.interval[0] == pytest.approx(floor) and e.interval[1] >= floor
    assert e.bounds and "power floor binds" in e.bounds[0] and e.to_json()["bounds"] == list(e.bounds)
    assert sum(layer.joules for layer in e.layers) == pytest.approx(e.joules)
    from estimator.cli.format import render_estimate

    assert "power floor binds" in render_estimate(e, "H100", "mlp", 0, width=300)


def test_leave_one_source_out_never_trains_on_the_held_out_source(synthetic, monkeypatch):
    from estimator.learn import gpu_evaluation

    devices = synthetic.table["hardware"].to_numpy()
    synthetic.table["source"] = np.where(devices == "a100", "src_a", "src_b")
    seen = []

    def spy(gs, folds, same_device):
        seen.extend(folds)
        n = len(gs.table)
        nan = np.full(n, np.nan)
        return {"pred": dict.fromkeys(gpu_evaluation.SYSTEMS, nan), "bounds": {}, "answer": "model"}

    monkeypatch.setattr(gpu_evaluation, "_collect", spy)
    out = gpu_evaluation._leave_one_source_out(synthetic, lambda _line: None)
    sources = synthetic.table["source"].to_numpy()
    assert set(out) == {"src_a", "src_b"} and out["src_a"]["devices"] == ["a100"]
    for train, test, _inner in seen:
        held = set(sources[test])
        assert len(held) == 1 and not held & set(sources[train]) and not np.any(train & test)


def test_prior_residuals_hold_each_device_out_of_the_constant_fit_and_match_the_closed_form(
    synthetic, monkeypatch
):
    from estimator.learn import gpu_cross

    devices = synthetic.table["hardware"].to_numpy()
    everything = np.ones(len(devices), bool)
    fitted_on = []
    real_fit = gpu_training.fit_runtime_constants

    def spy(gs, train):
        fitted_on.append(set(devices[train]))
        return real_fit(gs, train)

    monkeypatch.setattr(gpu_training, "fit_runtime_constants", spy)
    resid = gpu_cross.prior_residuals(synthetic, everything, devices)
    assert sorted(map(sorted, fitted_on)) == sorted(sorted(set(DEVICES) - {d}) for d in DEVICES)
    y = np.log(synthetic.measured_j)
    for device in DEVICES:
        own = devices == device
        log_prior, _ = gpu_training.prior_and_features(synthetic, real_fit(synthetic, ~own))
        np.testing.assert_allclose(resid[own], y[own] - log_prior[own])
    # with the shipped constants the residual is the synthetic table's own factor x wobble, in closed form
    monkeypatch.setattr(gpu_training, "fit_runtime_constants", lambda gs, train: {})
    resid = gpu_cross.prior_residuals(synthetic, everything, devices)
    t = synthetic.table
    for i in range(len(t)):
        k, m = SIZES[t["group"].iat[i]]
        wobble = 1 + 0.1 * math.sin(k + m + int(t["batch"].iat[i]))
        assert resid[i] == pytest.approx(math.log(FACTOR[devices[i]] * wobble), rel=1e-9)
    # rows at another boundary get no prior residual (the prior does not predict them)
    t.loc[devices == "a100", "boundary"] = "machine-total"
    resid = gpu_cross.prior_residuals(synthetic, everything, devices)
    assert np.isnan(resid[devices == "a100"]).all() and not np.isnan(resid[devices != "a100"]).any()


def test_cross_device_answer_is_the_fitted_prior_at_its_boundary_and_the_model_elsewhere(synthetic):
    from estimator.learn.gpu_cross import cross_device_split

    t = synthetic.table
    t.loc[t["batch"] == 32, "boundary"] = "machine-total"
    devices = t["hardware"].to_numpy()
    train, test = gpu_training.held_out_split(devices, "a100")
    out = gpu_training.predict_split(synthetic, train, test, devices)
    cd = cross_device_split(synthetic, train, test, devices, out)
    board = (t["boundary"] == "gpu-board-nvml").to_numpy()[test]
    np.testing.assert_allclose(
        cd["pred"][board], np.maximum(out["prior_v2_fitted"], np.exp(out["floor"]))[board]
    )
    np.testing.assert_allclose(cd["pred"][~board], out["model"][~board])
    lo, hi = cd["interval"]
    np.testing.assert_array_equal(lo[~board], out["interval"][0][~board])
    np.testing.assert_array_equal(hi[~board], out["interval"][1][~board])
    assert np.all(np.isfinite(lo[board])) and np.all(lo[board] < hi[board])


def test_the_cross_device_answer_at_the_board_is_the_fitted_prior_with_its_own_interval(synthetic, tmp_path):
    from estimator.api import Estimator
    from estimator.learn.gpu_model import CROSS_DEVICE, sidecar_constants
    from estimator.learn.gpu_store import prior_answer, train_one
    from estimator.learn.regressor import save_model

    devices = synthetic.table["hardware"].to_numpy()
    everything = np.ones(len(devices), bool)
    model = train_one(synthetic, everything, devices, CROSS_DEVICE, "lodo")
    model.sidecar["prior_answer"] = prior_answer(synthetic, everything, devices)
    store = tmp_path / "models"
    save_model(model, store)
    graph = _mlp(256, 128)
    e = Estimator("h100", "pytorch-cuda", models_dir=store).estimate(graph, batch=8)
    hw, rt = load_profile("h100"), get_runtime("pytorch-cuda")
    kernels = fuse_kernels(count_costs(load_graph(graph, batch=8)), fuse=rt.fuses)
    prior = energy_prior_v2(kernels, hw, runtime=rt, constants=sidecar_constants(model.sidecar, rt.name))
    iv = model.sidecar["prior_answer"]["interval"]
    assert e.correction == "cross-device" and "no learned correction" in e.method
    assert f"GPUs held out ({', '.join(model.sidecar['prior_answer']['interval_devices'])})" in e.method
    assert e.joules == pytest.approx(prior.joules, rel=1e-12)
    assert e.interval[0] == pytest.approx(
        max(prior.joules * math.exp(iv["low_log"]), hw.idle_with_context_w * prior.seconds)
    )
    assert e.interval[1] == pytest.approx(prior.joules * math.exp(iv["high_log"]))
    # every device's own factor (1.3, 1.6, 2.2 x the prior) puts the prior below the measurement: the interval
    # of an unseen GPU lies above the prior's answer
    assert iv["high_log"] > math.log(1.3)
    unseen = Estimator("h100", "tensorrt", models_dir=store).estimate(graph, batch=8)
    assert not unseen.extrapolated and "no measurements of runtime tensorrt" in unseen.bounds[0]


def test_predictive_bias_interval_is_the_t_prediction_interval_of_a_normal_sample():
    from scipy.stats import t as student_t

    from estimator.learn.gpu_interval import calibrate

    # four units with no spread inside them: biases 0.0, 0.2, 0.3, 0.9 (mean 0.35, sd 0.387 with k-1)
    biases = np.array([0.0, 0.2, 0.3, 0.9])
    resid = np.repeat(biases, 5)
    labels = np.repeat(np.arange(4), 5)
    half = student_t.ppf(0.95, 3) * np.std(biases, ddof=1) * math.sqrt(1 + 1 / 4)
    iv = calibrate(resid, labels, predictive=True)
    assert iv.low == pytest.approx(0.35 - half, abs=2e-3) and iv.high == pytest.approx(0.35 + half, abs=2e-3)
    assert "t with 3 degrees of freedom" in iv.basis
    # the empirical form cannot leave the units' range; the predictive one is wider than it on both sides
    plain = calibrate(resid, labels)
    assert plain.low >= 0.0 and plain.high <= 0.9 and iv.low < plain.low and iv.high > plain.high


def test_pipeline_term_is_fitted_per_machine_off_the_board_and_never_carried(synthetic):
    """measured = v2 prior + c x batch + P x prior seconds + d at CodeCarbon's total on one machine: the fit
    finds (c, P, d), adds exactly that term there, fits nothing at the board nor from rows outside ``train``,
    and no other device gets it."""
    t = synthetic.table
    devices = t["hardware"].to_numpy()
    log_prior, X = gpu_training.prior_and_features(synthetic, None)
    log_seconds = X[:, GPU_FEATURE_NAMES.index("log_prior_seconds")]
    c, host_w, d = 0.05, 40.0, 0.2  # J per sample, W, J per call
    a100 = devices == "a100"
    t["source"] = np.where(devices == "gtx1070", "synthetic", "fischer_rtx4090")  # timed an input pipeline
    t.loc[a100, "boundary"] = "codecarbon-total"
    added = c * t.loc[a100, "batch"] + host_w * np.exp(log_seconds[a100]) + d
    t.loc[a100, "joules_per_inference"] = np.exp(log_prior[a100]) + added
    everything = np.ones(len(t), bool)
    terms = gpu_training.fit_pipeline_terms(synthetic, everything, log_prior, log_seconds)
    # the gtx1080ti's pipeline rows are at the board, where the host constants carry the pipeline
    assert set(terms) == {("pytorch-cuda+input-pipeline", "codecarbon-total", "a100")}
    term = terms["pytorch-cuda+input-pipeline", "codecarbon-total", "a100"]
    assert (term.j_per_sample, term.host_w, term.j_per_call) == pytest.approx((c, host_w, d), rel=1e-6)
    out = gpu_training.with_pipeline(synthetic, log_prior, log_seconds, terms)
    np.testing.assert_allclose(np.exp(out[a100]), t.loc[a100, "joules_per_inference"], rtol=1e-6)
    np.testing.assert_array_equal(out[~a100], log_prior[~a100])
    # the a100 held out: no term is fitted from other machines, so its rows keep the forward pass alone
    assert gpu_training.fit_pipeline_terms(synthetic, ~a100, log_prior, log_seconds) == {}


def test_pipeline_term_fit_is_the_least_squares_of_relative_errors_with_non_negative_coefficients():
    """Four hand-made calls, closed forms: exact data give back their coefficients; data that a negative host
    power would fit best get host_w = 0 and the weighted least squares of the other two (the KKT conditions hold);
    with two rows only the per-sample energy is fitted, c = sum(a (1 - p/m)) / sum(a^2), a = batch / m."""
    prior = np.array([0.5, 1.0, 2.0, 4.0])  # J
    batch = np.array([1.0, 4.0, 8.0, 32.0])
    seconds = np.array([0.004, 0.006, 0.010, 0.030])  # s
    exact = prior + 0.03 * batch + 60.0 * seconds + 0.1
    term = gpu_pipeline.fit_pipeline_term(prior, batch, seconds, exact)
    assert (term.j_per_sample, term.host_w, term.j_per_call) == pytest.approx((0.03, 60.0, 0.1), rel=1e-9)
    assert term.joules(batch, seconds) == pytest.approx(exact - prior, rel=1e-9)

    # a negative power would fit best: NNLS keeps it at 0 and fits the other two by weighted least squares
    seconds = np.array([0.020, 0.005, 0.040, 0.010])  # s, not in step with the batch
    measured = prior + 0.03 * batch - 5.0 * seconds + 0.3
    a = np.column_stack([batch, seconds, np.ones(4)]) / measured[:, None]
    target = 1 - prior / measured
    free = np.linalg.lstsq(a, target, rcond=None)[0]
    assert free == pytest.approx([0.03, -5.0, 0.3], rel=1e-9)  # the unconstrained optimum: a negative power
    reduced = np.linalg.lstsq(a[:, [0, 2]], target, rcond=None)[0]
    assert np.all(reduced > 0)
    gradient = a[:, 1] @ (a[:, [0, 2]] @ reduced - target)  # d loss / d host_w at host_w = 0, halved
    assert gradient > 0  # KKT: raising host_w from 0 would raise the loss, so (reduced, 0) is the optimum
    term = gpu_pipeline.fit_pipeline_term(prior, batch, seconds, measured)
    assert term.host_w == 0.0
    assert (term.j_per_sample, term.j_per_call) == pytest.approx(tuple(reduced), rel=1e-9)

    # two rows: fewer than the three coefficients, so only the per-sample energy
    m2 = prior[:2] + np.array([0.04, 0.2])
    a2 = batch[:2] / m2
    term = gpu_pipeline.fit_pipeline_term(prior[:2], batch[:2], seconds[:2], m2)
    assert term.j_per_sample == pytest.approx(np.sum(a2 * (1 - prior[:2] / m2)) / np.sum(a2**2), rel=1e-9)
    assert (term.host_w, term.j_per_call) == (0.0, 0.0)


def test_sdpa_runtime_shares_eager_pytorchs_fitted_host_constants(light_dir):
    """pytorch-cuda-sdpa runs the same host path as pytorch-cuda: its constants are fitted and looked up under
    pytorch-cuda's name, so the cross-device answer says what they were fitted on, as for pytorch-cuda."""
    from estimator import Estimator

    assert gpu_training.constants_key("pytorch-cuda-sdpa", False) == "pytorch-cuda"
    assert gpu_training.constants_key("pytorch-cuda-sdpa", True) == "pytorch-cuda+input-pipeline"
    model = light_dir / "light_resnet50.onnx"
    eager = Estimator("a100", runtime="pytorch-cuda").estimate(model, batch=1)
    sdpa = Estimator("a100", runtime="pytorch-cuda-sdpa").estimate(model, batch=1)
    fitted = eager.method.split("energy-roofline v2 (")[1].split(")")[0]
    assert "fitted on" in fitted and fitted in sdpa.method
    assert not any("no measurements of runtime" in note for note in (*eager.bounds, *sdpa.bounds))
    # a CNN has no attention: the two runtimes launch the same kernels and give the same joules
    assert sdpa.joules == eager.joules


def test_cross_device_machine_total_is_the_board_answer_plus_the_rest_of_the_machine(synthetic):
    """Where the training GPUs measured each call at the board and at the whole machine, a held-out GPU's
    machine-total answer is its board answer + the training GPUs' mean rest-of-machine power x the prior's
    latency (each GPU's median of (machine J - board J) / measured s, GPUs weighted equally)."""
    from estimator.learn import gpu_cross

    board_rows = synthetic.table.assign(latency_s=0.002 * synthetic.table["batch"])
    rest_w = {d: 60.0 + 30.0 * i for i, d in enumerate(DEVICES)}  # W
    machine_rows = board_rows.assign(
        boundary="machine-total",
        joules_per_inference=board_rows["joules_per_inference"]
        + board_rows["hardware"].map(rest_w) * board_rows["latency_s"],
    )
    gs = gpu_training.GpuSet(
        pd.concat([board_rows, machine_rows], ignore_index=True), synthetic.configs, synthetic.missing
    )
    devices = gs.table["hardware"].to_numpy()
    held_out = DEVICES[0]
    train, test = gpu_training.held_out_split(devices, held_out)
    expected_w = np.mean([rest_w[d] for d in DEVICES if d != held_out])
    assert gpu_cross.rest_of_machine_w(gs, train) == pytest.approx({"machine-total": expected_w})
    out = gpu_training.predict_split(gs, train, test, devices)
    cd = gpu_cross.cross_device_split(gs, train, test, devices, out)
    machine = (gs.table["boundary"] == "machine-total").to_numpy()[test]
    board_answer = np.maximum(out["prior_v2_fitted"], np.exp(out["floor"]))
    np.testing.assert_allclose(cd["pred"][machine], (board_answer + expected_w * out["seconds"])[machine])
    np.testing.assert_allclose(cd["pred"][~machine], board_answer[~machine])
    # no GPU measured the machine beside its board: no rest-of-machine power, the model answers there
    at_board = (gs.table["boundary"] == "gpu-board-nvml").to_numpy()
    assert gpu_cross.rest_of_machine_w(gs, train & at_board) == {}


def test_the_report_says_which_gpu_runtimes_and_profiles_no_row_measured():
    from estimator.energy.runtimes import RUNTIMES
    from estimator.learn.gpu_report import data_gaps, render_markdown

    table = pd.DataFrame(
        {
            "runtime": ["pytorch-cuda", "pytorch-cuda", "tensorrt"],
            "hardware": ["h100", "h100", "a100"],
            "boundary": ["gpu-board-nvml", "machine-total", "gpu-board-nvml"],
        }
    )
    gaps = data_gaps(table)
    assert gaps["runtimes_measured"] == {
        "pytorch-cuda": ["h100 at gpu-board-nvml (1)", "h100 at machine-total (1)"],
        "tensorrt": ["a100 at gpu-board-nvml (1)"],
    }
    gpu_runtimes = {n for n, r in RUNTIMES.items() if r.device_kind == "gpu"}
    assert set(gaps["runtimes_without_rows"]) == gpu_runtimes - {"pytorch-cuda", "tensorrt"}
    assert "h100" not in gaps["gpus_without_rows"] and "h200" in gaps["gpus_without_rows"]
    assert "rpi5" not in gaps["gpus_without_rows"]  # a CPU is no GPU without rows
    assert "| onnxruntime-cuda | no row |" in render_markdown(_minimal_report(gaps))


def _minimal_report(gaps: dict) -> dict:
    return {
        "date": "2026-12-02",
        "rows": 3,
        "rows_without_graph": {},
        "sources": [],
        "judged_only_sources": [],
        "per_source": {},
        "leave_one_device_out": {},
        "prior_medians": {},
        "data_gaps": gaps,
    }
