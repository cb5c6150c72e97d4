"""Bad input answered in one line, never a traceback (issue 11): each cause fixed at its mechanism, and the
model store survives a kill at every write step of `train`."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import onnx
import onnx.parser
import pytest

from estimator.api import Estimator
from estimator.cli import run
from estimator.errors import (
    DataError,
    GraphStructureError,
    InputFileError,
    InvalidDimensionError,
    ModelFormatError,
    ProfileError,
)
from estimator.graph.load import load_graph

RELU = """<ir_version: 8, opset_import: ["" : 17]> g (float[N,4] x) => (float[N,4] y) { y = Relu(x) }"""


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("estimate: error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--hw", "a100", "--batch", "abc"], "--batch"),
        (["--hw", "a100", "--dtype", "weird"], "--dtype"),
        (["--hw", "a100", "--bogus"], "--bogus"),
    ],
)
def test_usage_errors_are_one_line_exit_2(tmp_path, capsys, args, names):
    model = tmp_path / "m.onnx"
    onnx.save_model(onnx.parser.parse_model(RELU), model)
    assert run([str(model), *args]) == 2
    assert names in _one_error_line(capsys)


def test_missing_argument_is_one_line_and_help_is_unchanged(capsys):
    assert run(["energy"]) == 2
    assert "Missing argument" in _one_error_line(capsys)
    assert run(["--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_fifo_device_long_and_newline_paths_are_refused_without_opening(tmp_path, capsys):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)  # opening it for reading would block forever
    for path, words in [
        (str(fifo), "FIFO"),
        ("/dev/zero", "device"),
        (str(tmp_path / ("x" * 5000)), "too long"),
        (str(tmp_path / "a\nb.onnx"), "line break"),
    ]:
        assert run([path, "--hw", "a100"]) == 2
        assert words in _one_error_line(capsys)
        with pytest.raises(InputFileError, match=words):
            load_graph(path)
    assert run(["train", str(fifo), "--hw", "a100"]) == 2
    assert "FIFO" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch": "8"},
        {"batch": True},
        {"batch": 2.5},
        {"shapes": {"x": "1x4"}},
        {"shapes": {"x": None}},
        {"shapes": {"N": (1.5,)}},  # never truncated to 1
        {"shapes": [1, 4]},
    ],
)
def test_wrongly_typed_arguments_are_refused(kwargs):
    with pytest.raises(InvalidDimensionError):
        load_graph(onnx.parser.parse_model(RELU), **kwargs)


def test_non_utf8_names_are_a_format_error():
    data = onnx.parser.parse_model(RELU).SerializeToString().replace(b"Relu", b"R\xfflu")
    with pytest.raises(ModelFormatError, match="UTF-8"):
        load_graph(data, batch=1)


def test_stored_tensor_data_must_fill_its_dims():
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]> g (float[1,4] x) => (float[1,4] y)
        { c = Constant<value = float[4] {1,2,3,4}>() y = Add(x, c) }"""
    )
    model.graph.node[0].attribute[0].t.dims[:] = [1 << 40]
    with pytest.raises(ModelFormatError, match="declares dims"):
        load_graph(model)
    weight = onnx.numpy_helper.from_array(np.ones(4, np.float32), "c")
    weight.dims[:] = [1000]
    del model.graph.node[0]
    model.graph.initializer.append(weight)
    with pytest.raises(ModelFormatError, match=r"1,000 float32"):
        load_graph(model)
    wrong_field = onnx.TensorProto(
        name="c", data_type=onnx.TensorProto.INT64, dims=[4], float_data=[1, 2, 3, 4]
    )
    model.graph.initializer[0].CopyFrom(wrong_field)  # found by the fuzz suite: int64 values in float_data
    with pytest.raises(ModelFormatError, match="float_data"):
        load_graph(model)
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.ones(4, np.float32), "c"))
    model.graph.initializer[0].data_type = onnx.TensorProto.UNDEFINED
    with pytest.raises(ModelFormatError, match="undefined"):
        load_graph(model)


@pytest.mark.parametrize("version", [-1, 0, 99, 2**31])
def test_opsets_that_do_not_exist_are_refused(version):
    model = onnx.parser.parse_model(RELU)
    model.opset_import[0].version = version
    with pytest.raises(ModelFormatError, match="opset"):
        load_graph(model, batch=1)


def test_mac_counts_beyond_int64_are_refused_not_wrapped():
    # Two LSTMs of 2^62 MACs each (every tensor within the 2^40-element limit): the total is 2^63, which
    # int64 cannot hold; numpy would wrap the sum to a negative number.
    seq, hidden, features = 1 << 21, 1 << 19, 1 << 19
    model = onnx.parser.parse_model(
        f"""<ir_version: 8, opset_import: ["" : 17]>
        g (float[{seq},1,{features}] x, float[1,{4 * hidden},{features}] w, float[1,{4 * hidden},{hidden}] r)
          => (float[{seq},1,1,{hidden}] y, float[{seq},1,1,{hidden}] z)
        {{ y = LSTM<hidden_size={hidden}>(x, w, r) z = LSTM<hidden_size={hidden}>(x, w, r) }}"""
    )
    assert 2 * seq * 4 * hidden * (features + hidden) >= 1 << 63  # the closed-form MAC total overflows int64
    with pytest.raises(InvalidDimensionError, match="int64"):
        Estimator("a100").estimate(model)


