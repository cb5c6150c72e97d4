"""MLPerf Inference and Tiny Power results, whole system at the wall (validation table, wall-system)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.importers._common import _finish, _need, _read_csv, _resolve, _round

MLPERF_CITATION = (
    "MLCommons MLPerf Inference/Tiny Power results via Tschand et al., 'MLPerf Power', HPCA 2025, "
    "arXiv 2410.12032; github.com/aryatschand/MLPerf-Power-HPCA-2025 @ 49b63de"
)

#: Exact accelerator names of the MLPerf export -> hardware profile names. Unlisted devices are dropped.
MLPERF_ACCELERATORS = {
    "NVIDIA A100-SXM-80GB": "a100",
    "NVIDIA A100-SXM-80GB CTS": "a100",
    "NVIDIA A100-SXM4-40GB": "a100-40gb",
    "NVIDIA A100-PCIe-80GB": "a100-pcie-80gb",
    "NVIDIA A100-PCIe-40GB": "a100-pcie",
    "NVIDIA A100-PCIE-40GB": "a100-pcie",
    "NVIDIA A100-PCIe": "a100-pcie",
    "NVIDIA H100-SXM-80GB": "h100",
    "NVIDIA H100-PCIe-80GB": "h100-pcie",
    "NVIDIA H200-SXM-141GB": "h200",
    "NVIDIA L4": "l4",
    "NVIDIA L40S": "l40s",
    "NVIDIA T4": "t4",
    "NVIDIA A10": "a10",
    "NVIDIA A30": "a30",
    "NVIDIA A2": "a2",
    "NVIDIA GeForce RTX 4090": "rtx4090",
    "NVIDIA GeForce RTX 4090 (Ada Lovelace)": "rtx4090",
    "NVIDIA Jetson AGX Orin": "jetson-orin",
    "NVIDIA Jetson AGX Orin 32G": "jetson-orin-32gb",
    "NVIDIA Jetson AGX Orin 64G": "jetson-orin",
    "NVIDIA Orin": "jetson-orin",
    "NVIDIA Orin NX 16G": "jetson-orin-nx",
    "NVIDIA Xavier NX": "jetson-xavier-nx",
    "NVIDIA AGX Xavier": "jetson-agx-xavier",
}
#: Systems with no accelerator in the export, by exact system name. Jetson boards listed without an
#: accelerator ran on their Arm CPU (TFLite / ArmNN) and have no CPU-only profile, so they are dropped.
MLPERF_SYSTEMS = {
    "Raspberry Pi 4": "rpi4",
    "Raspberry Pi 4 Model B Rev 1.4 (rpi4)": "rpi4",
}


@dataclass(frozen=True)
class _Reference:
    family: str
    model_ref: str
    task: str


#: MLPerf benchmark names (lower case, accuracy suffix removed) -> the reference network.
MLPERF_MODELS = {
    "resnet": _Reference("ResNet", "torchvision:resnet50", "imagenet"),
    "bert": _Reference("BERT", "mlperf:bert-large;seq=384", "squad-v1.1"),
    "retinanet": _Reference("RetinaNet", "mlperf:retinanet-resnext50-fpn;image=800", "openimages"),
    "ssd-large": _Reference("SSD", "mlperf:ssd-resnet34;image=1200", "coco"),
    "ssd-small": _Reference("SSD", "mlperf:ssd-mobilenet-v1;image=300", "coco"),
    "3d-unet": _Reference("UNet", "mlperf:3d-unet", "kits19"),
    "rnn-t": _Reference("RNN-T", "mlperf:rnnt", "librispeech"),
    "rnnt": _Reference("RNN-T", "mlperf:rnnt", "librispeech"),
    "dlrm": _Reference("DLRM", "mlperf:dlrm", "criteo-terabyte"),
    "dlrm-v2": _Reference("DLRM", "mlperf:dlrm-v2", "criteo-multihot"),
    "gptj": _Reference("GPT-J", "mlperf:gpt-j-6b", "cnn-dailymail"),
    "llama2-70b": _Reference("Llama-2", "mlperf:llama-2-70b", "open-orca"),
    "mixtral-8x7b": _Reference("Mixtral", "mlperf:mixtral-8x7b", "open-orca"),
    "stable-diffusion-xl": _Reference("SDXL", "mlperf:stable-diffusion-xl", "coco"),
    "resnet-v1": _Reference("ResNet", "mlperf-tiny:resnet8;image=32", "cifar10"),
    "mobilenetv1 (0.25x)": _Reference(
        "MobileNet", "mlperf-tiny:mobilenet-v1-0.25;image=96", "visual-wake-words"
    ),
    "dscnn": _Reference("DS-CNN", "mlperf-tiny:ds-cnn", "speech-commands"),
    "fc autoencoder": _Reference("AutoEncoder", "mlperf-tiny:fc-autoencoder", "toyadmos"),
}
#: MultiStream queries hold 8 samples from MLPerf Inference v2.0 on (all MultiStream rows here are v2.0+).
MLPERF_MULTISTREAM_SAMPLES = 8
#: In the v3.1 edge rows the export labels the energy "System energy (J) per stream*" but the values are mJ:
#: read as J they imply 8 kW to 600 kW for single edge boxes (Jetson Orin NX, one-L4 servers); / 1000 gives
#: 8 W to 600 W, in line with the same systems in v3.0 (mJ label) and v4.0 (millijoules).
MLPERF_MJ_LABELLED_J = ("v3.1", "System energy (J) per stream*")
#: Energy per query / latency above this is no single system; such rows hold a unit error and are dropped.
MLPERF_MAX_SYSTEM_W = 20_000.0


def _mlperf_model(name: str) -> tuple[str, str]:
    """(benchmark key, accuracy target or '') from an MLPerf benchmark name like 'BERT-99.9'."""
    lower = name.strip().lower()
    for suffix in ("-99.9", "-99.0", "-99"):
        if lower.endswith(suffix):
            return lower[: -len(suffix)], suffix[1:]
    return lower, ""


def _mlperf_runtime(software: object) -> str:
    text = str(software).lower()
    if "tensorrt" in text:
        return "tensorrt"
    if "tflite" in text or "tensorflow lite" in text or "tensorflowlite" in text:
        return "tflite"
    if "onnx" in text:
        return "onnxruntime"
    return "vendor"


def import_mlperf_power(path: Path) -> pd.DataFrame:
    """MLPerf Power results (mlperf_power_paired_DERIVED.csv) as a validation table, boundary wall-system.

    Offline / Server: joules_per_sample = system W / samples per second (batch chosen by the submitter,
    not reported: `batch` empty). SingleStream: one sample per query (batch 1). MultiStream: 8 samples per
    query (batch 8, joules_per_inference = J per query). Tiny: J per inference, batch 1. Rows on devices with
    no hardware profile, with throughput in tokens/s, or with an impossible energy / latency are dropped.
    """
    file = _resolve(path, "mlperf_power_paired_DERIVED.csv")
    raw = _read_csv(file)
    _need(
        raw,
        [
            "Public ID",
            "SystemName",
            "Model MLC",
            "Scenario",
            "accelerator_model_name",
            "Total Accelerators",
            "category",
            "throughput",
            "throughput_units",
            "system_power_W",
            "latency_ms",
            "energy_J_per_query",
            "energy_J_per_sample_derived",
            "energy_units_raw",
            "Software",
            "version",
        ],
        file,
    )
    log: Counter[str] = Counter(rows_in=len(raw))
    hardware = raw["accelerator_model_name"].map(MLPERF_ACCELERATORS)
    hardware = hardware.fillna(
        raw["SystemName"].where(raw["accelerator_model_name"].isna()).map(MLPERF_SYSTEMS)
    )
    unmapped = hardware.isna()
    for device, count in raw.loc[unmapped, "accelerator_model_name"].fillna("(none)").value_counts().items():
        log[f"dropped: no profile for {device}"] = int(count)
    frame = raw.assign(hardware=hardware)[~unmapped].copy()

    keys = frame["Model MLC"].fillna("(none)").map(_mlperf_model)
    frame["model_key"] = keys.map(lambda k: k[0])
    frame["accuracy"] = keys.map(lambda k: k[1])
    known = frame["model_key"].isin(list(MLPERF_MODELS))
    for model, count in frame.loc[~known, "Model MLC"].fillna("(none)").value_counts().items():
        log[f"dropped: unknown benchmark {model}"] = int(count)
    frame = frame[known]

    mislabelled = frame["version"].eq(MLPERF_MJ_LABELLED_J[0]) & frame["energy_units_raw"].eq(
        MLPERF_MJ_LABELLED_J[1]
    )
    frame.loc[mislabelled, "energy_J_per_query"] = frame.loc[mislabelled, "energy_J_per_query"] / 1000.0
    log["corrected: v3.1 energy labelled J is in mJ (divided by 1000)"] = int(mislabelled.sum())
    scenario = frame["Scenario"].fillna("SingleStream")  # MLPerf Tiny measures single inferences
    units = frame["throughput_units"].str.lower()
    throughput_based = scenario.isin(["Offline", "Server"])
    tokens = throughput_based & units.eq("tokens/s")
    log["dropped: throughput in tokens/s (energy per sample unknown)"] = int(tokens.sum())
    samples = scenario.eq("MultiStream").map({True: MLPERF_MULTISTREAM_SAMPLES, False: 1})
    per_sample = np.where(
        throughput_based, frame["energy_J_per_sample_derived"], frame["energy_J_per_query"] / samples
    )
    per_query = np.where(throughput_based, np.nan, frame["energy_J_per_query"])
    latency_s = np.where(throughput_based, np.nan, frame["latency_ms"] / 1000.0)
    valid = ~tokens & np.isfinite(per_sample) & (per_sample > 0)
    log["dropped: no energy value"] = int((~tokens & ~valid).sum())
    implied_w = per_query / latency_s
    impossible = valid & np.isfinite(implied_w) & (implied_w > MLPERF_MAX_SYSTEM_W)
    log[f"dropped: energy/latency above {MLPERF_MAX_SYSTEM_W:.0f} W (unit error)"] = int(impossible.sum())
    keep = (valid & ~impossible).to_numpy()
    frame = frame[keep]
    refs = frame["model_key"].map(MLPERF_MODELS)
    scenario = scenario[keep]
    throughput_based = throughput_based[keep]
    accelerators = frame["Total Accelerators"].astype("Int64")
    power = frame["system_power_W"].where(throughput_based)
    throughput = frame["throughput"].where(throughput_based)
    accuracy_note = frame["accuracy"].map(lambda a: f"accuracy target {a}% of FP32; " if a else "")
    stream_note = scenario.map(
        {
            "Offline": "J/sample = system W / throughput; batch not reported",
            "Server": "J/sample = system W / throughput; batch not reported",
            "SingleStream": "one sample per query; latency is the 90th percentile",
            "MultiStream": "8 samples per query; latency is the 99th percentile per query",
        }
    )
    out = pd.DataFrame(
        {
            "model_ref": refs.map(lambda r: r.model_ref),
            "group": frame["model_key"],
            "family": refs.map(lambda r: r.family),
            "task": refs.map(lambda r: r.task),
            "batch": pd.array(np.where(throughput_based, pd.NA, samples[keep]), dtype="Int64"),
            "hardware": frame["hardware"],
            "runtime": frame["Software"].map(_mlperf_runtime),
            "boundary": "wall-system",
            "joules_per_inference": _round(per_query[keep]).to_numpy(),
            "joules_per_sample": _round(per_sample[keep]).to_numpy(),
            "latency_s": _round(latency_s[keep]).to_numpy(),
            "idle_subtracted": False,
            "repeats": 1,
            "source": "mlperf_power",
            "citation": MLPERF_CITATION,
            "notes": accuracy_note
            + stream_note
            + "; "
            + frame["category"]
            + " "
            + frame["version"].astype(str),
            "device_name": frame["accelerator_model_name"].fillna(frame["SystemName"]),
            "accelerators": accelerators,
            "power_w": _round(power).to_numpy(),
            "throughput": _round(throughput).to_numpy(),
            "throughput_unit": frame["throughput_units"].str.lower().where(throughput_based),
            "scenario": scenario,
            "submission": frame["Public ID"].astype(str),
            "system_name": frame["SystemName"],
        }
    )
    log["rows_out"] = len(out)
    return _finish(
        out, ["group", "hardware", "scenario", "submission", "system_name", "model_ref", "notes"], log
    )
