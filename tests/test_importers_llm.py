"""The benchlab and Wilkins importers on tiny synthetic files: conversions, aggregation, what is dropped."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from estimator.data.importers import IMPORTERS, TABLE_KINDS
from estimator.data.importers.benchlab import J_PER_KWH, import_benchlab
from estimator.data.importers.wilkins import import_wilkins
from estimator.data.measurements import check_frame
from estimator.errors import DataError, InputFileError

REPO = Path(__file__).resolve().parents[1]


def test_registered_as_validation_sources():
    assert IMPORTERS["benchlab"] is import_benchlab and TABLE_KINDS["benchlab"] == "validation"
    assert IMPORTERS["wilkins"] is import_wilkins and TABLE_KINDS["wilkins"] == "validation"


def test_benchlab_kwh_to_joules_two_phases(tmp_path):
    raw = pd.DataFrame(
        {
            "prompt": ["a,\nb", "c", "d"],
            "response": ["x", "y", "z"],
            "prompt_tokens": [900, 1200, 700],
            "response_tokens": [40, 55, 30],
            "duration_prefill": [0.3, 0.4, 0.2],
            "duration_decode": [1.0, 1.3, 0.7],
            "energy_prefill_gpu": [1e-4, 2e-4, float("nan")],
            "energy_gpu_decode": [3e-4, 0.0, 3e-4],
        }
    )
    raw.to_csv(tmp_path / "ultrachat_energy_measurements.csv", index=False)
    frame = import_benchlab(tmp_path)
    # decode of row 1 (0 - prefill) and both phases of row 2 (no prefill to subtract) are dropped
    assert len(frame) == 3
    assert frame.attrs["import_log"]["dropped: no llm-decode energy"] == 2
    prefill = frame[frame["task"] == "llm-prefill"].set_index("submission")
    assert prefill.loc["ultrachat:1", "joules_per_sample"] == pytest.approx(2e-4 * J_PER_KWH)
    assert prefill.loc["ultrachat:1", "prompt_tokens"] == 1200
    assert prefill.loc["ultrachat:1", "counter_after_s"] == 0.5
    # the recorded decode window holds the whole generate call: the prefill window is subtracted
    decode = frame[frame["task"] == "llm-decode"].set_index("submission")
    assert decode.loc["ultrachat:0", "joules_per_sample"] == pytest.approx((3e-4 - 1e-4) * J_PER_KWH)
    assert decode.loc["ultrachat:0", "recorded_joules"] == pytest.approx(3e-4 * J_PER_KWH)
    assert decode.loc["ultrachat:0", "counter_after_s"] == 0.0
    assert set(frame["repeats"]) == {1}
    assert set(frame["boundary"]) == {"gpu-board-nvml"}
    assert not check_frame(frame, table="validation")
    with pytest.raises(InputFileError):
        import_benchlab(tmp_path / "missing")
    raw.drop(columns=["energy_gpu_decode"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError):
        import_benchlab(tmp_path / "bad.csv")


def _wilkins_tree(root: Path) -> None:
    base = {
        "Runtime (s)": [9.0, 2.0, 3.0, 4.0, 1.0],
        "GPU Energy (J)": [99.0, 200.0, 300.0, 400.0, 50.0],
        "Number of Input Tokens": [38, 38, 38, 38, 38],
        "Total Number of Tokens": [300, 294, 290, 280, 300],
        "Iteration": [0, 1, 2, 3, 1],
        "Model": ["Llama-2 (7B)"] * 4 + ["Falcon (7B)"],
        "Number of GPUs": [1, 1, 1, 1, 1],
        "Batch Size": [32] * 5,
        "System": ["Palmetto Intel+A100"] * 4 + ["M1-Pro"],
        "Phase": [f"start-inference-256-{i}" for i in (0, 1, 2, 3, 1)],
    }
    for rel, limit in [
        ("plots/input-test/all-input-stats.csv", "Output Token Limit"),
        ("plots/output-test/all-output-stats.csv", "Number of Output Tokens"),
        ("plots/parameter-scale-input-test/all-input-scale-stats.csv", "Number of Output Tokens"),
        ("plots/parameter-scale-output-test/all-output-scale-stats.csv", "Number of Output Tokens"),
    ]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = dict(base) if rel.split("/")[1] == "output-test" else {k: v[:0] for k, v in base.items()}
        pd.DataFrame(rows | {limit: [256] * len(rows["Model"])}).to_csv(path, index=False)


def test_wilkins_aggregates_iterations_and_drops_warm_up(tmp_path):
    _wilkins_tree(tmp_path)
    frame = import_wilkins(tmp_path)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["joules_per_sample"] == pytest.approx(300.0)  # mean of 200, 300, 400 (iteration 0 dropped)
    assert row["repeats"] == 3 and row["spread_rel"] == pytest.approx(200 / 300)
    # generated = total - prompt, clamped to [0.9, 1] x 256: 256, 252, 242 -> mean 250
    assert row["output_tokens"] == pytest.approx(250.0)
    assert row["hardware"] == "a100-pcie" and row["model_ref"] == "zoo:llama-2-7b;cache=0;dtype=bfloat16"
    log = frame.attrs["import_log"]
    assert log["dropped: iteration 0 (warm-up)"] == 1 and log["dropped: no profile for M1-Pro"] == 1
    assert not check_frame(frame, table="validation")


@pytest.mark.parametrize("source", ["benchlab", "wilkins"])
def test_committed_tables_pass_the_schema(source):
    from estimator.data.measurements import read_measurements

    frame = read_measurements(REPO / "data" / f"validation_{source}.csv.gz", table="validation")
    assert len(frame) > 100 and set(frame["source"]) == {source}