def test_empty_graph_is_not_billed():
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]> g (float[1,4] x) => (float[1,4] x) { }"""
    )
    with pytest.raises(GraphStructureError, match="no nodes"):
        Estimator("a100").estimate(model)


def test_extreme_profile_values_name_the_value_not_infinity(tmp_path):
    from importlib import resources

    text = (resources.files("estimator.energy") / "profiles" / "a100.toml").read_text()
    lines = [
        line.replace(line.split("=")[1].split(",")[0].strip().lstrip("{").split("=")[-1], "1e-300", 1)
        if line.startswith("dram_bandwidth_bytes_per_s")
        else line
        for line in text.splitlines()
    ]
    path = tmp_path / "a100.toml"
    path.write_text("\n".join(lines) + "\n")
    try:
        result = Estimator(path).estimate(onnx.parser.parse_model(RELU), batch=1)
    except ProfileError as exc:
        assert "dram_bandwidth" in str(exc) or "outside" in str(exc)
    else:
        assert np.isfinite([result.joules, result.seconds, result.avg_power_w]).all()


def test_deeply_nested_profile_is_one_error(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ProfileError, match="too deeply"):
        Estimator(path)


def test_user_profile_named_like_a_shipped_one_gets_no_trained_model(tmp_path):
    from importlib import resources

    shipped = (resources.files("estimator.energy") / "profiles" / "xeon-gold-5120.toml").read_text()
    same = tmp_path / "same.toml"
    same.write_text(shipped)
    edited = tmp_path / "edited.toml"
    edited.write_text(shipped.replace("notes =", "# edited\nnotes =", 1))
    assert Estimator("xeon-gold-5120").model is not None  # the shipped trained model
    assert Estimator(same).model is not None  # byte-identical file: same profile, same model
    assert Estimator(edited).model is None


def test_calibrated_power_never_exceeds_tdp_and_shares_sum_to_one():
    path = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/light_shufflenet.onnx")
    est = Estimator("xeon-gold-5120")
    result = est.estimate(path)
    assert result.avg_power_w <= est.profile.tdp_w * (1 + 1e-9)
    shares = [layer["share"] for layer in result.to_json(top=10_000)["top_layers"]]
    assert abs(sum(shares) - 1) < 1e-6 and max(shares) <= 1


def test_json_keeps_the_model_object(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save_model(onnx.parser.parse_model(RELU), model)
    assert run([str(model), "--hw", "a100", "--batch", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_path"] == str(model) and out["model"]["not_costed"] == {}
    assert out["model"]["nodes"] == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("batch", "1e99"),
        ("batch", str(2**63)),
        ("joules_per_inference", "5e-324"),
        ("joules_per_inference", "1e308"),
        ("threads", "0"),
        ("threads", "-2"),
        ("measured_at", "2023-13-45"),
    ],
)
def test_absurd_training_values_are_refused(tmp_path, column, value):
    from estimator.data.measurements import read_measurements

    text = (
        "model_ref,group,family,task,batch,dtype,hardware,runtime,boundary,joules_per_inference,"
        "idle_subtracted,repeats,source,citation,threads,measured_at\n"
        "getzner:conv2d;in=8;out=8;kernel=3;stride=1;padding=1;image=8,g,conv2d,t,1,float32,xeon-gold-5120,"
        "pytorch-cpu,cpu-package-rapl,0.01,false,3,s,c,4,2023-01-02\n"
    )
    header, row = text.splitlines()
    cells = dict(zip(header.split(","), row.split(","), strict=True)) | {column: value}
    path = tmp_path / "t.csv"
    path.write_text(",".join(cells) + "\n" + ",".join(cells.values()) + "\n")
    with pytest.raises(DataError, match=column):
        read_measurements(path)
    path.write_text(header + ",hardware\n" + row + ",x\n")
    with pytest.raises(DataError, match="twice"):
        read_measurements(path)


def test_train_refuses_an_unwritable_models_dir_before_training(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("not even read\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run(["train", str(table), "--hw", "xeon-gold-5120", "--models-dir", str(blocker / "m")]) == 2
    assert "not a folder" in _one_error_line(capsys)


def _tiny_model(seed: int):
    from estimator.learn.features import FEATURE_NAMES
    from estimator.learn.regressor import ResidualRegressor, TrainedModel, group_hashes

    rng = np.random.default_rng(seed)
    reg = ResidualRegressor(n_estimators=3, max_depth=2).fit(
        rng.normal(size=(20, len(FEATURE_NAMES))), rng.normal(size=20)
    )
    sidecar = {
        "schema": "estimator.trained-model/1",
        "hardware": "xeon-gold-5120",
        "runtime": "pytorch-cpu",
        "feature_names": list(FEATURE_NAMES),
        "hyperparameters": {"n_estimators": 3, "max_depth": 2},
        "trained_group_hashes": group_hashes([f"g{seed}"]),
        "seed": seed,
    }
    return TrainedModel(reg, sidecar)


#: The writer that is killed: a fresh interpreter (forking the test process itself is unsafe once xgboost's or
#: dask's threads run in it), which stores a model over the old one and SIGKILLs itself at file-system step N.
_KILLED_WRITER = """
import json, os, signal, sys
from pathlib import Path
from estimator.learn import regressor
folder, raw_path, sidecar_path, kill_at = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
raw = open(raw_path, "rb").read()
sidecar = json.loads(open(sidecar_path, encoding="utf-8").read())

