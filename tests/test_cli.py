"""The command line: tables, JSON, CSV, and one clear line with exit code 2 on bad input."""

from __future__ import annotations

import csv
import io
import json

import pytest

from estimator.cli import parse_shapes, run


def test_layers_table_json_csv(light_dir, capsys):
    model = str(light_dir / "light_resnet50.onnx")
    assert run(["layers", model]) == 0
    out = capsys.readouterr().out
    assert "25,557,032" in out and "4,089,184,256" in out
    assert run(["layers", model, "--by", "kernel", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["totals"]["kernel_launches"] == 57
    assert payload["totals"]["parameters"] == 25_557_032
    assert len(payload["rows"]) == 57
    assert run(["layers", model, "--by", "op", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    conv = next(r for r in rows if r["op"] == "Conv")
    assert int(conv["macs"]) == 4_089_184_256 - 2_048_000  # all but the classifier Gemm


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["layers", "/definitely/not/here.onnx"], "no such file"),
        (["layers", "{tmp}"], "directory"),
        (["layers", "{tmp}/junk.onnx"], "not a readable ONNX"),
        (["layers", "{light}", "--shape", "oops"], "NAME=DIMS"),
        (["layers", "{light}", "--batch", "0"], "positive"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, light_dir, capsys, args, fragment):
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01garbage")
    args = [a.format(tmp=tmp_path, light=light_dir / "light_squeezenet.onnx") for a in args]
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_parse_shapes():
    assert parse_shapes(["x=1x3x224x224", "seq=128"]) == {"x": (1, 3, 224, 224), "seq": (128,)}


def test_energy_command_table_and_json(light_dir, capsys):
    model = str(light_dir / "light_squeezenet.onnx")
    assert run([model, "--hw", "a100"]) == 0  # shorthand for `estimate energy`
    out = capsys.readouterr().out
    # no measurements of an A100 forward pass: the cross-device GPU model answers, at the board boundary
    assert "per inference" in out and "cross-device" in out and "gpu-board-nvml" in out
    assert run(["energy", model, "--hw", "rpi5", "--runtime", "tflite", "--json", "--layers", "3"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["schema"] == "estimator.estimate/1"
    assert payload["joules_per_inference"] > 0 and payload["boundary"] == "soc-core-rail-dynamic"
    # The shipped rpi5/tflite model was trained on NAS-Bench-201 cells: SqueezeNet is outside its data.
    assert payload["calibrated"] is True and payload["extrapolated_features"]
    assert len(payload["top_layers"]) == 3
    assert payload["interval"]["low_joules"] < payload["interval"]["high_joules"]
    shares = sum(layer["share"] for layer in payload["top_layers"])
    assert 0 < shares <= 1.0 + 1e-9


def test_energy_bad_hardware_and_runtime(light_dir, capsys):
    model = str(light_dir / "light_squeezenet.onnx")
    assert run([model, "--hw", "no-such-gpu"]) == 2
    err = capsys.readouterr().err
    assert "a100" in err and len(err.strip().splitlines()) == 1
    assert run([model, "--hw", "a100", "--runtime", "tflite"]) == 2
    assert "pick a runtime" in capsys.readouterr().err


def test_hardware_list_and_show(capsys):
    assert run(["hardware", "list"]) == 0
    out = capsys.readouterr().out
    assert "h100" in out and "rpi5" in out and "xeon-gold-5120" in out
    assert run(["hardware", "show", "a100"]) == 0
    assert "dram_bandwidth_bytes_per_s" in capsys.readouterr().out


def test_measure_here_is_a_clear_error(light_dir, capsys):
    # This machine (and CI) has neither a readable energy counter nor, by default, onnxruntime: either way
    # the answer must be one line and exit code 2, never a made-up number.
    code = run(["measure", str(light_dir / "light_squeezenet.onnx"), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("estimate: error:") and len(err.splitlines()) == 1


def test_si_prefixes():
    from estimator.cli.format import si

    assert [si(4_089_184_256), si(57), si(0), si(0.0979, "J"), si(5.54e-6, "s"), si(2.5e-10, "s")] == [
        "4.09G",
        "57",
        "0",
        "97.9mJ",
        "5.54us",
        "250ps",
    ]


def test_data_import_command_matches_the_committed_table(tmp_path, capsys):
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).resolve().parents[1]
    raw = root.parent / "shared" / "datasets" / "dl_energy_estimator_getzner"
    if not raw.exists():
        pytest.skip("shared/datasets is not next to the repository")
    out = tmp_path / "getzner.csv.gz"
    assert run(["data", "import", "getzner", str(raw), "-o", str(out)]) == 0
    assert "wrote 7185 rows" in capsys.readouterr().out
    pd.testing.assert_frame_equal(
        pd.read_csv(out, low_memory=False), pd.read_csv(root / "data" / "getzner.csv.gz", low_memory=False)
    )
    assert run(["data", "import", "no-such-source", str(raw)]) == 2


def test_data_import_help_names_every_importer():
    import typing

    from estimator.cli.data import data_import
    from estimator.data.importers import IMPORTERS

    listed = typing.get_type_hints(data_import, include_extras=True)["source"].__metadata__[0].help
    assert sorted(name.strip() for name in listed.split("|")) == sorted(IMPORTERS)
