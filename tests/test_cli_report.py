"""The commands users see, through typer's CliRunner: energy with carbon and cost, layers by module, the
hardware tables at 80 columns, --version, did-you-mean, help texts, `report` and `plot`."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import onnx
import pytest
from test_report import _texts, conv_flops, exported_like
from typer.testing import CliRunner

from estimator.cli import app
from estimator.cli import run as cli_run

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "net.onnx"
    onnx.save(exported_like(), path)
    return path


def invoke(*args: str, columns: int = 80):
    result = runner.invoke(app, list(args), env={"COLUMNS": str(columns), "NO_COLOR": "1"})
    return result


def assert_fits(text: str, width: int = 80) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, f"{len(long)} lines wider than {width}: {long[:3]}"


def test_version():
    from estimator import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip().endswith(__version__)


def test_energy_text_fits_80_columns_and_reads_plainly(model):
    result = invoke("energy", str(model), "--hw", "rpi5", "--batch", "2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert_fits(out)
    assert "wall meter" in out  # what the soc-core-rail-dynamic boundary covers
    assert "Desislavov et al." in out and "desislavov_flops_over_peak_per_watt" not in out
    assert "TDP x roofline time" in out
    assert "\x1b[" not in out  # no colour when not a terminal
    assert "[layer1.0.conv1]" in out  # a kernel named by its first node's module (conv1 + relu fused)


def test_energy_carbon_and_cost_in_text_and_json(model):
    result = invoke(
        "energy",
        str(model),
        "--hw",
        "a100",
        "--batch",
        "2",
        "--json",
        "--grid",
        "fr",
        "--price-per-kwh",
        "0.25",
        "--currency",
        "EUR",
        "--pue",
        "1.2",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    joules, fp = payload["joules_per_inference"], payload["footprint"]
    assert fp["gco2e_per_inference"]["estimate"] == pytest.approx(joules * 1.2 * 56 / 3.6e6)
    assert fp["gco2e_per_inference"]["low"] == pytest.approx(
        payload["interval"]["low_joules"] * 1.2 * 56 / 3.6e6
    )
    assert fp["cost_per_million_inferences"]["estimate"] == pytest.approx(joules * 1.2 * 1e6 / 3.6e6 * 0.25)
    assert fp["boundary"] == "gpu-board-nvml" and fp["pue"] == 1.2
    text = invoke(
        "energy",
        str(model),
        "--hw",
        "a100",
        "--batch",
        "2",
        "--grid-gco2-per-kwh",
        "400",
        "--price-per-kwh",
        "0.1",
    )
    assert (
        text.exit_code == 0
        and "CO2e per inference" in text.output
        and "per million inferences" in text.output
    )
    assert_fits(text.output)
    bad = invoke("energy", str(model), "--hw", "a100", "--batch", "2", "--grid", "atlantis")
    assert bad.exit_code == 2 and "unknown grid region" in bad.output


def test_layers_by_module_sums_the_nodes_of_each_module(model):
    result = invoke(
        "layers", str(model), "--batch", "1", "--by", "module", "--depth", "2", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    rows = {r["name"]: r for r in payload["rows"]}
    assert payload["depth"] == 2
    assert rows["layer1.0"]["count"] == 5 and rows["layer1.0"]["flops"] >= 2 * conv_flops(8, 8, 16)
    assert rows["conv1"]["flops"] == conv_flops(3, 8, 16)
    assert sum(r["share"] for r in payload["rows"]) == pytest.approx(1.0)
    deeper = json.loads(
        invoke(
            "layers", str(model), "--batch", "1", "--by", "module", "--depth", "3", "--format", "json"
        ).output
    )
    names = {r["name"] for r in deeper["rows"]}
    assert {"layer1.0.conv1", "layer1.0.conv2", "layer1.0.relu", "layer1.0"} <= names
    as_csv = invoke("layers", str(model), "--batch", "1", "--by", "module", "--format", "csv").output
    header = next(csv.reader(io.StringIO(as_csv)))
    assert header[:3] == ["name", "count", "share"]
    table = invoke("layers", str(model), "--batch", "1", "--by", "module")
    assert table.exit_code == 0 and "FLOPs %" in table.output
    assert_fits(table.output)


@pytest.mark.parametrize("by", ["node", "kernel", "op"])
def test_layers_tables_fit_80_columns(model, by):
    result = invoke("layers", str(model), "--batch", "1", "--by", by)
    assert result.exit_code == 0
    assert_fits(result.output)


def test_hardware_tables_fit_80_columns():
    listed = invoke("hardware", "list")
    assert listed.exit_code == 0 and "rpi5" in listed.output
    assert_fits(listed.output)
    for name in ("a100", "rpi5", "xeon-gold-5120", "jetson-orin"):
        shown = invoke("hardware", "show", name)
        assert shown.exit_code == 0 and "dram_bandwidth_bytes_per_s" in shown.output
        assert_fits(shown.output)


def test_did_you_mean_for_profiles_and_runtimes(model, capsys):
    assert cli_run(["energy", str(model), "--hw", "A100", "--batch", "1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'a100'" in err and len(err.strip().splitlines()) == 1
    assert cli_run(["energy", str(model), "--hw", "rpi5", "--runtime", "tflit", "--batch", "1"]) == 2
    assert "did you mean 'tflite'" in capsys.readouterr().err


def test_help_lists_runtimes_and_flags_without_type_noise():
    result = invoke("energy", "--help", columns=200)
    assert result.exit_code == 0
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
    from estimator.energy.runtimes import RUNTIMES

    for name in RUNTIMES:
        assert f"{name}:" in plain
    json_line = next(line for line in plain.splitlines() if "--json" in line)
    assert "<bool>" not in json_line and "--models-dir" in plain and "--grid" in plain


def test_models_dir_on_energy(model, tmp_path):
    # An empty models folder: no trained model, so the estimate is physics-only even on rpi5/tflite.
    result = invoke(
        "energy", str(model), "--hw", "rpi5", "--batch", "1", "--json", "--models-dir", str(tmp_path)
    )
    assert result.exit_code == 0 and json.loads(result.output)["calibrated"] is False


def test_evaluate_needs_an_explicit_out(tmp_path):
    assert invoke("evaluate").exit_code == 2
    result = invoke("evaluate", "--out", str(tmp_path), "--data-root", str(tmp_path))
    assert result.exit_code == 2 and "--data-root" in result.output


def test_report_is_one_self_contained_page(model, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.html"
    result = invoke(
        "report",
        str(model),
        "--hw",
        "a100",
        "--batch",
        "2",
        "-o",
        str(out),
        "--batches",
        "1,2,4",
        "--grid",
        "de",
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg") == 4  # kernels, modules, roofline, batch
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", page) and "<script" not in page
    assert "wall meter" not in page and "The whole GPU board" in page
    # a100 has no measurements of its own: the interval is the cross-device model's, from GPUs it had not seen
    assert "had not" in page and "CO2e per inference" in page and "layer1.0.conv1" in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert "energy per sample (mJ)" in _texts(svgs[3])


def test_report_without_matplotlib_still_writes_the_numbers(model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "report.html"
    result = invoke("report", str(model), "--hw", "rpi5", "--batch", "1", "-o", str(out))
    assert result.exit_code == 0 and "no pictures" in result.output
    page = out.read_text(encoding="utf-8")
    assert "<svg" not in page and "onnx-energy-estimator[plot]" in page and "Kernels by energy" in page


def test_plot_commands_write_pictures(model, tmp_path):
    pytest.importorskip("matplotlib")
    for args, name in [
        (["layers", str(model), "--hw", "a100", "--batch", "2"], "layers.svg"),
        (["layers", str(model), "--hw", "a100", "--batch", "2", "--by-module"], "modules.png"),
        (["roofline", str(model), "--hw", "rpi5", "--batch", "2"], "roof.svg"),
        (["batch", str(model), "--hw", "a100", "--batches", "1,8"], "batch.svg"),
    ]:
        result = invoke("plot", *args, "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).stat().st_size > 1000
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("model,accuracy\nnet,71.5\nwide,74.0\n", encoding="utf-8")
    wide = tmp_path / "wide.onnx"
    onnx.save(exported_like(channels=16), wide)
    result = invoke(
        "plot",
        "pareto",
        str(model),
        str(wide),
        "--hw",
        "a100",
        "--batch",
        "1",
        "--metrics",
        str(metrics),
        "-o",
        str(tmp_path / "pareto.svg"),
    )
    assert result.exit_code == 0, result.output
    texts = _texts((tmp_path / "pareto.svg").read_text())
    assert {"net", "wide", "accuracy (higher is better)"} <= set(texts)
    missing = invoke(
        "plot",
        "pareto",
        str(model),
        "--hw",
        "a100",
        "--batch",
        "1",
        "--metrics",
        str(tmp_path / "no.csv"),
        "-o",
        str(tmp_path / "p.svg"),
    )
    assert missing.exit_code == 2 and "cannot read --metrics" in missing.output
    fixed = tmp_path / "fixed.onnx"
    onnx.save(exported_like(batch=1), fixed)
    static = invoke(
        "plot", "batch", str(fixed), "--hw", "a100", "--batches", "1,8", "-o", str(tmp_path / "b.svg")
    )
    # A fixed-batch export is re-bound to each batch (the loader re-batches it), so its curve has both points.
    assert static.exit_code == 0, static.output
    assert (tmp_path / "b.svg").stat().st_size > 1000
