"""Many estimates at once: the same answers as one at a time, whatever the backend and order; `estimate compare`."""

from __future__ import annotations

import csv
import io
import json
import pickle

import joblib
import onnx
import onnx.parser
import pytest

from estimator.api import Estimator
from estimator.cli import run
from estimator.cli.compare import TABLE_WIDTH, expand_models
from estimator.errors import InputFileError, InvalidDimensionError
from estimator.many import ROW_COLUMNS, estimate_grid, summary_row

# Two small networks whose batch dimension N is symbolic, so that --batch binds it.
MLP = """
<ir_version: 8, opset_import: ["" : 17]>
mlp (float[N, 256] x, float[256, 512] w1, float[512, 10] w2) => (float[N, 10] y) {
    h = MatMul(x, w1)
    r = Relu(h)
    y = MatMul(r, w2)
}
"""
CONV = """
<ir_version: 8, opset_import: ["" : 17]>
conv (float[N, 3, 32, 32] x, float[16, 3, 3, 3] w) => (float[N, 16, 32, 32] y) {
    c = Conv <pads = [1, 1, 1, 1]> (x, w)
    y = Relu(c)
}
"""


def _models() -> dict[str, onnx.ModelProto]:
    return {"mlp": onnx.parser.parse_model(MLP), "conv": onnx.parser.parse_model(CONV)}


@pytest.fixture
def model_dir(tmp_path):
    for name, model in _models().items():
        onnx.save(model, tmp_path / f"{name}.onnx")
    return tmp_path


def test_estimate_many_equals_one_at_a_time():
    est = Estimator("rpi5", runtime="onnxruntime")
    models = _models()
    many = est.estimate_many(models, batches=[1, 4], dtypes=[None, "fp16"])
    one = [est.estimate(m, batch=b, dtype=d) for m in models.values() for b in (1, 4) for d in (None, "fp16")]
    assert [e.to_json(top=100) for e in many] == [e.to_json(top=100) for e in one]
    assert [e.batch for e in many] == [1, 1, 4, 4, 1, 1, 4, 4]
    # batch 4 runs four samples: more joules per inference than batch 1, computed by the same path
    assert many[2].joules > many[0].joules


def test_grid_rows_follow_the_argument_order_and_match_estimates():
    models = _models()
    rows = estimate_grid(models, ["a100", "rpi5"], batches=[2], dtypes=["fp32", "fp16"])
    assert [(r["model"], r["hardware"], r["dtype"]) for r in rows] == [
        (m, h, d) for m in models for h in ("a100", "rpi5") for d in ("float32", "float16")
    ]
    assert all(tuple(r) == ROW_COLUMNS for r in rows)
    a100 = Estimator("a100")
    expected = summary_row(a100.estimate(models["conv"], batch=2, dtype="fp16"), "conv", 2)
    assert rows[5] == expected
    assert expected["inferences_per_joule"] == pytest.approx(2 / expected["joules_per_inference"])


def test_results_do_not_depend_on_order_or_backend():
    models = _models()
    grid = {"hardware": ["a100", "rpi5"], "batches": [1, 8], "dtypes": ["fp32", "fp16"]}
    serial = estimate_grid(models, **grid)
    backwards = estimate_grid(dict(reversed(models.items())), **grid)
    key = lambda r: (r["model"], r["hardware"], r["batch"], r["dtype"])  # noqa: E731
    assert sorted(backwards, key=key) == sorted(serial, key=key)
    with joblib.parallel_config(backend="threading", n_jobs=2):
        assert estimate_grid(models, **grid) == serial


def test_dask_backend_on_a_local_cluster_gives_the_same_rows():
    distributed = pytest.importorskip("dask.distributed")
    models = _models()
    grid = {"hardware": ["a100", "rpi5"], "batches": [1, 8], "dtypes": ["fp32", "fp16"]}
    serial = estimate_grid(models, **grid)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        joblib.parallel_config(backend="dask"),
    ):
        assert estimate_grid(models, n_jobs=-1, **grid) == serial


def test_a_used_estimator_pickles_for_worker_processes():
    est = Estimator("xeon-gold-5120", runtime="pytorch-cpu")  # a kernel-level trained model
    model = _models()["conv"]
    first = est.estimate(model, batch=2)
    copy = pickle.loads(pickle.dumps(est))
    assert copy.estimate(model, batch=2).to_json(top=100) == first.to_json(top=100)


def test_bad_batch_is_one_clear_error():
    with pytest.raises(InvalidDimensionError, match="positive integers"):
        Estimator("a100").estimate_many(_models(), batches=[0])


def test_expand_models_takes_files_globs_and_folders(model_dir):
    mlp, conv = model_dir / "mlp.onnx", model_dir / "conv.onnx"
    assert expand_models([str(mlp), str(model_dir / "*.onnx"), str(model_dir)]) == [mlp, conv]
    with pytest.raises(InputFileError, match="matches no file"):
        expand_models([str(model_dir / "*.nothing")])
    with pytest.raises(InputFileError, match="no such file"):
        expand_models([str(model_dir / "absent.onnx")])


def test_compare_table_fits_80_columns_and_sorts(model_dir, capsys):
    args = ["compare", str(model_dir), "--hw", "a100,rpi5", "--batch", "1,8", "--dtype", "fp32,fp16"]
    assert run([*args, "--sort", "joules_per_sample"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= TABLE_WIDTH
    body = lines[2 : 2 + 16]
    assert len(body) == 2 * 2 * 2 * 2 and all(("mlp.onnx" in b or "conv.onnx" in b) for b in body)
    assert "boundary: a100 gpu-board-nvml" in out
    assert run([*args, "--sort", "inferences_per_joule", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    ipj = [float(r["inferences_per_joule"]) for r in rows]
    assert len(rows) == 16 and ipj == sorted(ipj, reverse=True)
    expected = estimate_grid(
        {str(model_dir / "conv.onnx"): str(model_dir / "conv.onnx")}, ["rpi5"], batches=[8], dtypes=["fp16"]
    )[0]
    got = next(
        r
        for r in rows
        if r["model"].endswith("conv.onnx") and r["hardware"] == "rpi5" and r["batch"] == "8"
        if r["dtype"] == "float16"
    )
    assert float(got["joules_per_sample"]) == expected["joules_per_sample"]


def test_compare_json_markdown_and_output_file(model_dir, tmp_path, capsys):
    base = ["compare", str(model_dir / "mlp.onnx"), "--hw", "a100", "--batch", "4"]
    assert run([*base, "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["schema"] == "estimator.compare/1" and len(payload["rows"]) == 1
    assert payload["rows"][0]["batch"] == 4
    assert run([*base, "--format", "markdown"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0].startswith("| model | hardware |") and len(md) == 3
    out = tmp_path / "sweep.csv"
    assert run([*base, "--format", "csv", "-o", str(out)]) == 0
    assert out.read_text().splitlines()[0] == ",".join(ROW_COLUMNS)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--batch", "0"], "positive integer"),
        (["--dtype", "fp8"], "not one of"),
        (["--hw", "nope"], "unknown hardware profile"),
        (["--format", "parquet"], "-o FILE"),
        (["--n-jobs", "0"], "--n-jobs"),
    ],
)
def test_compare_bad_input_one_line_exit_2(model_dir, capsys, extra, fragment):
    args = ["compare", str(model_dir / "mlp.onnx"), "--hw", "a100", *extra]
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
