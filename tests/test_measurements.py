"""The measurement schema: validation by line and column, atomic writes, round trips."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from estimator.data.measurements import (
    BOUNDARIES,
    SCHEMA,
    check_frame,
    check_measurements,
    read_measurements,
    schema_markdown,
    write_measurements,
)
from estimator.errors import DataError, InputFileError

HEADER = (
    "model_ref,group,family,task,batch,dtype,hardware,runtime,boundary,joules_per_inference,"
    "idle_subtracted,repeats,spread_rel,source,citation,notes"
)
GOOD = (
    "getzner:linear;in=8;out=4,g1,linear,random-layer,2,float32,xeon-gold-5120,pytorch-cpu,"
    "cpu-package-rapl,0.5,false,3,0.01,getzner,paper,"
)


def write_text(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_a_valid_file_with_types(tmp_path: Path) -> None:
    path = write_text(tmp_path / "m.csv", [HEADER, GOOD, GOOD.replace(",2,", ",5,")])
    frame = read_measurements(path)
    assert list(frame["batch"]) == [2, 5]
    assert str(frame["batch"].dtype) == "Int64"
    assert frame["joules_per_inference"].tolist() == [0.5, 0.5]
    assert frame["idle_subtracted"].tolist() == [False, False]
    assert list(frame.columns[:4]) == ["model_ref", "group", "family", "task"]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("joules_per_inference", "abc", "is not a number"),
        ("joules_per_inference", "-1.5", "greater than zero"),
        ("joules_per_inference", "0", "greater than zero"),
        ("joules_per_inference", "", "required value is missing"),
        ("boundary", "wall", "is not one of"),
        ("batch", "0", "at least 1"),
        ("batch", "2.5", "whole number"),
        ("dtype", "float64", "is not one of"),
        ("idle_subtracted", "maybe", "boolean"),
        ("model_ref", "", "required value is missing"),
    ],
)
def test_malformed_value_is_reported_by_line_and_column(
    tmp_path: Path, column: str, value: str, message: str
) -> None:
    names = HEADER.split(",")
    bad = GOOD.split(",")
    # the model_ref contains no comma, so field positions match the header
    bad[names.index(column)] = value
    path = write_text(tmp_path / "m.csv", [HEADER, GOOD, GOOD, ",".join(bad), GOOD])
    with pytest.raises(DataError) as info:
        read_measurements(path)
    text = str(info.value)
    assert "line 4" in text
    assert f"column {column}" in text
    assert message in text


def test_all_errors_are_collected(tmp_path: Path) -> None:
    rows = [
        HEADER,
        GOOD.replace(",0.5,", ",x,"),
        GOOD,
        GOOD.replace(",2,", ",0,").replace("cpu-package-rapl", "?"),
    ]
    path = write_text(tmp_path / "m.csv", rows)
    issues = check_measurements(path)
    found = {(i.line, i.column) for i in issues}
    assert found == {(2, "joules_per_inference"), (4, "batch"), (4, "boundary")}
    with pytest.raises(DataError) as info:
        read_measurements(path, all_errors=True)
    assert "3 malformed values" in str(info.value)
    assert "line 4, column boundary" in str(info.value)


def test_quoted_newline_keeps_line_numbers_of_the_file(tmp_path: Path) -> None:
    with_newline = GOOD[:-1] + ',"two\nlines"'
    path = write_text(tmp_path / "m.csv", [HEADER, with_newline, GOOD.replace(",3,", ",0,")])
    issues = check_measurements(path)
    # the first data row spans lines 2-3, so the bad row starts on line 4
    assert [(i.line, i.column) for i in issues] == [(4, "repeats")]


def test_missing_required_column_and_ragged_row(tmp_path: Path) -> None:
    header = HEADER.replace("boundary,", "")
    row = GOOD.replace("cpu-package-rapl,", "")
    path = write_text(tmp_path / "m.csv", [header, row, row + ",extra"])
    lines = {(i.line, i.column) for i in check_measurements(path)}
    assert (1, "boundary") in lines
    assert (3, "*") in lines


def test_validation_table_relaxes_batch_but_needs_per_sample_energy(tmp_path: Path) -> None:
    header = HEADER + ",joules_per_sample"
    row = GOOD.replace(",2,", ",,").replace(",0.5,", ",,") + ",0.25"
    path = write_text(tmp_path / "v.csv", [header, row, row[: -len("0.25")]])
    with pytest.raises(DataError, match="required value is missing"):
        read_measurements(path)
    issues = check_measurements(path, table="validation")
    assert [(i.line, i.column) for i in issues] == [(3, "joules_per_sample")]


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError):
        read_measurements(tmp_path / "absent.csv")


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model_ref": ["torchvision:alexnet", "getzner:linear;in=4096;out=1000"],
            "group": ["alexnet", "getzner:linear;in=4096;out=1000"],
            "family": ["AlexNet", "linear"],
            "task": ["imagenet", "random-layer"],
            "batch": [16, 3],
            "dtype": ["float32", "float32"],
            "hardware": ["xeon-gold-5120", "xeon-gold-5120"],
            "runtime": ["pytorch-cpu", "pytorch-cpu"],
            "boundary": ["cpu-package-rapl", "cpu-package-rapl"],
            "joules_per_inference": [22.6875, 0.0123456],
            "latency_s": [0.3, np.nan],
            "idle_subtracted": [False, False],
            "repeats": [3, 3],
            "source": ["getzner", "getzner"],
            "citation": ["c", "c"],
            "layer_idx": pd.array([0, pd.NA], dtype="Int64"),
            "my_extra": ["a", "b"],
        }
    )


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    frame = sample_frame()
    path = write_measurements(frame, tmp_path / name)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
        with gzip.open(path, "rt") as handle:
            assert handle.readline().startswith("model_ref,group,")
    back = read_measurements(path)
    assert back["joules_per_inference"].tolist() == frame["joules_per_inference"].tolist()
    assert back["batch"].tolist() == [16, 3]
    assert back["layer_idx"].isna().tolist() == [False, True]
    assert back["my_extra"].tolist() == ["a", "b"]
    assert np.isnan(back["latency_s"].iloc[1])
    # the same table gives the same bytes (gzip without a timestamp)
    again = write_measurements(back, tmp_path / ("again_" + name))
    assert again.read_bytes() == path.read_bytes()


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_measurements(sample_frame(), tmp_path / "t.csv.gz")
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    bigger = pd.concat([sample_frame()] * 3, ignore_index=True)
    with pytest.raises(OSError, match="disk full"):
        write_measurements(bigger, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv.gz"]


def test_invalid_frame_is_not_written(tmp_path: Path) -> None:
    frame = sample_frame()
    frame.loc[1, "joules_per_inference"] = -2.0
    with pytest.raises(DataError, match="line 3, column joules_per_inference"):
        write_measurements(frame, tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()
    assert [(i.line, i.column) for i in check_frame(frame)] == [(3, "joules_per_inference")]


def test_schema_is_documented_in_data_readme() -> None:
    readme = Path(__file__).parents[1] / "data" / "README.md"
    text = readme.read_text(encoding="utf-8")
    for col in SCHEMA:
        assert f"`{col.name}`" in text
    for boundary in BOUNDARIES:
        assert boundary in text
    assert schema_markdown() in text
