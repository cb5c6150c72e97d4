"""The trained models shipped in trained_models/: they load (sidecar, hash, feature schema), and the
Estimator computes the same features as the training pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from estimator.api import Estimator
from estimator.learn.features import FEATURE_NAMES
from estimator.learn.regressor import default_models_dir, load_model
from estimator.learn.training import featurize, predict_log
from estimator.zoo import build_from_spec

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [
    ("rpi5", "tflite"),
    ("rpi5", "onnxruntime"),
    ("rpi5", "torchscript-mobile"),
    ("xeon-gold-5120", "pytorch-cpu"),
]


@pytest.mark.parametrize(("hardware", "runtime"), SHIPPED)
def test_shipped_model_loads_and_matches_its_profile(hardware, runtime):
    model = load_model(default_models_dir(), hardware, runtime, FEATURE_NAMES)
    assert model is not None
    assert model.sidecar["boundary"] == Estimator(hardware, runtime=runtime).profile.measurement_boundary
    lo, hi = model.interval_quantiles
    assert lo < 0 < hi


def test_estimator_and_training_pipeline_agree_on_measured_nb201_rows():
    table = pd.read_csv(ROOT / "data" / "hwnasbench360.csv.gz")
    rows = table[table["runtime"] == "tflite"].sample(6, random_state=3).reset_index(drop=True)
    est = Estimator("rpi5", runtime="tflite")
    api = np.array([est.estimate(build_from_spec(ref, batch=1)).joules for ref in rows["model_ref"]])
    ts = featurize(rows, "rpi5", n_jobs=1)
    pipeline = np.exp(predict_log(est.model.regressor, ts, "graph"))
    np.testing.assert_allclose(api, pipeline, rtol=1e-6)
    # In-sample (these rows trained the model), so this checks plumbing, not accuracy: see docs/evaluation.md.
    assert np.all(np.abs(api / rows["joules_per_inference"].to_numpy() - 1) < 0.25)


def test_xeon_model_sums_kernels_for_a_whole_network():
    table = pd.read_csv(ROOT / "data" / "getzner.csv.gz", low_memory=False)
    row = table[(table["model_ref"] == "torchvision:vgg11")].iloc[0]
    est = Estimator("xeon-gold-5120", runtime="pytorch-cpu")
    result = est.estimate(
        build_from_spec("torchvision:vgg11", batch=int(row["batch"])), threads=int(row["threads"])
    )
    assert result.calibrated
    assert np.isclose(sum(layer.joules for layer in result.layers), result.joules, rtol=1e-9)
    assert abs(result.joules / row["joules_per_inference"] - 1) < 0.3


GPU_SHIPPED = [("gtx1070", "pytorch-cuda", "calibrated"), ("h100", "pytorch-cuda", "cross-device")]


@pytest.mark.parametrize(("hardware", "runtime", "correction"), GPU_SHIPPED)
def test_shipped_gpu_models_answer_and_say_which(hardware, runtime, correction):
    est = Estimator(hardware, runtime=runtime)
    assert est.correction == correction
    result = est.estimate(build_from_spec("hf:bert-base-uncased;seq=64", batch=8))
    assert result.boundary == "gpu-board-nvml" and result.prior.name == "energy-roofline v2"
    assert result.interval[0] <= result.joules <= result.interval[1]
    assert result.to_json()["correction"] == correction


def test_estimator_and_gpu_training_pipeline_agree_on_measured_irene_rows():
    from estimator.learn import gpu_training
    from estimator.learn.gpu_model import sidecar_constants

    table = pd.read_csv(ROOT / "data" / "irene.csv.gz")
    rows = table[(table["hardware"] == "gtx1070") & (table["boundary"] == "gpu-board-nvml")]
    rows = rows[rows["batch"] == 8].head(2).reset_index(drop=True)
    est = Estimator("gtx1070", runtime="pytorch-cuda")
    gs = gpu_training.build_gpu_set(rows)
    constants = {"pytorch-cuda": sidecar_constants(est.model.sidecar, "pytorch-cuda")}
    log_prior, X = gpu_training.prior_and_features(gs, constants)
    pipeline = np.exp(log_prior + est.model.regressor.predict(X))
    api = [est.estimate(build_from_spec(ref, batch=8)).joules for ref in rows["model_ref"]]
    np.testing.assert_allclose(api, pipeline, rtol=1e-5)
