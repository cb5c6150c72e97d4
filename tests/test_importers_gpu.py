"""GPU importers (IrEne, Fischer, Power Hungry Processing): conversions in closed form, synthetic files, and
the committed tables against a fresh import when shared/datasets is next to the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from estimator.data.importers import DEFAULT_FILES, TABLE_KINDS, import_source
from estimator.data.importers._cnn_graphs import KERAS_TO_TIMM, family_of, graph_ref
from estimator.data.importers.fischer import (
    eff22_samples_and_board_batch,
    per_board_joules_per_sample,
    wall_vs_codecarbon,
)
from estimator.data.importers.power_hungry import idle_board_watts, single_board_joules
from estimator.data.measurements import check_frame, read_measurements

REPO = Path(__file__).parents[1]
SHARED = (REPO / "../shared/datasets").resolve()
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared/datasets is not next to the repository")


def test_per_board_energy_of_a_data_parallel_run() -> None:
    # 8 boards, 40 and 48 J alternating -> mean 44 J per board, 800 samples -> 100 per board -> 0.44 J/sample.
    assert per_board_joules_per_sample([40.0, 48.0] * 4, 800) == pytest.approx(0.44)
    # One board: plain energy / samples.
    assert per_board_joules_per_sample([10.0], 4) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        per_board_joules_per_sample([1.0, 1.0], 1)


def test_eff22_batches_follow_the_published_scripts() -> None:
    # PyTorch DataParallel: global batch 32 x 8 = 256, drop_last -> 195 steps, 49,920 images, 32 per board.
    # TensorFlow alike: ds.batch(32 x 8, drop_remainder=True), scattered by MirroredStrategy: 32 per board.
    assert eff22_samples_and_board_batch(32, 8) == (49_920, 32, 195)
    # one board (the Quadro): 1,562 full batches of 32
    assert eff22_samples_and_board_batch(32, 1) == (49_984, 32, 1562)


def test_power_hungry_idle_subtraction() -> None:
    # 8 boards at 480 W summed while loading -> 60 W each; 100 s of querying summed 60 kJ -> minus 7 x 60 W x 100 s.
    assert idle_board_watts(480.0) == pytest.approx(60.0)
    assert single_board_joules(60_000.0, 100.0, 60.0, 7) == pytest.approx(60_000.0 - 42_000.0)
    assert single_board_joules(1000.0, 10.0, 0.0, 7) == pytest.approx(1000.0)


def test_wall_ratio_and_graph_table() -> None:
    assert wall_vs_codecarbon(3.0, 2.0) == pytest.approx(1.5)
    assert graph_ref("EfficientNetB0", KERAS_TO_TIMM, "keras")[0] == "data/graphs/tf_efficientnet_b0.onnx"
    assert graph_ref("NASNetMobile", KERAS_TO_TIMM, "keras") == (
        "data/graphs/keras-nasnet-mobile.onnx",
        "graph: keras-nasnet-mobile (rebuilt layer for layer from Keras' nasnet.py; no timm twin)",
    )
    assert graph_ref("QuickNetSmall", KERAS_TO_TIMM, "keras")[0] == "data/graphs/larq-quicknet-small.onnx"
    assert graph_ref("Unknown", KERAS_TO_TIMM, "keras")[0] == "keras:Unknown"
    assert family_of("EfficientNetV2B3") == "EfficientNetV2"
    assert family_of("ResNet50V2") == "ResNetV2"
    assert family_of("ResNet50") == "ResNet"


def test_irene_importer_on_synthetic_files(tmp_path: Path) -> None:
    header = (
        "batch_size,seq_len,flops,mem_bytes,cpu,mem,gpu,gpu_mem,gpu_clk,gpu_mem_clk,times_mean,"
        "gpu_energy_mean,energy_mean,level_name,model_name\n"
    )
    for device in ("device_1", "device_2"):
        (tmp_path / device).mkdir()
        (tmp_path / device / "model_level_features.csv").write_text(
            header
            + "8.0,32.0,1,1,1,1,1,1,1900,3802,0.02,2.0,3.0,bert-base-uncased,bert-base-uncased\n"
            + "8.0,32.0,1,1,1,1,1,1,1900,3802,0.01,0.1,0.2,sshleifer/tiny-ctrl,sshleifer/tiny-ctrl\n",
            encoding="utf-8",
        )
    out = import_source("irene", tmp_path)
    assert len(out) == 4  # 2 devices x 2 boundaries; tiny-ctrl dropped
    assert out.attrs["import_log"]["dropped: no torch-free graph (sshleifer/tiny-ctrl)"] == 2
    nvml = out[out["boundary"] == "gpu-board-nvml"]
    machine = out[out["boundary"] == "machine-total"]
    assert nvml["joules_per_inference"].tolist() == [2.0, 2.0]
    assert machine["joules_per_sample"].tolist() == [3.0 / 8, 3.0 / 8]
    assert set(out["hardware"]) == {"gtx1070", "gtx1080ti"}
    assert out["model_ref"].iloc[0] == "hf:bert-base-uncased;seq=32"
    assert out["power_w"].iloc[0] == pytest.approx(out["joules_per_inference"].iloc[0] / 0.02)
    assert check_frame(out) == []


SOURCES = [
    ("irene", "irene"),
    ("irene_modules", "irene"),
    ("fischer_eff22", "fischer_imagenet_eff22"),
    ("fischer_rtx4090", "fischer_strep_testbed_rtx4090"),
    ("fischer_validation", "fischer_ai_energy_validation"),
    ("power_hungry", "power_hungry_processing"),
    ("power_hungry_generative", "power_hungry_processing"),
]


@pytest.mark.parametrize(("source", "folder"), SOURCES)
def test_committed_gpu_tables_are_valid_and_small(source: str, folder: str) -> None:
    committed = REPO / "data" / DEFAULT_FILES[source]
    assert committed.stat().st_size < 2_000_000
    table = read_measurements(committed, table=TABLE_KINDS[source])
    assert len(table) > 0
    both = table["joules_per_inference"].notna()
    assert np.allclose(
        table.loc[both, "joules_per_inference"],
        table.loc[both, "joules_per_sample"] * table.loc[both, "batch"],
        rtol=1e-4,
    )


@needs_shared
@pytest.mark.parametrize(("source", "folder"), [s for s in SOURCES if s[0] != "irene_modules"])
def test_committed_gpu_tables_match_a_fresh_import(source: str, folder: str) -> None:
    stored = read_measurements(REPO / "data" / DEFAULT_FILES[source], table=TABLE_KINDS[source])
    fresh = import_source(source, SHARED / folder)
    assert len(stored) == len(fresh)
    for name in ["model_ref", "hardware", "runtime", "boundary"]:
        assert stored[name].tolist() == fresh[name].tolist()
    assert np.allclose(stored["joules_per_sample"], fresh["joules_per_sample"].astype(float), rtol=1e-9)


def test_fischer_tensorflow_macs_are_the_published_multiply_adds() -> None:
    """Fischer's "gflops" counts multiply-adds: the recorded MACs of the TensorFlow rows agree with the MACs the
    cost engine counts on the committed Keras twins (independently built graphs), not with half of them."""
    from estimator.cost.nodes import count_costs
    from estimator.graph.load import load_graph

    table = read_measurements(
        REPO / "data" / DEFAULT_FILES["fischer_eff22"], table=TABLE_KINDS["fischer_eff22"]
    )
    tf_rows = table[table["macs"].notna()].drop_duplicates("model_ref")
    ratios = {}
    for ref, macs in zip(tf_rows["model_ref"], tf_rows["macs"], strict=True):
        # graphs with Keras' own arithmetic (the ResNet twins stride where torchvision does: 4.09 G, Keras 3.86 G)
        if ref in (
            "data/graphs/vgg16.onnx",
            "data/graphs/vgg19.onnx",
            "data/graphs/keras-nasnet-mobile.onnx",
        ):
            ratios[ref] = macs / count_costs(load_graph(REPO / ref, batch=1)).totals.macs
    assert len(ratios) == 3, ratios
    for ref, r in ratios.items():
        assert r == pytest.approx(1.0, rel=0.02), (ref, r)
