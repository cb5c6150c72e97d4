"""MLPerf Inference Power on NVIDIA GPUs as a GPU training table (wall-system, the networks we build).

The validation table of :mod:`estimator.data.importers.mlperf_power` keeps every MLPerf Power row; this one
keeps the part a GPU energy model can learn from honestly:

* **networks whose graph is committed**: ResNet-50 v1.5 (``data/graphs/resnet50.onnx``, timm's resnet50: the
  v1.5 layout, stride in the 3x3 convolution) and BERT-large for SQuAD at 384 tokens
  (``data/graphs/php-bert-large-uncased-qa.onnx``, BertForQuestionAnswering, 24 x 1024, vocabulary 30,522, its
  symbolic sequence bound at 384). RetinaNet, SSD-ResNet34, SSD-MobileNet, 3D-UNet, RNN-T, DLRM and the LLMs
  have no graph here and are counted in the import log;
* **NVIDIA GPUs with a GPU profile** (``kind = "gpu"``). Jetson boards (an SoC profile or none; their engines
  also run on the DLAs), the A2 and the A30 (no profile) are dropped and counted;
* **scenarios with a known forward pass**: SingleStream (one sample per query, batch 1), MultiStream (8 samples
  per query, batch 8) and Offline (boards saturated; batch below). Server is dropped: its batch is whatever the
  latency bound let the batcher gather;
* **TensorRT**, as NVIDIA's harness ran it (the ``Software`` field says TensorRT, or it is empty and the
  system's name says TensorRT: NVIDIA's H200 v4.1 submission). ONNX Runtime, PyTorch and TensorFlow runs of
  the MLCommons reference code are dropped;
* **the precision the harness ran**: ResNet-50 and BERT-99 in INT8, BERT-99.9 in FP16 (NVIDIA's configs:
  ``precision = "fp16"`` for every ``HighAccuracy`` BERT class, INT8 otherwise). On Hopper, later rounds ran
  BERT-99 in FP8; FP8 and INT8 share the tensor-core peak on H100/H200, so the row is costed as INT8.

Offline batch (not reported by the export): :data:`MLPERF_OFFLINE_BATCH`, the per-GPU ``gpu_batch_size`` of
NVIDIA's closed A100 configurations (mlcommons/inference_results_v2.0 @ e1f8956,
``closed/NVIDIA/configs/resnet50/Offline/__init__.py``: 2048; ``closed/NVIDIA/configs/bert/Offline/__init__.py``:
1024). Other GPUs' configurations use other batches (A2: 1024 for ResNet-50); at batches this large every
board is saturated: the v2 prior's energy per sample of either network changes by under 1% between batch 256
and 2048 on the A100, H100, L4 and T4 profiles (2026-12-02).

One row per (system, GPU, network, accuracy target, scenario, accelerators): the median energy per sample over
the rounds that submitted it (``repeats`` = rounds, ``spread_rel`` = (max - min) / median). A row is the
energy of ONE accelerator's forward pass at ``batch`` plus its share of the host: ``joules_per_inference`` =
(system W / system samples per s) x batch for Offline (J per query / 8 x 8 for MultiStream, J per query for
SingleStream). ``accelerators`` is how many GPUs shared the wall reading (the host's share per sample falls as
1 / accelerators); it is not converted into a board count (``boards`` stays 1: one board's forward pass).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.importers._common import _finish, _round
from estimator.data.importers.mlperf_power import import_mlperf_power
from estimator.energy.hardware import list_profiles, load_profile

#: MLPerf benchmark key -> (committed graph, tokens bound to its symbolic sequence or None).
MLPERF_GPU_GRAPHS: dict[str, tuple[str, int | None]] = {
    "resnet": ("data/graphs/resnet50.onnx", None),
    "bert": ("data/graphs/php-bert-large-uncased-qa.onnx", 384),
}
#: Per-GPU batch of an Offline run, samples (NVIDIA's closed A100 configurations, see the module docstring).
MLPERF_OFFLINE_BATCH: dict[str, int] = {"resnet": 2048, "bert": 1024}
#: Samples per query of each scenario kept (MultiStream: 8 from MLPerf Inference v2.0 on).
MLPERF_SCENARIO_BATCH: dict[str, int] = {"SingleStream": 1, "MultiStream": 8}


def _precision(model_key: str, accuracy: str) -> str:
    """The element type NVIDIA's TensorRT harness ran: FP16 for BERT-99.9, INT8 otherwise."""
    return "float16" if model_key == "bert" and accuracy == "99.9" else "int8"


def _gpu_profiles() -> set[str]:
    return {name for name in list_profiles() if load_profile(name).kind == "gpu"}


