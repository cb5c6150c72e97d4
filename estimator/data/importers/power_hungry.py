"""Power Hungry Processing (Luccioni, Jernite, Strubell, FAccT 2024): 92 Hugging Face models through
transformers pipelines on one A100-SXM4-80GB of an AWS p4de node (8 boards), batch 1, 1,000 queries per run.

CodeCarbon 2.3.1 read NVML energy of ALL EIGHT boards and summed it although the pipeline used only cuda:0;
each run logged a 'load model' phase and a 'query model' phase with its own run id. Every task x model gives
two rows (medians over the runs, ~10 each), never mixed:

- ``gpu-boards-summed`` (boards = 8, accelerators = 1): the energy as logged.
- ``gpu-board-nvml`` (boards = 1): the working board alone, by `single_board_joules`, with the idle power
  per board measured in the same run's 'load model' phase (`idle_board_watts`).

Tasks that run one forward pass per query (classification, extractive QA, fill-mask, token classification,
object detection) go to a training table (``power_hungry``); generative tasks (text generation,
summarisation, zero-shot via generation, image captioning, text-to-image) run many passes per query and go to
a validation table (``power_hungry_generative``). Runtime ``hf-pipeline``: one pipeline call per query at
batch 1 including tokenisation / image pre-processing and post-processing. Sequence lengths differ per query
and are not recorded per run, so ``seq_len`` is empty; model_ref names the Hugging Face graph
``data/graphs/<id with / as -->.onnx``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from estimator.data.importers._common import _finish, _need, _read_csv, _round
from estimator.errors import InputFileError

PHP_CITATION = (
    "Luccioni, Jernite, Strubell, 'Power Hungry Processing: Watts Driving the Cost of AI Deployment?', "
    "FAccT 2024, arXiv 2311.16863; github.com/sashavor/co2_inference @ 9ae9895 (MIT)"
)
PHP_BOARDS = 8
PHP_QUERIES_PER_RUN = 1000
KWH_TO_J = 3.6e6
#: Task-dataset prefixes whose pipeline runs one forward pass per query.
SINGLE_PASS_TASKS = ("fillmask", "image_class", "obj_detection", "qa_", "text_classif", "token_classif")


def idle_board_watts(load_phase_total_watts: float, boards: int = PHP_BOARDS) -> float:
    """Idle power of one board, W, from the summed NVML power of `boards` boards while a model loads.

    Assumption: while the pipeline loads its model (weights read into host memory) no board computes, so
    all boards draw idle power and it splits evenly between identical boards.
    """
    if boards < 1:
        raise ValueError("boards must be at least 1")
    return load_phase_total_watts / boards


def single_board_joules(summed_joules: float, duration_s: float, idle_w: float, idle_boards: int) -> float:
    """Energy of the one working board, J: the summed energy minus `idle_boards` boards at `idle_w` watts.

    Assumption: the unused boards stay at the idle power measured in the load phase for the whole query
    phase (``duration_s``); the working board's own idle share stays in the result (idle_subtracted False).
    """
    return summed_joules - idle_boards * idle_w * duration_s


def import_power_hungry(path: Path) -> pd.DataFrame:
    """Single-forward-pass tasks of Power Hungry Processing as a training table (J per query)."""
    return _import(Path(path), single_pass=True)


def import_power_hungry_generative(path: Path) -> pd.DataFrame:
    """Generative tasks of Power Hungry Processing as a validation table (J per query)."""
    return _import(Path(path), single_pass=False)


def _runs(folder: Path, log: Counter) -> pd.DataFrame:
    base_file = folder / "base_all_tasks_combined.csv"
    complete = sorted((folder / "data" / "emissions" / "complete").glob("*.csv"))
    if not base_file.is_file() or not complete:
        raise InputFileError(f"{folder} lacks base_all_tasks_combined.csv or data/emissions/complete/*.csv")
    base = _read_csv(base_file)
    _need(
        base,
        ["task_name", "run_id", "duration", "gpu_energy", "gpu_power", "gpu_count", "timestamp"],
        base_file,
    )
    tasks = []
    for file in complete:
        runs = _read_csv(file, usecols=["run_id", "project_name"])
        tasks.append(runs.assign(task_dataset=file.stem))
    tasks = pd.concat(tasks, ignore_index=True).rename(columns={"project_name": "model"})
    query = base[base["task_name"] == "query model"][
        ["run_id", "duration", "gpu_energy", "gpu_count", "timestamp"]
    ]
    load = base[base["task_name"] == "load model"][["run_id", "gpu_power"]].rename(
        columns={"gpu_power": "load_w"}
    )
    runs = tasks.merge(query, on="run_id", how="inner").merge(load, on="run_id", how="left")
    log["dropped: run without a query phase"] += len(tasks) - int(tasks["run_id"].isin(query["run_id"]).sum())
    bad = (runs["gpu_count"] != PHP_BOARDS) | runs["load_w"].isna() | ~(runs["gpu_energy"] > 0)
    log["dropped: run without load phase, energy or 8 boards"] += int(bad.sum())
    runs = runs[~bad].copy()
    runs["summed_j"] = runs["gpu_energy"] * KWH_TO_J
    runs["idle_w"] = [idle_board_watts(w) for w in runs["load_w"]]
    runs["single_j"] = [
        single_board_joules(e, t, i, PHP_BOARDS - 1)
        for e, t, i in zip(runs["summed_j"], runs["duration"], runs["idle_w"], strict=True)
    ]
    negative = ~(runs["single_j"] > 0)
    log["dropped: single-board energy not positive after the idle subtraction"] += int(negative.sum())
    return runs[~negative]


def _import(folder: Path, single_pass: bool) -> pd.DataFrame:
    log: Counter = Counter()
    runs = _runs(folder, log)
    is_single = runs["task_dataset"].str.startswith(SINGLE_PASS_TASKS)
    log["left for the other PHP table (single-pass vs generative)"] += int((is_single != single_pass).sum())
    runs = runs[is_single == single_pass]
    agg = (
        runs.groupby(["task_dataset", "model"])
        .agg(
            repeats=("run_id", "size"),
            duration=("duration", "median"),
            summed_j=("summed_j", "median"),
            single_j=("single_j", "median"),
            single_min=("single_j", "min"),
            single_max=("single_j", "max"),
            idle_w=("idle_w", "median"),
            measured_at=("timestamp", "min"),
        )
        .reset_index()
    )
    frames = []
    for boundary, column, boards in (
        ("gpu-boards-summed", "summed_j", PHP_BOARDS),
        ("gpu-board-nvml", "single_j", 1),
    ):
        per_query = agg[column] / PHP_QUERIES_PER_RUN
        frames.append(
            pd.DataFrame(
                {
                    "model_ref": "data/graphs/" + agg["model"].str.replace("/", "--") + ".onnx",
                    "group": agg["model"],
                    "family": agg["model"].str.split("/").str[-1].str.split("-").str[0],
                    "task": agg["task_dataset"],
                    "batch": 1,
                    "dtype": "float32",
                    "hardware": "a100",
                    "runtime": "hf-pipeline",
                    "boundary": boundary,
                    "joules_per_inference": _round(per_query),
                    "joules_per_sample": _round(per_query),
                    "latency_s": _round(agg["duration"] / PHP_QUERIES_PER_RUN),
                    "idle_subtracted": False,
                    "repeats": agg["repeats"],
                    "spread_rel": _round((agg["single_max"] - agg["single_min"]) / agg["single_j"]),
                    "source": "power_hungry",
                    "citation": PHP_CITATION,
                    "measured_at": agg["measured_at"].str[:10],
                    "notes": [
                        (
                            "NVML energy of 8 boards summed, 1 working"
                            if boards > 1
                            else f"single_board_joules: minus 7 boards at {w:.1f} W idle (load phase)"
                        )
                        + "; median of runs of 1,000 pipeline calls"
                        for w in agg["idle_w"]
                    ],
                    "architecture": agg["model"],
                    "device_name": "NVIDIA A100-SXM4-80GB (AWS p4de)",
                    "accelerators": 1,
                    "power_w": _round(agg[column] / agg["duration"]),
                    "boards": boards,
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return _finish(out, ["boundary", "task", "group"], log)
