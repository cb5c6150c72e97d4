"""Power Hungry Processing rows: the importer's conversion on a hand-made run, the representative input size
of each row, and every single-pass checkpoint resolving to a committed graph that loads and costs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd
import pytest

from estimator.cost.nodes import count_costs
from estimator.data.importers.power_hungry import (
    DATASET_TOKENS,
    PHP_GRAPHS,
    PHP_NOT_BUILT,
    import_power_hungry,
    representative_tokens,
)
from estimator.data.measurements import check_frame, read_measurements
from estimator.learn.gpu_training import config_graph, config_key

REPO = Path(__file__).parents[1]
GRAPHS = REPO / "data" / "graphs"

BASE_HEADER = "task_name,run_id,duration,gpu_energy,gpu_power,gpu_count,timestamp\n"


def _write_runs(folder: Path, runs: list[tuple[str, str, str, float, float, float]]) -> None:
    """runs: (task_dataset, model, run id, load-phase summed W, query s, query summed kWh)."""
    complete = folder / "data" / "emissions" / "complete"
    complete.mkdir(parents=True)
    lines = [BASE_HEADER]
    by_task: dict[str, list[str]] = {}
    for task, model, run, load_w, seconds, kwh in runs:
        lines.append(f"load model,{run},20,0.0001,{load_w},8,2023-10-01T10:00:00\n")
        lines.append(f"query model,{run},{seconds},{kwh},500,8,2023-10-01T10:01:00\n")
        by_task.setdefault(task, []).append(f"{run},{model}\n")
    (folder / "base_all_tasks_combined.csv").write_text("".join(lines), encoding="utf-8")
    for task, rows in by_task.items():
        (complete / f"{task}.csv").write_text("run_id,project_name\n" + "".join(rows), encoding="utf-8")


def test_conversion_of_a_hand_made_run(tmp_path: Path) -> None:
    # One SST-2 run of a DistilBERT classifier: 8 boards at 480 W summed while loading (60 W each), 10 s of
    # querying logged 0.002 kWh = 7,200 J summed -> one board: 7,200 - 7 x 60 W x 10 s = 3,000 J per 1,000
    # queries. One COCO run of DETR: 400 W / 8 = 50 W idle, 50 s, 0.01 kWh = 36,000 J -> 36,000 - 17,500.
    _write_runs(
        tmp_path,
        [
            ("text_classif_sst2", "lvwerra/distilbert-imdb", "r1", 480.0, 10.0, 0.002),
            ("obj_detection_coco_resized", "facebook/detr-resnet-50", "r2", 400.0, 50.0, 0.01),
            ("summarization_cnn", "facebook/bart-large-cnn", "r3", 480.0, 10.0, 0.002),
        ],
    )
    out = import_power_hungry(tmp_path)
    assert check_frame(out) == []
    assert len(out) == 4  # two single-pass runs x two boundaries; the summariser goes to the other table
    one = out[out["boundary"] == "gpu-board-nvml"].set_index("group")
    summed = out[out["boundary"] == "gpu-boards-summed"].set_index("group")
    text, detr = "lvwerra/distilbert-imdb", "facebook/detr-resnet-50"
    assert one.loc[text, "joules_per_inference"] == pytest.approx(3.0)
    assert summed.loc[text, "joules_per_inference"] == pytest.approx(7.2)
    assert one.loc[detr, "joules_per_inference"] == pytest.approx((36_000 - 7 * 50 * 50) / 1000)
    assert one.loc[text, "latency_s"] == pytest.approx(0.01)
    # The graph and family of the checkpoint; SST-2's length: 19 words x 1.3 = 24.7 -> 25, + [CLS] [SEP] = 27.
    assert one.loc[text, "model_ref"] == "data/graphs/php-distilbert-base-uncased-cls.onnx"
    assert one.loc[text, "family"] == "distilbert"
    assert one.loc[text, "seq_len"] == 27
    assert "seq_len 27: assumed" in one.loc[text, "notes"]
    # An image model has no sequence; the resized COCO images make its input size exact.
    assert pd.isna(one.loc[detr, "seq_len"])
    assert "the run resized them" in one.loc[detr, "notes"]


def test_representative_tokens_in_closed_form() -> None:
    words, special, _ = DATASET_TOKENS["qa_squad"]
    assert representative_tokens("qa_squad", 512) == round(words * 1.3) + special
    # IMDB reviews (~301 tokens) are cut at BERTweet's 128 positions, not at the 512 of the others.
    assert representative_tokens("text_classif_imdb", 128) == 128
    assert representative_tokens("text_classif_imdb", 512) == round(230 * 1.3) + 2
    assert representative_tokens("image_class_imagenet", None) is None
    assert representative_tokens("fillmask_c4", None) is None


def _manifest() -> dict[str, dict[str, str]]:
    with (GRAPHS / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def test_every_single_pass_checkpoint_has_a_graph_or_a_reason() -> None:
    table = read_measurements(REPO / "data" / "power_hungry.csv.gz")
    manifest = _manifest()
    for model in sorted(set(table["group"])):
        if model in PHP_NOT_BUILT:
            assert model not in PHP_GRAPHS
            continue
        assert model in PHP_GRAPHS, f"{model}: neither a graph nor a reason"
        name = PHP_GRAPHS[model][0]
        assert name in manifest, f"{model}: {name} is not in the manifest"
        assert model in manifest[name]["measured_as"], f"{name} does not say it stands for {model}"
        refs = set(table.loc[table["group"] == model, "model_ref"])
        assert refs == {f"data/graphs/{name}.onnx"}
    # Every text row with a graph carries its sequence length; image rows and rows without a graph none.
    text = table["task"].str.startswith(("fillmask", "qa_", "text_classif", "token_classif"))
    built = ~table["group"].isin(list(PHP_NOT_BUILT))
    assert table.loc[text & built, "seq_len"].notna().all()
    assert table.loc[~(text & built), "seq_len"].isna().all()


#: By default one graph per architecture family is costed (the first listed); every graph with
#: ``ESTIMATOR_ALL_EXPORTS=1`` (about a minute).
ALL = os.environ.get("ESTIMATOR_ALL_EXPORTS") == "1"
#: The first graph listed for each family.
FIRST_OF_FAMILY = {family: graph for graph, family, _ in reversed(PHP_GRAPHS.values())}
REPRESENTATIVE = {f"data/graphs/{graph}.onnx" for graph in FIRST_OF_FAMILY.values()}


def _bindings() -> list[tuple[str, int | None]]:
    """Each committed PHP graph once, at the longest sequence a row binds it to."""
    table = read_measurements(REPO / "data" / "power_hungry.csv.gz")
    table = table[~table["group"].isin(list(PHP_NOT_BUILT))]
    longest = table.groupby("model_ref")["seq_len"].max()
    return [
        (ref, None if pd.isna(seq) else int(seq))
        for ref, seq in longest.items()
        if ALL or ref in REPRESENTATIVE
    ]


@pytest.mark.parametrize(("model_ref", "seq"), _bindings())
def test_each_graph_loads_and_costs_at_its_rows_input(model_ref: str, seq: int | None) -> None:
    row = {
        "model_ref": model_ref,
        "batch": 1,
        "dtype": "float32",
        "hardware": "a100",
        "runtime": "hf-pipeline",
    }
    row["seq_len"] = seq
    variant = config_key(row, REPO)[-1]
    assert variant.endswith(f";seq={seq}") == (seq is not None)
    report = count_costs(config_graph(REPO, model_ref, 1, "float32", variant))
    assert report.coverage == 1.0, f"{model_ref}: not costed {report.not_costed}"
    assert report.totals.macs > 0


def test_power_hungry_is_left_out_of_the_gpu_table_unless_named():
    """Trained on, PHP made every held-out GPU worse (OPTIONAL_GPU_TABLES says why): out by default, in when
    named, and a name that is not an optional source is one DataError."""
    from estimator.errors import DataError
    from estimator.learn.gpu_training import load_gpu_table

    assert "power_hungry" not in set(load_gpu_table()["source"])
    with_php = load_gpu_table(with_sources=["power_hungry"])
    assert (with_php["source"] == "power_hungry").sum() == len(
        pd.read_csv(REPO / "data" / "power_hungry.csv.gz")
    )
    with pytest.raises(
        DataError,
        match="not an optional GPU source; choose from mlenergy_diffusion, mlperf_power, power_hungry",
    ):
        load_gpu_table(with_sources=["irene"])
