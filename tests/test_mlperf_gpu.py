"""MLPerf Power as a GPU source: the importer's conversion of hand-made rows, and leave-one-device-out with a
device measured by several sources."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from estimator.data.importers import import_source
from estimator.data.importers.mlperf_power_gpu import MLPERF_OFFLINE_BATCH
from estimator.learn.gpu_set import OPTIONAL_GPU_TABLES, device_folds, load_gpu_table

REPO = Path(__file__).parents[1]

_COLUMNS = [
    "Public ID",
    "SystemName",
    "Model MLC",
    "Scenario",
    "accelerator_model_name",
    "Total Accelerators",
    "category",
    "throughput",
    "throughput_units",
    "system_power_W",
    "latency_ms",
    "energy_J_per_query",
    "energy_J_per_sample_derived",
    "energy_units_raw",
    "Software",
    "version",
]
_BOX = "Box (8x A100-SXM-80GB; TensorRT)"


def _row(
    pid,
    system,
    model,
    scenario,
    device,
    n,
    *,
    w=None,
    thr=None,
    ms=None,
    jq=None,
    units=None,
    sw="TensorRT 8",
):
    derived = w / thr if w is not None else None
    category = "datacenter" if scenario in ("Offline", "Server") else "edge"
    return [pid, system, model, scenario, device, n, category, thr, "samples/s" if thr else None, w, ms, jq,
            derived, units, sw, "v2.0"]  # fmt: skip


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    rows = [
        # ResNet-50 Offline on 8 A100s, two rounds: 2400 W / 120000 samples/s and 2600 W / 120000 samples/s
        _row("2.0-1", _BOX, "ResNet", "Offline", "NVIDIA A100-SXM-80GB", 8, w=2400.0, thr=120000.0),
        _row("2.1-1", _BOX, "ResNet", "Offline", "NVIDIA A100-SXM-80GB", 8, w=2600.0, thr=120000.0),
        # BERT-99.9 Offline: FP16 on NVIDIA's harness
        _row("2.0-1", _BOX, "BERT-99.9", "Offline", "NVIDIA A100-SXM-80GB", 8, w=3000.0, thr=12000.0),
        # BERT-99 SingleStream on one L4 (edge, energy per query in J): 1.2 J per query of one sample
        _row(
            "2.0-2",
            "Edge (1x L4)",
            "BERT-99",
            "SingleStream",
            "NVIDIA L4",
            1,
            ms=5.0,
            jq=1.2,
            units="System energy (J) per stream*",
        ),
        # ResNet-50 MultiStream on one L4: 0.4 J per query of 8 samples
        _row(
            "2.0-2",
            "Edge (1x L4)",
            "ResNet",
            "MultiStream",
            "NVIDIA L4",
            1,
            ms=4.0,
            jq=0.4,
            units="System energy (J) per stream*",
        ),
        # dropped: Server (batch unknown), A30 (no profile), RetinaNet (no graph), ONNX Runtime (not TensorRT)
        _row("2.0-1", _BOX, "ResNet", "Server", "NVIDIA A100-SXM-80GB", 8, w=2500.0, thr=100000.0),
        _row("2.0-3", "Box (1x A30)", "ResNet", "Offline", "NVIDIA A30", 1, w=400.0, thr=15000.0),
        _row("2.0-1", _BOX, "RetinaNet", "Offline", "NVIDIA A100-SXM-80GB", 8, w=3000.0, thr=1200.0),
        _row(
            "2.0-4",
            "PC (1x RTX 4090)",
            "ResNet",
            "Offline",
            "NVIDIA GeForce RTX 4090",
            1,
            w=500.0,
            thr=30000.0,
            sw="Onnxruntime v1.15",
        ),
    ]
    path = tmp_path / "mlperf_power_paired_DERIVED.csv"
    pd.DataFrame(rows, columns=_COLUMNS).to_csv(path, index=False)
    return path


def test_hand_made_rows_convert_to_one_board_forward_pass_plus_its_host_share(raw: Path) -> None:
    t = import_source("mlperf_power_gpu", raw)  # values rounded to 6 significant digits, hence rel=1e-5
    log = t.attrs["import_log"]
    assert len(t) == 4
    assert (t["boundary"] == "wall-system").all() and (t["runtime"] == "tensorrt").all()
    assert (t["boards"] == 1).all()  # one board's forward pass; the box's accelerators are a column apart
    resnet = t[(t["group"] == "resnet") & (t["scenario"] == "Offline")].iloc[0]
    per_sample = float(np.median([2400.0 / 120000.0, 2600.0 / 120000.0]))  # wall W / samples per s
    assert resnet["joules_per_sample"] == pytest.approx(per_sample, rel=1e-5)
    assert resnet["batch"] == MLPERF_OFFLINE_BATCH["resnet"] == 2048
    assert resnet["joules_per_inference"] == pytest.approx(per_sample * 2048, rel=1e-5)
    assert resnet["accelerators"] == 8 and resnet["repeats"] == 2
    assert resnet["spread_rel"] == pytest.approx((2600.0 - 2400.0) / 120000.0 / per_sample, rel=1e-5)
    assert resnet["dtype"] == "int8" and resnet["model_ref"] == "data/graphs/resnet50.onnx"
    bert = t[t["hardware"].eq("a100") & t["group"].eq("bert")].iloc[0]
    assert bert["dtype"] == "float16" and bert["seq_len"] == 384
    assert bert["joules_per_sample"] == pytest.approx(3000.0 / 12000.0, rel=1e-5)
    single = t[t["scenario"] == "SingleStream"].iloc[0]
    assert (single["hardware"], single["batch"], single["dtype"]) == ("l4", 1, "int8")
    assert single["joules_per_inference"] == pytest.approx(1.2, rel=1e-5)
    multi = t[t["scenario"] == "MultiStream"].iloc[0]
    assert multi["batch"] == 8 and multi["joules_per_inference"] == pytest.approx(0.4, rel=1e-5)
    assert multi["joules_per_sample"] == pytest.approx(0.4 / 8, rel=1e-5)
    assert log["dropped: Server scenario (batch set by the latency bound)"] == 1
    assert log["dropped: a30 has no GPU profile"] == 1
    assert log["dropped: no committed graph for retinanet"] == 1
    assert log["dropped: runtime onnxruntime (not NVIDIA's TensorRT harness)"] == 1


def test_committed_table_is_the_import_of_the_committed_validation_table() -> None:
    from estimator.data.importers.mlperf_power_gpu import mlperf_gpu_rows
    from estimator.data.measurements import read_measurements

    validation = read_measurements(REPO / "data" / "validation_mlperf.csv.gz", table="validation")
    fresh = mlperf_gpu_rows(validation)
    stored = read_measurements(REPO / OPTIONAL_GPU_TABLES["mlperf_power"])
    assert len(stored) == len(fresh) > 50
    assert stored["hardware"].tolist() == fresh["hardware"].tolist()
    np.testing.assert_allclose(stored["joules_per_sample"], fresh["joules_per_sample"], rtol=1e-5)
    # every graph a row names is committed, and every device has a GPU profile
    assert all((REPO / ref).is_file() for ref in set(stored["model_ref"]))
    assert {"a100", "a100-40gb", "h100", "h200", "l4", "rtx4090", "t4"} <= set(stored["hardware"])


def test_leave_one_device_out_holds_a_device_out_of_every_source() -> None:
    """A device measured by several sources (a100-40gb: Fischer and MLPerf; rtx4090: Fischer and MLPerf;
    h100: ML.ENERGY and MLPerf) has all its rows in test and none in train, whichever source measured them."""
    t = load_gpu_table(REPO, with_sources=["mlperf_power"], judged=True)
    devices = t["hardware"].astype(str).to_numpy()
    sources = t["source"].astype(str).to_numpy()
    trainable = ~t["judged_only"].to_numpy(dtype=bool)
    shared = {d for d in set(devices) if len(set(sources[devices == d])) >= 2}
    assert {"a100-40gb", "rtx4090", "h100"} <= shared
    folds = device_folds(devices, trainable, t["group"].astype(str).to_numpy())
    assert len(folds) == len(set(devices))
    for device, (train, test, inner) in zip(sorted(set(devices)), folds, strict=True):
        assert device not in set(devices[train])
        np.testing.assert_array_equal(test, devices == device)
        assert not (train & ~trainable).any()
        assert math.isclose(train.sum(), ((devices != device) & trainable).sum())
        assert device not in set(inner[train])


def test_leave_one_source_out_says_when_a_held_out_device_still_trains_from_another_source() -> None:
    from estimator.learn.gpu_report import _shared_devices_line

    by_source = {
        "fischer_eff22": {
            "devices": ["a100-40gb", "quadro-rtx5000"],
            "trained_on": ["irene", "mlperf_power"],
        },
        "irene": {"devices": ["gtx1070"], "trained_on": ["fischer_eff22", "mlperf_power"]},
        "mlenergy_diffusion": {"devices": ["h100"], "trained_on": ["fischer_eff22", "irene"]},  # judged only
        "mlperf_power": {"devices": ["a100-40gb", "h100"], "trained_on": ["fischer_eff22", "irene"]},
    }
    line = _shared_devices_line(by_source)
    assert "a100-40gb held out with fischer_eff22 (its mlperf_power rows train)" in line
    assert "a100-40gb held out with mlperf_power (its fischer_eff22 rows train)" in line
    assert "h100" not in line  # ML.ENERGY's h100 rows never train, and MLPerf's are out with MLPerf
    assert "gtx1070" not in line and "quadro" not in line
    alone = {k: v for k, v in by_source.items() if k in ("irene", "mlenergy_diffusion")}
    assert _shared_devices_line(alone).startswith("No held-out source's device")


def test_mlperf_power_is_left_out_of_the_gpu_table_unless_named() -> None:
    """Optional (OPTIONAL_GPU_TABLES says why): out of the default GPU table, all its rows in when named."""
    assert "mlperf_power" not in set(load_gpu_table(REPO)["source"])
    assert "mlperf_power" not in set(load_gpu_table(REPO, judged=True)["source"])
    named = load_gpu_table(REPO, with_sources=["mlperf_power"])
    stored = pd.read_csv(REPO / OPTIONAL_GPU_TABLES["mlperf_power"])
    assert (named["source"] == "mlperf_power").sum() == len(stored)
    assert (named.loc[named["source"] == "mlperf_power", "boundary"] == "wall-system").all()
