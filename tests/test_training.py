"""The learning pipeline: a known function is recovered, models round-trip, sidecars are checked, and the
train command reports malformed rows and keeps a better old model."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from estimator.api import Estimator
from estimator.cli import run
from estimator.errors import DataError, ModelArtifactError
from estimator.learn.features import FEATURE_NAMES
from estimator.learn.regressor import load_model, model_paths, save_model
from estimator.learn.training import (
    conformal_quantiles,
    featurize,
    grouped_folds,
    metrics,
    predict_log,
    train_model,
)

SMALL = {"n_estimators": 150, "max_depth": 4, "learning_rate": 0.1}


def _conv_table(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Single conv layers on xeon-gold-5120 whose 'measured' energy is the prior times a known factor:
    1.6 for 3x3 kernels, 1.0 for 1x1 - a function of the graph the model must learn."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = int(rng.choice([1, 3]))
        c_in, c_out, image = (
            int(rng.choice([8, 16, 32])),
            int(rng.choice([8, 16, 32])),
            int(rng.choice([8, 16, 28])),
        )
        spec = f"getzner:conv2d;in={c_in};out={c_out};kernel={k};stride=1;padding={k // 2};image={image}"
        rows.append(
            {
                "model_ref": spec,
                "group": f"g{i}",
                "family": "conv2d",
                "task": "random-layer",
                "batch": int(rng.choice([1, 4])),
                "dtype": "float32",
                "hardware": "xeon-gold-5120",
                "runtime": "pytorch-cpu",
                "boundary": "cpu-package-rapl",
                "joules_per_inference": 1.0,
                "idle_subtracted": False,
                "repeats": 3,
                "source": "synthetic",
                "citation": "test",
                "_factor": 1.6 if k == 3 else 1.0,
            }
        )
    table = pd.DataFrame(rows)
    ts = featurize(table.drop(columns="_factor"), "xeon-gold-5120", n_jobs=1)
    table["joules_per_inference"] = np.exp(ts.prior_log) * table["_factor"]
    return table.drop(columns="_factor")


@pytest.fixture(scope="module")
def conv_table():
    return _conv_table()


def test_known_function_of_the_features_is_recovered(conv_table):
    ts = featurize(conv_table, "xeon-gold-5120", n_jobs=1)
    test = grouped_folds(ts.groups, 4)[0]
    from estimator.learn.training import fit

    reg = fit(ts.subset(~test), SMALL)
    pred = np.exp(predict_log(reg, ts.subset(test), "graph"))
    m = metrics(ts.subset(test).measured_j, pred)
    assert m["mape"] < 0.02  # the factor 1.0 / 1.6 is learned; the prior alone is 0% or 37.5% off
    prior = metrics(ts.subset(test).measured_j, np.exp(ts.subset(test).prior_log))
    assert prior["mape"] > 0.1


def test_grouped_folds_never_split_a_group():
    groups = np.array(["a", "a", "b", "c", "c", "c", "d", "e"])
    folds = grouped_folds(groups, 3)
    assert sum(f.sum() for f in folds) == len(groups)
    for g in set(groups):
        assert sum(bool(f[groups == g].any()) for f in folds) == 1


def test_metrics_closed_form():
    m = metrics(np.array([1.0, 2.0, 4.0]), np.array([1.05, 1.7, 4.0]), tasks=["t", "t", "t"])
    assert math.isclose(m["mape"], (0.05 + 0.15 + 0.0) / 3)
    assert math.isclose(m["hit_10"], 2 / 3) and math.isclose(m["hit_20"], 1.0)
    assert m["kendall_tau_by_task"]["t"] == 1.0


def test_conformal_quantiles_finite_sample_rank():
    r = np.arange(1, 20, dtype=float)  # n = 19: 5% rank floor(0.05*20)-1 = 0, 95% rank ceil(0.95*20)-1 = 18
    assert conformal_quantiles(r, 0.9) == (1.0, 19.0)
    with pytest.raises(DataError):
        conformal_quantiles(np.array([]))


def test_save_load_round_trip_and_sidecar_checks(conv_table, tmp_path):
    ts = featurize(conv_table, "xeon-gold-5120", n_jobs=1)
    model, cv = train_model(
        ts, hardware="xeon-gold-5120", runtime="pytorch-cpu", granularity="graph", params=SMALL
    )
    assert cv["grouped_cv"]["mape"] < 0.05
    model_path, sidecar_path = save_model(model, tmp_path)
    loaded = load_model(tmp_path, "xeon-gold-5120", "pytorch-cpu", FEATURE_NAMES)
    np.testing.assert_allclose(loaded.regressor.predict(ts.X), model.regressor.predict(ts.X), rtol=1e-6)
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["feature_names"] == list(FEATURE_NAMES) and sidecar["boundary"] == "cpu-package-rapl"
    assert {"xgboost", "numpy", "estimator"} <= set(sidecar["library_versions"])

    with pytest.raises(ModelArtifactError, match="feature schema"):
        load_model(tmp_path, "xeon-gold-5120", "pytorch-cpu", [*FEATURE_NAMES, "extra"])
    model_path.write_bytes(model_path.read_bytes() + b"x")
    with pytest.raises(ModelArtifactError, match="hash"):
        load_model(tmp_path, "xeon-gold-5120", "pytorch-cpu", FEATURE_NAMES)
    sidecar_path.write_text("{not json")
    with pytest.raises(ModelArtifactError, match="unreadable"):
        load_model(tmp_path, "xeon-gold-5120", "pytorch-cpu", FEATURE_NAMES)
    assert load_model(tmp_path, "rpi5", "tflite", FEATURE_NAMES) is None


def test_estimator_uses_a_trained_model(conv_table, tmp_path):
    ts = featurize(conv_table, "xeon-gold-5120", n_jobs=1)
    model, _ = train_model(
        ts, hardware="xeon-gold-5120", runtime="pytorch-cpu", granularity="graph", params=SMALL
    )
    save_model(model, tmp_path)
    from estimator.zoo import build_from_spec

    graph = build_from_spec("getzner:conv2d;in=16;out=16;kernel=3;stride=1;padding=1;image=16", batch=4)
    cal = Estimator("xeon-gold-5120", runtime="pytorch-cpu", models_dir=tmp_path).estimate(graph)
    raw = Estimator("xeon-gold-5120", runtime="pytorch-cpu", models_dir=tmp_path, calibrated=False).estimate(
        graph
    )
    assert cal.calibrated and not raw.calibrated
    assert math.isclose(cal.joules / raw.joules, 1.6, rel_tol=0.05)
    assert cal.interval[0] < cal.joules < cal.interval[1]


def test_train_command_reports_malformed_rows_by_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    table = _conv_table(12)
    table.loc[5, "joules_per_inference"] = -1.0
    table.to_csv(bad, index=False)
    assert run(["train", str(bad), "--hw", "xeon-gold-5120", "--models-dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 7" in err[0] and "joules_per_inference" in err[0]
    assert not (tmp_path / "m").exists()


def test_train_command_keeps_better_old_model_unless_forced(conv_table, tmp_path, capsys):
    good = tmp_path / "good.csv"
    conv_table.to_csv(good, index=False)
    models = tmp_path / "models"
    args = ["train", str(good), "--hw", "xeon-gold-5120", "--models-dir", str(models), "--trees", "100"]
    assert run(args) == 0
    first = _stored_model_bytes(models)
    sidecar = json.loads(model_paths(models, "xeon-gold-5120", "pytorch-cpu")[1].read_text())
    assert sidecar["hyperparameters"]["n_estimators"] == 100  # --trees reaches the model
    # Noisy labels make a worse model; the old one (trained on clean rows) must be kept.
    noisy = conv_table.copy()
    noisy["joules_per_inference"] *= np.exp(np.random.default_rng(1).normal(0, 0.5, len(noisy)))
    noisy_path = tmp_path / "noisy.csv"
    noisy.to_csv(noisy_path, index=False)
    capsys.readouterr()
    assert run([*args[:1], str(noisy_path), *args[2:]]) == 0
    assert "kept the old model" in capsys.readouterr().out
    assert _stored_model_bytes(models) == first
    # New groups with the same noisy labels: both models are scored on them, and the clean old one wins.
    noisy["group"] = "new-" + noisy["group"]
    noisy.to_csv(noisy_path, index=False)
    assert run([*args[:1], str(noisy_path), *args[2:]]) == 0
    out = capsys.readouterr().out
    assert "kept the old model" in out and "held-out groups" in out and "may have seen" not in out
    assert run([*args[:1], str(noisy_path), *args[2:], "--force"]) == 0
    assert _stored_model_bytes(models) != first
    assert len(list(models.glob("*.ubj"))) == 1  # the replaced model file is removed


def _stored_model_bytes(models) -> bytes:
    sidecar = json.loads(model_paths(models, "xeon-gold-5120", "pytorch-cpu")[1].read_text())
    return (models / sidecar["model_file"]).read_bytes()


def test_features_cache_round_trip(conv_table, tmp_path):
    from estimator.learn.training import featurize_cached

    first = featurize_cached(conv_table, "xeon-gold-5120", n_jobs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.joblib"))) == 1
    again = featurize_cached(conv_table, "xeon-gold-5120", n_jobs=1, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.X, again.X)
    changed = conv_table.copy()
    changed.loc[0, "joules_per_inference"] *= 2
    featurize_cached(changed, "xeon-gold-5120", n_jobs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.joblib"))) == 2  # another table, another entry


def test_evaluation_report_on_synthetic_rows(conv_table, tmp_path):
    from estimator.learn.evaluation import evaluate_runtime, write_report

    table = conv_table.copy()
    table["task"] = np.where(np.arange(len(table)) % 2 == 0, "even", "odd")
    ts = featurize(table, "xeon-gold-5120", n_jobs=1)
    report = {
        "xeon-gold-5120/pytorch-cpu": {
            "description": "synthetic",
            "granularity": "graph",
            **evaluate_runtime(ts, "graph"),
        }
    }
    r = report["xeon-gold-5120/pytorch-cpu"]
    assert r["grouped_5fold"]["model"]["mape"] < 0.05 < r["grouped_5fold"]["prior"]["mape"]
    assert set(r["leave_one_task_out"]) == {"even", "odd"}
    paths = write_report(report, tmp_path)
    text = paths[1].read_text()
    assert "grouped_5fold" in text and "flops_linear" in text and "desislavov" in text
    assert json.loads(paths[0].read_text())["xeon-gold-5120/pytorch-cpu"]["rows"] == len(table)
    assert paths[2].read_text().startswith("<svg")


def test_estimates_outside_the_training_data_are_flagged(conv_table, tmp_path):
    from estimator.learn.model_store import train_and_store
    from estimator.zoo import build_from_spec

    path = tmp_path / "conv.csv"
    conv_table.to_csv(path, index=False)
    train_and_store([path], "xeon-gold-5120", models_dir=tmp_path / "m", params={"n_estimators": 50})
    est = Estimator("xeon-gold-5120", runtime="pytorch-cpu", models_dir=tmp_path / "m")
    inside = est.estimate(
        build_from_spec("getzner:conv2d;in=16;out=16;kernel=3;stride=1;padding=1;image=16", batch=4)
    )
    far = est.estimate(build_from_spec("torchvision:vgg16", batch=8))
    assert "log_flops" not in inside.extrapolated
    assert "log_flops" in far.extrapolated and far.to_json()["extrapolated_features"]


def test_layer_signatures_merge_identical_layers_of_different_networks():
    from estimator.learn.evaluation import layer_signatures

    def row(ref, batch):
        return {
            "model_ref": ref,
            "group": ref,
            "family": "conv2d",
            "task": "t",
            "batch": batch,
            "dtype": "float32",
            "hardware": "xeon-gold-5120",
            "runtime": "pytorch-cpu",
            "boundary": "cpu-package-rapl",
            "joules_per_inference": 1.0,
            "idle_subtracted": False,
            "repeats": 1,
            "source": "s",
            "citation": "c",
        }

    table = pd.DataFrame(
        [
            row("torchvision:vgg11;layer=0", 2),
            row("torchvision:vgg13;layer=0", 5),
            row("torchvision:vgg13;layer=2", 2),
            row("torchvision:vgg11;layer=0", 7),
        ]
    )
    sig = layer_signatures(featurize(table, "xeon-gold-5120", n_jobs=1))
    assert sig[0] == sig[1] == sig[3]  # the same 3->64 convolution at 224x224, at any batch
    assert sig[2] != sig[0]  # VGG13's second convolution (64->64) is another layer
