"""What users see: module grouping, carbon and cost, wording, the public surface, and the pictures (their content
parsed from the SVG, not just their existence)."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from estimator.report.carbon import CarbonInputError, find_grid, footprint, grid_intensities
from estimator.report.modules import TOP_LEVEL, kernel_place, module_name, module_of, module_parts
from estimator.report.wording import BOUNDARY_TEXT, baseline_name, interval_sentence

REPO = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"


def exported_like(batch: str | int = "N", channels: int = 8, image: int = 16) -> onnx.ModelProto:
    """A small network whose node names follow PyTorch's exporter (`/layer1/layer1.0/conv1/Conv`).

    stem conv 3->C (3x3, pad 1), one residual block (conv1, relu, conv2, Add, relu_1), global pool, fc C->10.
    """
    c, hw = channels, image

    def weight(name, *dims):
        return helper.make_tensor(name, TensorProto.FLOAT, dims, np.full(math.prod(dims), 0.01, np.float32))

    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["s"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["s1"], name="/relu/Relu"),
        helper.make_node("Conv", ["s1", "w1"], ["a"], name="/layer1/layer1.0/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a1"], name="/layer1/layer1.0/relu/Relu"),
        helper.make_node("Conv", ["a1", "w2"], ["b"], name="/layer1/layer1.0/conv2/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["b", "s1"], ["r"], name="/layer1/layer1.0/Add"),
        helper.make_node("Relu", ["r"], ["r1"], name="/layer1/layer1.0/relu_1/Relu"),
        helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="/avgpool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="/fc/Gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "exported_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        [
            weight("w0", c, 3, 3, 3),
            weight("w1", c, c, 3, 3),
            weight("w2", c, c, 3, 3),
            weight("wf", 10, c),
            weight("bf", 10),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def conv_flops(c_in: int, c_out: int, hw: int, k: int = 3) -> int:
    """FLOPs of a same-padded k x k convolution without bias: 2 per MAC."""
    return 2 * c_out * hw * hw * c_in * k * k


# --- modules -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "depth", "expected"),
    [
        ("/layer1/layer1.0/conv1/Conv", 1, "layer1"),
        ("/layer1/layer1.0/conv1/Conv", 2, "layer1.0"),
        ("/layer1/layer1.0/conv1/Conv", 3, "layer1.0.conv1"),
        ("/layer1/layer1.0/conv1/Conv", 9, "layer1.0.conv1"),
        ("/layer4/layer4.0/downsample/downsample.0/Conv", 4, "layer4.0.downsample.0"),
        ("/encoder/layer.11/attention/self/query/MatMul", 3, "encoder.layer.11.attention"),
        ("/Flatten", 2, TOP_LEVEL),
        ("node_Gemm_1334", 2, TOP_LEVEL),
        ("", 2, TOP_LEVEL),
    ],
)
def test_module_names_follow_the_exporter_scopes(name, depth, expected):
    assert module_name(module_parts(name), depth) == expected


def test_a_fused_kernel_belongs_to_the_scopes_its_nodes_share():
    nodes = ["/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/relu/Relu"]
    assert module_of(nodes, 9) == "layer1.0"
    assert module_of(nodes, 1) == "layer1"
    assert module_of(["/conv1/Conv", "/layer1/layer1.0/Add"], 9) == TOP_LEVEL
    assert kernel_place(["/conv1/Conv", "/relu/Relu"]) == "conv1"
    assert (
        kernel_place(["Identity_3", "/layer4/layer4.0/downsample/downsample.0/Conv"])
        == "layer4.0.downsample.0"
    )
    assert kernel_place(["n12"]) == TOP_LEVEL


# --- carbon and cost ---------------------------------------------------------------------------------------


def test_the_grid_table_is_cited_and_plausible():
    table = grid_intensities()
    assert len(table) >= 20 and "world" in table
    for g in table.values():
        assert g.year == 2023 and g.source and 10 <= g.gco2e_per_kwh <= 1200
    # Figures of the cited source (Ember / Energy Institute via Our World in Data, 2023).
    assert (
        table["fr"].gco2e_per_kwh == 56
        and table["de"].gco2e_per_kwh == 381
        and table["in"].gco2e_per_kwh == 713
    )
    assert find_grid("Germany") == find_grid("DE") == table["de"]


def test_an_unknown_region_suggests_the_closest():
    with pytest.raises(CarbonInputError, match="did you mean 'Germany'"):
        find_grid("Germny")


def test_footprint_arithmetic_and_interval():
    # 3.6 J per inference = 1e-6 kWh; with PUE 1.5 the facility draws 1.5e-6 kWh.
    fp = footprint(3.6, (1.8, 7.2), "gpu-board-nvml", gco2e_per_kwh=500, price_per_kwh=0.2, pue=1.5)
    est, lo, hi = fp.grams_per_inference
    assert (
        est == pytest.approx(1.5e-6 * 500) and lo == pytest.approx(est / 2) and hi == pytest.approx(est * 2)
    )
    assert fp.grams_per_million[0] == pytest.approx(750.0)
    assert fp.cost_per_million[0] == pytest.approx(1.5 * 0.2)
    assert fp.kwh_per_million[0] == pytest.approx(1.5)
    by_region = footprint(3.6, (3.6, 3.6), "wall-system", grid="fr")
    assert by_region.grams_per_inference[0] == pytest.approx(1e-6 * 56)
    assert by_region.cost_per_million is None and "France" in by_region.grid
    payload = by_region.to_json()
    assert (
        payload["gco2e_per_inference"]["estimate"] == pytest.approx(5.6e-5)
        and payload["boundary"] == "wall-system"
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"grid": "de", "gco2e_per_kwh": 300}, {"pue": 0.9}, {"price_per_kwh": -1.0}, {"gco2e_per_kwh": -5}],
)
def test_footprint_refuses_bad_input(kwargs):
    with pytest.raises(CarbonInputError):
        footprint(1.0, (1.0, 1.0), "gpu-board-nvml", **kwargs)


# --- wording -----------------------------------------------------------------------------------------------


def test_every_shipped_boundary_is_explained():
    from estimator.energy.hardware import list_profiles, load_profile

    for name in list_profiles():
        assert load_profile(name).measurement_boundary in BOUNDARY_TEXT
    assert "wall meter" in BOUNDARY_TEXT["soc-core-rail-dynamic"]
    assert baseline_name("desislavov_flops_over_peak_per_watt").endswith("(Desislavov et al.)")


@pytest.mark.parametrize(("joules", "where"), [(0.5, "below"), (1.5, "inside"), (3.0, "above")])
def test_the_interval_sentence_says_where_the_estimate_sits(joules, where):
    text = interval_sentence(joules, (1.0, 2.0), 0.9, calibrated=False)
    assert where in text and "other devices" in text and "90%" in text


# --- the public surface ------------------------------------------------------------------------------------


def test_import_estimator_is_light_and_exports_the_api():
    code = (
        "import sys, estimator\n"
        "heavy = [m for m in ('xgboost', 'pandas', 'estimator.api', 'matplotlib') if m in sys.modules]\n"
        "from estimator import Estimator, Estimate, __version__\n"
        "missing = [n for n in estimator.__all__ if not hasattr(estimator, n)]\n"
        "print(heavy, missing, Estimator.__module__, __version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "[]", "estimator.api", __import__("estimator").__version__]
    assert (REPO / "estimator" / "py.typed").exists()


def test_estimate_repr_is_one_short_line_and_exports_to_dict_and_dataframe():
    from estimator import Estimator

    e = Estimator("a100").estimate(exported_like(), batch=2)
    text = repr(e)
    assert "\n" not in text and len(text) < 250 and "a100" in text and "batch 2" in text
    d = e.to_dict()
    assert d["joules_per_inference"] == e.joules and len(d["top_layers"]) == len(e.layers)
    assert sum(layer["share"] for layer in d["top_layers"]) == pytest.approx(1.0, rel=1e-6)
    pd = pytest.importorskip("pandas")
    frame = e.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(e.layers)
    assert frame["joules"].sum() == pytest.approx(sum(layer.joules for layer in e.layers))


# --- pictures ----------------------------------------------------------------------------------------------


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return [("".join(t.itertext())).strip() for t in root.iter(f"{SVG}text")]


@pytest.fixture
def estimated():
    from estimator import Estimator

    est = Estimator("a100", runtime="pytorch-cuda")
    kernels = est.kernels(exported_like(), batch=4)
    return est, kernels, est.estimate_kernels(kernels)


def test_energy_bars_show_every_kernel_with_its_share(estimated):
    pytest.importorskip("matplotlib")
    from estimator.report.plots import energy_bars_data, energy_bars_figure, svg_text

    _, _, e = estimated
    bars = energy_bars_data(e, top=3)
    assert len(bars) == 4 and bars[-1].label == f"{len(e.layers) - 3} other kernels"
    assert sum(b.share for b in bars) == pytest.approx(1.0)
    assert all(sum(b.by_bound.values()) == pytest.approx(b.joules) for b in bars)
    texts = _texts(svg_text(energy_bars_figure(e, top=3)))
    assert "energy per inference (mJ)" in texts and "kernel" in texts
    assert any(t.startswith("Conv · layer1.0.conv") for t in texts)
    for b in bars:
        assert f"{b.share:.1%}" in texts
    modules = _texts(svg_text(energy_bars_figure(e, by="module", depth=2)))
    assert {"layer1.0", "conv1", "fc", "module"} <= set(modules)


def test_the_roofline_places_every_kernel_under_both_roofs(estimated):
    pytest.importorskip("matplotlib")
    from estimator.report.plots import svg_text
    from estimator.report.roofline import roofline_data, roofline_figure

    est, _, _ = estimated
    kernels = est.kernels(exported_like(channels=64, image=56), batch=8)  # big enough to spill beyond L1
    e = est.estimate_kernels(kernels)
    d = roofline_data(e, kernels, est.profile)
    # Eager PyTorch launches each of the 9 nodes on its own, and each does arithmetic (Relu's compare counts).
    assert len(d.intensity) == 9 and d.without_flops == 0
    assert np.isfinite(d.intensity).sum() >= 3
    # A kernel's time is at least its compute time and its memory time, so its rate is under both roofs.
    assert np.all(d.achieved_flops_per_s <= d.compute_roof_flops_per_s * (1 + 1e-9))
    assert np.all(d.achieved_flops_per_s <= d.memory_roof_bytes_per_s * d.intensity * (1 + 1e-9))
    hw = est.profile
    assert d.memory_roof_bytes_per_s == hw.dram_bandwidth_bytes_per_s * hw.achievable_bandwidth_fraction
    texts = _texts(svg_text(roofline_figure(e, kernels, hw)))
    assert "arithmetic intensity (FLOPs per byte beyond L1)" in texts and "achieved rate (FLOP/s)" in texts
    assert "memory-bound region" in texts and "compute-bound region" in texts
    assert any(t.startswith("roof: ") for t in texts) and any(t.startswith("kernels: ") for t in texts)


def test_batch_and_pareto_pictures(estimated, tmp_path):
    pytest.importorskip("matplotlib")
    from estimator.report.plots import (
        ModelPoint,
        PlotError,
        batch_figure,
        batch_sweep,
        pareto_figure,
        pareto_front,
        save_figure,
    )

    est, _, _ = estimated
    points = batch_sweep(est, exported_like(), [1, 4, 16])
    assert [p.batch for p in points] == [1, 4, 16] and all(p.low <= p.high for p in points)
    png = save_figure(batch_figure(points), tmp_path / "batch.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = save_figure(batch_figure(points), tmp_path / "batch.svg").read_text()
    assert {"batch size", "energy per sample (mJ)", "16"} <= set(_texts(svg))

    models = [
        ModelPoint("a", 1e-3, 1e-3, 2e-3, 70),
        ModelPoint("b", 2e-3, 2e-3, 3e-3, 75),
        ModelPoint("c", 3e-3, 3e-3, 4e-3, 72),
        ModelPoint("d", 0.5e-3, 0.4e-3, 1e-3, 60),
    ]
    assert [p.name for p in pareto_front(models)] == ["d", "a", "b"]
    assert [p.name for p in pareto_front(models, higher_is_better=False)] == ["d"]
    texts = _texts(save_figure(pareto_figure(models, metric_label="top-1"), tmp_path / "p.svg").read_text())
    assert {"a", "b", "c", "d", "Pareto front", "top-1 (higher is better)"} <= set(texts)
    with pytest.raises(PlotError, match=r"\.svg or \.png"):
        save_figure(batch_figure(points), tmp_path / "x.jpg")


def test_without_matplotlib_the_error_is_one_line(monkeypatch):
    from estimator.report.plots import PlotError, _pyplot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match=r"pip install 'onnx-energy-estimator\[plot\]'"):
        _pyplot()


def test_conv_flops_of_the_test_network_match_the_cost_engine():
    from estimator.cost.nodes import count_costs
    from estimator.graph.load import load_graph

    costs = count_costs(load_graph(exported_like(), batch=1))
    flops = {n.name: n.flops for n in costs.nodes}
    assert flops["/conv1/Conv"] == conv_flops(3, 8, 16)
    assert flops["/layer1/layer1.0/conv1/Conv"] == conv_flops(8, 8, 16)