class _Saved:  # what save_model reads of a fitted regressor: its booster's raw bytes
    booster_ = type("Booster", (), {"save_raw": staticmethod(lambda raw_format: raw)})()

steps = [0]
real = {"fsync": os.fsync, "replace": os.replace, "unlink": os.unlink}

def step(name):
    def wrapped(*args, **kwargs):
        if steps[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        steps[0] += 1
        return real[name](*args, **kwargs)
    return wrapped

os.fsync, os.replace, os.unlink = step("fsync"), step("replace"), step("unlink")
regressor.save_model(regressor.TrainedModel(_Saved(), sidecar), folder)
"""


@pytest.mark.parametrize("kill_at", range(7))
def test_kill_9_at_any_write_step_leaves_a_working_store(tmp_path, kill_at):
    """A writer process stores a new model over an old one and is SIGKILLed at its n-th file-system step
    (fsync, rename, unlink); the store then loads, and holds either the old or the new model, whole."""
    import json
    import subprocess
    import sys

    from estimator.learn import regressor
    from estimator.learn.features import FEATURE_NAMES

    old, new = _tiny_model(1), _tiny_model(2)
    for m in (old, new):
        m.sidecar["schema"] = regressor.SIDECAR_SCHEMA
    store = tmp_path / "store"
    store.mkdir()
    regressor.save_model(old, store)
    (tmp_path / "new.ubj").write_bytes(bytes(new.regressor.booster_.save_raw(raw_format="ubj")))
    (tmp_path / "new.json").write_text(json.dumps(new.sidecar), encoding="utf-8")
    args = [str(store), str(tmp_path / "new.ubj"), str(tmp_path / "new.json"), str(kill_at)]
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    loaded = regressor.load_model(store, "xeon-gold-5120", "pytorch-cpu", FEATURE_NAMES)
    assert loaded is not None and loaded.sidecar["seed"] in (1, 2)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = b""
    while True:
        low, value = value & 0x7F, value >> 7
        out += bytes([low | (0x80 if value else 0)])
        if not value:
            return out


def test_deeply_nested_subgraphs_are_named_as_such_not_as_corruption():
    graph = b""
    for _ in range(150):  # If inside If, 150 deep, written as raw protobuf (onnx.helper refuses to build it)
        attribute = _field(1, b"then_branch") + _field(6, graph) + _varint(20 << 3) + _varint(5)
        node = _field(1, b"c") + _field(2, b"y") + _field(4, b"If") + _field(5, attribute)
        graph = _field(1, node)
    model = _varint(1 << 3) + _varint(8) + _field(7, graph) + _field(8, _varint(2 << 3) + _varint(17))
    with pytest.raises(ModelFormatError, match="nests subgraphs deeper"):
        load_graph(model)


def test_measure_window_nan_names_the_window(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save_model(onnx.parser.parse_model(RELU), model)
    assert run(["measure", str(model), "--window-s", "nan"]) == 2
    assert "--window-s" in _one_error_line(capsys)


def test_rows_left_out_are_counted_aloud():
    import pandas as pd

    from estimator.learn.model_store import _say_left_out

    said: list[str] = []
    _say_left_out(said.append, pd.Series(["rpi5", "rpi5 ", "RPI5", "rpi5", "a100"]), "rpi5", "hardware")
    assert len(said) == 1 and said[0].startswith("left out 3 rows of another hardware than 'rpi5' (")
    assert all(part in said[0] for part in ("'rpi5 ' x1", "'RPI5' x1", "'a100' x1"))


def test_data_import_refuses_a_fifo(tmp_path, capsys):
    fifo = tmp_path / "raw.csv"
    os.mkfifo(fifo)
    assert run(["data", "import", "getzner", str(fifo), "-o", str(tmp_path / "out.csv")]) == 2
    assert "FIFO" in _one_error_line(capsys)