def mlperf_gpu_rows(validation: pd.DataFrame, gpu_profiles: set[str] | None = None) -> pd.DataFrame:
    """The GPU training rows of an MLPerf Power validation table (:func:`import_mlperf_power`'s output).

    Args:
        validation: rows with ``group``, ``hardware``, ``runtime``, ``scenario``, ``notes`` (its accuracy
            target), ``joules_per_sample`` (J; SingleStream and MultiStream), ``power_w`` (W) and
            ``throughput`` (samples/s; Offline), ``accelerators``, ``system_name`` and ``submission``.
        gpu_profiles: hardware names with a GPU profile (default: every profile of kind ``gpu``).

    Returns the table described in the module docstring, its drop counts in ``attrs["import_log"]``.
    """
    gpus = _gpu_profiles() if gpu_profiles is None else set(gpu_profiles)
    log: Counter[str] = Counter(rows_in=len(validation))
    t = validation.copy()
    built = t["group"].isin(list(MLPERF_GPU_GRAPHS))
    for name, n in t.loc[~built, "group"].value_counts().items():
        log[f"dropped: no committed graph for {name}"] = int(n)
    t = t[built]
    gpu = t["hardware"].isin(list(gpus))
    for name, n in t.loc[~gpu, "hardware"].value_counts().items():
        log[f"dropped: {name} has no GPU profile"] = int(n)
    t = t[gpu]
    kept = t["scenario"].isin(["Offline", *MLPERF_SCENARIO_BATCH])
    log["dropped: Server scenario (batch set by the latency bound)"] = int((~kept).sum())
    t = t[kept]
    named_trt = t["runtime"].eq("vendor") & t["system_name"].astype(str).str.contains("TensorRT")
    t = t.assign(runtime=t["runtime"].where(~named_trt, "tensorrt"))
    trt = t["runtime"].eq("tensorrt")
    for name, n in t.loc[~trt, "runtime"].value_counts().items():
        log[f"dropped: runtime {name} (not NVIDIA's TensorRT harness)"] = int(n)
    t = t[trt]
    # "99.0" and "99" name the same target (the export spells both)
    accuracy = t["notes"].str.extract(r"accuracy target ([\d.]+)%")[0].fillna("").replace("99.0", "99")
    t = t.assign(accuracy=accuracy, accelerators=t["accelerators"].astype("Int64"))
    # BERT's precision follows its accuracy target (INT8 for 99%, FP16 for 99.9%): without one it is unknown
    unknown = t["group"].eq("bert") & t["accuracy"].eq("")
    log["dropped: BERT without an accuracy target (precision unknown)"] = int(unknown.sum())
    t = t[~unknown]
    # Offline: the whole box's wall power over its throughput (all accelerators together), J per sample
    offline = t["scenario"].eq("Offline")
    per_second = offline & t["throughput_unit"].eq("samples/s")
    log["dropped: Offline throughput not in samples/s"] = int((offline & ~per_second).sum())
    t = t[~offline | per_second]
    offline = t["scenario"].eq("Offline")
    wall = t["power_w"].astype(float) / t["throughput"].astype(float)
    t = t.assign(j_sample=wall.where(offline, t["joules_per_sample"].astype(float)))
    keys = ["system_name", "hardware", "group", "accuracy", "scenario", "accelerators"]
    rows = []
    for key, g in t.groupby(keys, sort=True, dropna=False):
        system, hardware, group, acc, scenario, accelerators = key
        j = g["j_sample"].to_numpy(dtype=float)
        median = float(np.median(j))
        batch = MLPERF_SCENARIO_BATCH.get(str(scenario), MLPERF_OFFLINE_BATCH[str(group)])
        graph, seq = MLPERF_GPU_GRAPHS[str(group)]
        rows.append(
            {
                "model_ref": graph,
                "group": group,
                "family": g["family"].iat[0],
                "task": g["task"].iat[0],
                "batch": batch,
                "dtype": _precision(str(group), str(acc)),
                "hardware": hardware,
                "runtime": "tensorrt",
                "boundary": "wall-system",
                "joules_per_inference": median * batch,
                "joules_per_sample": median,
                "idle_subtracted": False,
                "repeats": len(j),
                "spread_rel": (j.max() - j.min()) / median if len(j) > 1 else np.nan,
                "source": "mlperf_power",
                "citation": g["citation"].iat[0],
                "notes": (
                    f"{scenario}; {f'accuracy target {acc}%' if acc else 'no accuracy target'}; median of "
                    f"{len(j)} round(s) "
                    f"({', '.join(sorted(set(g['submission'].astype(str))))}); "
                    + (
                        f"batch {batch} assumed (NVIDIA's A100 Offline gpu_batch_size)"
                        if scenario == "Offline"
                        else f"{batch} sample(s) per query"
                    )
                ),
                "seq_len": seq,
                "device_name": g["device_name"].iat[0],
                "accelerators": accelerators,
                "boards": 1,
                "scenario": scenario,
                "system_name": system,
            }
        )
    out = pd.DataFrame(rows)
    out["seq_len"] = out["seq_len"].astype("Int64")
    out["accelerators"] = out["accelerators"].astype("Int64")
    out["joules_per_inference"] = _round(out["joules_per_inference"]).to_numpy()
    out["joules_per_sample"] = _round(out["joules_per_sample"]).to_numpy()
    out["spread_rel"] = _round(out["spread_rel"]).to_numpy()
    log["rows_out"] = len(out)
    return _finish(out, ["hardware", "group", "scenario", "system_name", "dtype", "accelerators"], log)


def import_mlperf_power_gpu(path: Path) -> pd.DataFrame:
    """MLPerf Power (mlperf_power_paired_DERIVED.csv) -> the GPU training table of :func:`mlperf_gpu_rows`."""
    validation = import_mlperf_power(path)
    out = mlperf_gpu_rows(validation)
    out.attrs["import_log"] = {
        **{f"validation: {k}": v for k, v in validation.attrs.get("import_log", {}).items()},
        **out.attrs["import_log"],
    }
    return out


__all__ = ["MLPERF_GPU_GRAPHS", "MLPERF_OFFLINE_BATCH", "import_mlperf_power_gpu", "mlperf_gpu_rows"]
