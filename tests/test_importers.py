"""Importers of the shared data sets, checked against the figures in their PROVENANCE.md files, and the
committed tables under data/ checked against a fresh import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from estimator.data.importers import getzner_layer_specs, import_source
from estimator.data.measurements import read_measurements
from estimator.errors import DataError

REPO = Path(__file__).parents[1]
SHARED = (REPO / "../shared/datasets").resolve()
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared/datasets is not next to the repository")


@pytest.fixture(scope="module")
def hwnas() -> pd.DataFrame:
    return import_source("hwnasbench360", SHARED / "hwnasbench360")


@pytest.fixture(scope="module")
def getzner() -> pd.DataFrame:
    return import_source("getzner", SHARED / "dl_energy_estimator_getzner")


def test_unknown_source_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data source"):
        import_source("nope", tmp_path)


def test_hwnas_importer_on_a_synthetic_file(tmp_path: Path) -> None:
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"
    rows = [
        (7, "pi5", "litert", "cifar100", 4.0, 0.0004, 6.0),  # 1.5 W: kept
        (7, "pi5", "onnx", "darcy", 40.0, 0.0016, 60.0),  # kept
        (7, "pixel", "litert", "cifar100", 3.0, np.nan, np.nan),  # no energy
        (8, "pi5", "litert", "ninapro", 0.003, 1e-8, 0.001),  # 0.33 W: a failed run
    ]
    frame = pd.DataFrame(
        rows, columns=["arch_idx", "device", "framework", "task", "lat_ms_median", "lat_ms_var", "energy_mj"]
    ).assign(accuracy=50.0, status="ok", arch_str=arch)
    frame.to_csv(tmp_path / "measured_unique_with_arch_str.csv", index=False)
    out = import_source("hwnasbench360", tmp_path)
    assert len(out) == 2
    first = out.iloc[0]
    assert first["model_ref"] == f"nb201:{arch};C=16;N=5;classes=100;input=3x32x32"
    assert first["runtime"] == "tflite"
    assert first["joules_per_inference"] == pytest.approx(0.006)
    assert first["latency_s"] == pytest.approx(0.004)
    assert first["latency_spread_rel"] == pytest.approx(np.sqrt(0.0004) / 4.0, rel=1e-3)
    assert out.iloc[1]["model_ref"].endswith("classes=1;input=1x88x88")
    assert out.iloc[1]["runtime"] == "onnxruntime"
    log = out.attrs["import_log"]
    assert log["dropped: not pi5 (no energy)"] == 1
    assert log["dropped: energy/latency outside 0.5-5.0 W"] == 1


@pytest.mark.parametrize(
    ("architecture", "macs_per_sample"),
    # torchvision totals at 3x224x224 as ptflops reports them (bias adds and ReLU counted): AlexNet 0.72 GMac,
    # VGG11 7.63 GMac, VGG13 11.34 GMac; the source's whole-model `macs` / batch, checked in the import.
    [("alexnet", 715_561_896), ("vgg11", 7_630_106_088), ("vgg13", 11_339_116_008)],
)
def test_layer_tables_sum_to_the_whole_network(architecture: str, macs_per_sample: int) -> None:
    layers = getzner_layer_specs(architecture)
    assert sum(layer.macs_in_network for layer in layers) == macs_per_sample
    first = layers[0]
    # conv1 by the closed form: out channels * out pixels * (in channels * k * k + 1 bias)
    if architecture == "alexnet":
        assert first.macs_per_sample == 64 * 55 * 55 * (3 * 11 * 11 + 1)
    else:
        assert first.macs_per_sample == 64 * 224 * 224 * (3 * 3 * 3 + 1)


@needs_shared
def test_hwnas_rows_and_medians_match_provenance(hwnas: pd.DataFrame) -> None:
    # 5,820 archs x 3 runtimes x 3 tasks, less 3 rows of arch 10 whose litert latency is 3 microseconds
    assert len(hwnas) == 5820 * 9 - 3
    assert hwnas["group"].nunique() == 5820
    medians_mj = hwnas.groupby(["runtime", "task"])["joules_per_inference"].median() * 1000
    # PROVENANCE.md: litert 6.2 / 45.5 / 5.0, onnx 7.8 / 57.3 / 6.8, torchmobile 10.8 / 81.8 / 9.1 (mJ),
    # medians over all 6,466 archs; this copy holds 5,820 of them.
    expected = {
        ("tflite", "cifar100"): 6.2,
        ("tflite", "darcy"): 45.5,
        ("tflite", "ninapro"): 5.0,
        ("onnxruntime", "cifar100"): 7.8,
        ("onnxruntime", "darcy"): 57.3,
        ("torchscript-mobile", "cifar100"): 10.8,
        ("torchscript-mobile", "darcy"): 81.8,
        ("torchscript-mobile", "ninapro"): 9.1,
    }
    for key, value in expected.items():
        assert medians_mj[key] == pytest.approx(value, rel=0.02), key
    assert (hwnas["boundary"] == "soc-core-rail-dynamic").all()
    assert hwnas["idle_subtracted"].all()
    assert hwnas["spread_rel"].isna().all()


@needs_shared
def test_getzner_rows_and_medians_match_provenance(getzner: pd.DataFrame) -> None:
    assert len(getzner) == 21555 // 3
    assert (getzner["repeats"] == 3).all()
    whole = getzner[getzner["layer_idx"] == 0]
    per_sample = whole.groupby("architecture")["joules_per_sample"].median()
    # PROVENANCE.md: median CPU J/sample AlexNet 1.41, VGG11 17.3, VGG13 25.5
    assert per_sample["alexnet"] == pytest.approx(1.41, rel=0.02)
    assert per_sample["vgg11"] == pytest.approx(17.3, rel=0.02)
    assert per_sample["vgg13"] == pytest.approx(25.5, rel=0.02)
    assert getzner.attrs["import_log"]["checked: macs differ from the module formula"] == 0


@needs_shared
def test_getzner_sum_of_layers_matches_whole_model(getzner: pd.DataFrame) -> None:
    layerwise = getzner[getzner["source_file"].str.contains("layerwise")]
    keys = ["source_file", "architecture", "batch"]
    whole = layerwise[layerwise["layer_idx"] == 0].set_index(keys)["joules_per_inference"]
    layers = layerwise[layerwise["layer_idx"] > 0].groupby(keys)["joules_per_inference"].sum()
    ratio = (layers / whole).dropna()
    counts = ratio.groupby(level="architecture").size()
    # PROVENANCE.md: sum of layers / whole, median 1.006 (AlexNet, 20), 1.012 (VGG11, 20), 1.007 (VGG13, 15)
    assert counts.to_dict() == {"alexnet": 20, "vgg11": 20, "vgg13": 15}
    medians = ratio.groupby(level="architecture").median()
    assert medians["alexnet"] == pytest.approx(1.006, abs=0.003)
    assert medians["vgg11"] == pytest.approx(1.012, abs=0.003)
    assert medians["vgg13"] == pytest.approx(1.007, abs=0.003)


@needs_shared
def test_getzner_refs_build_in_the_zoo(getzner: pd.DataFrame) -> None:
    zoo = pytest.importorskip("estimator.zoo")
    refs = getzner.drop_duplicates("family")["model_ref"].tolist()
    refs += getzner[getzner["layer_idx"].notna()]["model_ref"].drop_duplicates().head(40).tolist()
    for ref in refs:
        zoo.build_from_spec(ref, 2)


@needs_shared
def test_mlperf_validation_table() -> None:
    table = import_source("mlperf_power", SHARED / "mlperf_power")
    log = table.attrs["import_log"]
    assert log["corrected: v3.1 energy labelled J is in mJ (divided by 1000)"] > 0
    assert (table["boundary"] == "wall-system").all()
    assert set(table["hardware"]) >= {"a100", "h100", "h200", "l4", "t4", "jetson-orin", "rpi4"}
    dropped = sum(v for k, v in log.items() if k.startswith("dropped"))
    assert dropped + len(table) == log["rows_in"]
    # ResNet-50 Offline on 8x H100 SXM, MLPerf v3.x-4.x: a few mJ per sample for the whole box
    resnet = table[
        (table["group"] == "resnet") & (table["hardware"] == "h100") & (table["scenario"] == "Offline")
    ]
    per_sample = resnet["power_w"] / resnet["throughput"]
    assert np.allclose(per_sample, resnet["joules_per_sample"], rtol=1e-5)
    assert resnet["joules_per_sample"].between(0.003, 0.02).all()
    # SingleStream rows: the implied system power must be that of a real box
    stream = table[table["scenario"] == "SingleStream"]
    watts = stream["joules_per_inference"] / stream["latency_s"]
    assert watts.between(0.001, 3000).all()


@needs_shared
def test_mlenergy_validation_table() -> None:
    table = import_source("mlenergy", SHARED / "mlenergy_leaderboard")
    assert len(table) == 260 + 474 + 1858
    assert (table["boundary"] == "gpu-board-nvml").all()
    image = table[table["joules_per_inference"].notna()]
    assert np.allclose(image["joules_per_inference"], image["joules_per_sample"] * image["batch"], rtol=1e-5)


@needs_shared
@pytest.mark.parametrize(
    ("source", "folder", "file", "kind"),
    [
        ("hwnasbench360", "hwnasbench360", "hwnasbench360.csv.gz", "training"),
        ("getzner", "dl_energy_estimator_getzner", "getzner.csv.gz", "training"),
        ("mlperf_power", "mlperf_power", "validation_mlperf.csv.gz", "validation"),
        ("mlenergy", "mlenergy_leaderboard", "validation_mlenergy.csv.gz", "validation"),
    ],
)
def test_committed_tables_match_a_fresh_import(source: str, folder: str, file: str, kind: str) -> None:
    committed = REPO / "data" / file
    assert committed.stat().st_size < 2_000_000
    stored = read_measurements(committed, table=kind)  # type: ignore[arg-type]
    fresh = import_source(source, SHARED / folder)
    assert len(stored) == len(fresh)
    assert list(stored.columns) == list(fresh.columns)
    for name in ["model_ref", "hardware", "runtime"]:
        assert stored[name].tolist() == fresh[name].tolist()
    assert np.allclose(
        stored["joules_per_sample"].astype(float),
        fresh["joules_per_sample"].astype(float),
        rtol=1e-9,
        equal_nan=True,
    )
