"""ML.ENERGY leaderboard v1-v3: GPU energy of LLM and diffusion serving (validation table, gpu-board-nvml)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.importers._common import _finish, _need, _read_csv, _round
from estimator.errors import InputFileError

MLENERGY_CITATION = (
    "ML.ENERGY Leaderboard (Chung et al.), github.com/ml-energy/leaderboard-v2 @ c3af7f3 (v1, v2), "
    "github.com/ml-energy/leaderboard @ 0cd52da (v3)"
)

MLENERGY_GPUS = {
    "A100": "a100-40gb",
    "A40": "a40",
    "V100": "v100",
    "NVIDIA A100-SXM4-40GB": "a100-40gb",
    "NVIDIA H100 80GB HBM3": "h100",
    "H100": "h100",
    "B200": "b200",
}
MLENERGY_DTYPES = {"bfloat16": "bfloat16", "fp8": "float8"}


def _mlenergy_v1(folder: Path) -> pd.DataFrame:
    file = folder / "v1_legacy_flat_DERIVED.csv"
    raw = _read_csv(file)
    _need(raw, ["gpu", "task", "model", "throughput", "response_length", "latency", "energy"], file)
    return pd.DataFrame(
        {
            "model_ref": "hf:" + raw["model"],
            "group": raw["model"],
            "family": "llm",
            "task": "text-generation-" + raw["task"],
            "batch": 1,
            "device_name": raw["gpu"],
            "runtime": "pytorch-cuda",
            "joules_per_sample": raw["energy"],
            "latency_s": raw["latency"],
            "joules_per_token": raw["energy"] / raw["response_length"],
            "output_tokens": raw["response_length"],
            "throughput": raw["throughput"],
            "throughput_unit": "tokens/s",
            "accelerators": 1,
            "submission": "v1:" + raw["gpu"] + "/" + raw["task"],
            "notes": "J per response (HF generate, batch 1); v1 legacy 2023",
            "source": "mlenergy-v1",
        }
    )


def _mlenergy_v2(folder: Path) -> pd.DataFrame:
    file = folder / "v2_configs_flat_DERIVED.csv"
    raw = _read_csv(file)
    _need(
        raw,
        [
            "family",
            "task",
            "config_file",
            "Model",
            "GPU",
            "TP",
            "PP",
            "Energy/req (J)",
            "Avg Output Tokens",
            "Token tput (tok/s)",
            "Energy/image (J)",
            "Energy/video (J)",
            "Batch size",
            "Batch latency (s)",
        ],
        file,
    )
    llm = raw["Energy/req (J)"].notna()
    image = raw["Energy/image (J)"].notna()
    per_item = raw["Energy/req (J)"].fillna(raw["Energy/image (J)"]).fillna(raw["Energy/video (J)"])
    batch = raw["Batch size"].where(~llm)
    kind = np.where(
        llm, "J per request (vLLM, continuous batching)", np.where(image, "J per image", "J per video")
    )
    return pd.DataFrame(
        {
            "model_ref": "hf:" + raw["Model"],
            "group": raw["Model"],
            "family": raw["family"].replace({"llm_text_generation": "llm", "mllm_text_generation": "mllm"}),
            "task": raw["task"],
            "batch": batch.astype("Int64"),
            "device_name": raw["GPU"],
            "runtime": np.where(llm, "vllm", "diffusers"),
            "joules_per_inference": per_item * batch,
            "joules_per_sample": per_item,
            "latency_s": raw["Batch latency (s)"],
            "joules_per_token": raw["Energy/req (J)"] / raw["Avg Output Tokens"],
            "output_tokens": raw["Avg Output Tokens"],
            "throughput": raw["Token tput (tok/s)"],
            "throughput_unit": np.where(llm, "tokens/s", None),
            "accelerators": (raw["TP"] * raw["PP"]).fillna(1).astype("Int64"),
            "submission": "v2:" + raw["config_file"],
            "notes": pd.Series(kind, index=raw.index) + "; v2 2024",
            "source": "mlenergy-v2",
        }
    )


def _mlenergy_v3(folder: Path) -> pd.DataFrame:
    file = folder / "v3_tasks_flat_DERIVED.csv"
    raw = _read_csv(file)
    _need(
        raw,
        [
            "model_id",
            "task",
            "gpu_model",
            "num_gpus",
            "weight_precision",
            "energy_per_request_joules",
            "energy_per_token_joules",
            "avg_power_watts",
            "avg_output_len",
            "output_throughput_tokens_per_sec",
            "energy_per_image_joules",
            "energy_per_video_joules",
            "batch_size",
            "batch_latency_s",
            "max_num_seqs",
            "architecture",
        ],
        file,
    )
    llm = raw["energy_per_request_joules"].notna()
    image = raw["energy_per_image_joules"].notna()
    per_item = (
        raw["energy_per_request_joules"]
        .fillna(raw["energy_per_image_joules"])
        .fillna(raw["energy_per_video_joules"])
    )
    batch = raw["batch_size"].where(~llm)
    kind = np.where(llm, "J per request (continuous batching)", np.where(image, "J per image", "J per video"))
    precision = raw["weight_precision"].map(MLENERGY_DTYPES)
    config = np.where(
        llm,
        "max_num_seqs=" + raw["max_num_seqs"].astype("Int64").astype(str),
        "batch=" + raw["batch_size"].astype("Int64").astype(str),
    )
    return pd.DataFrame(
        {
            "model_ref": "hf:" + raw["model_id"],
            "group": raw["model_id"],
            "family": np.where(llm, "llm", "diffusion"),
            "task": raw["task"],
            "batch": batch.astype("Int64"),
            "dtype": precision,
            "device_name": raw["gpu_model"],
            "runtime": np.where(llm, "vllm", "diffusers"),
            "joules_per_inference": per_item * batch,
            "joules_per_sample": per_item,
            "latency_s": raw["batch_latency_s"],
            "joules_per_token": raw["energy_per_token_joules"],
            "output_tokens": raw["avg_output_len"],
            "power_w": raw["avg_power_watts"],
            "throughput": raw["output_throughput_tokens_per_sec"],
            "throughput_unit": np.where(llm, "tokens/s", None),
            "accelerators": raw["num_gpus"].astype("Int64"),
            "submission": "v3:" + raw["task"] + "/" + pd.Series(config, index=raw.index),
            "notes": pd.Series(kind, index=raw.index)
            + "; weights "
            + raw["weight_precision"].astype(str)
            + "; v3 2025-26",
            "source": "mlenergy-v3",
        }
    )


def import_mlenergy(path: Path) -> pd.DataFrame:
    """ML.ENERGY leaderboard v1, v2 and v3 (the *_flat_DERIVED.csv files) as a validation table.

    GPU-only energy from NVML (boundary gpu-board-nvml, idle not subtracted), summed over all GPUs of the
    run (`accelerators`). joules_per_sample is J per request / image / video as `notes` says; for diffusion
    rows `batch` is the batch size and joules_per_inference = J per image * batch. LLM rows leave `batch`
    and joules_per_inference empty (continuous batching, many forward passes per request).
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise InputFileError(f"{folder} does not exist; give the mlenergy_leaderboard folder")
    parts = [_mlenergy_v1(folder), _mlenergy_v2(folder), _mlenergy_v3(folder)]
    frame = pd.concat(parts, ignore_index=True)
    log: Counter[str] = Counter(rows_in=len(frame))
    hardware = frame["device_name"].map(MLENERGY_GPUS)
    for device, count in frame.loc[hardware.isna(), "device_name"].value_counts().items():
        log[f"dropped: no profile for {device}"] = int(count)
    frame = frame.assign(hardware=hardware)[hardware.notna()]
    energy = frame["joules_per_sample"]
    bad = ~(np.isfinite(energy) & (energy > 0))
    log["dropped: no energy value"] = int(bad.sum())
    frame = frame[~bad].copy()
    rounded = ["joules_per_inference", "joules_per_sample", "latency_s", "joules_per_token", "output_tokens"]
    for name in [*rounded, "power_w", "throughput"]:
        frame[name] = _round(frame[name]).to_numpy()
    frame["boundary"] = "gpu-board-nvml"
    frame["idle_subtracted"] = False
    frame["repeats"] = 1
    frame["citation"] = MLENERGY_CITATION
    log["rows_out"] = len(frame)
    return _finish(frame, ["source", "task", "group", "hardware", "submission", "accelerators"], log)
