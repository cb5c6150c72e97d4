"""Fischer et al. ImageNet CNN inference: ImageNetEff22 (A100 x8, Quadro RTX 5000) and the RTX 4090 sets.

Three sources, one module (they share the Keras -> timm graph table and the ImageNet validation set):

- ``fischer_eff22`` (Fischer, Jakobs, Mücke, Morik, 'A Unified Framework for Assessing Energy Efficiency
  of Machine Learning', ECML-PKDD 2022): 31 Keras / torchvision CNNs over the 50,000 ImageNet validation
  images, batch 32, fp32, NVML power per board sampled every 0.2 s and integrated; input pipeline included.
  Training table, boundary ``gpu-board-nvml`` after `per_board_joules_per_sample` (A100 rows).
- ``fischer_rtx4090`` (Fischer's ai-efficiency-testbed via STREP): 40 Keras CNNs on an RTX 4090, TF 2.18,
  batch 1-64, CodeCarbon total J/sample. Training table, boundary ``codecarbon-total``, runtime
  ``tensorflow-xla-gpu`` (Keras 3: :func:`keras_gpu_runtime`).
- ``fischer_validation`` (Fischer 2025, 'Ground-Truthing AI Energy Consumption', arXiv 2509.22092): 30 Keras
  CNNs on an RTX 4090, batch 4 and 16, two repeats, CodeCarbon total next to a wall meter read from photos.
  Validation table with BOTH boundaries: ``codecarbon-total`` and ``wall-system`` rows of the same run.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from estimator.data.importers._cnn_graphs import KERAS_TO_TIMM, TORCHVISION_TO_TIMM, family_of, graph_ref
from estimator.data.importers._common import _finish, _need, _read_csv, _resolve, _round
from estimator.errors import InputFileError

#: First TensorFlow release whose tf.keras is Keras 3, which compiles predict with XLA on a GPU by default
#: (TensorFlow 2.16 release notes; keras-team/keras @ 3194d55, keras/src/trainers/trainer.py,
#: _resolve_auto_jit_compile): from it on a Keras run is ``tensorflow-xla-gpu``, before it ``tensorflow-gpu``.
KERAS3_TF_VERSION = (2, 16)


def keras_gpu_runtime(software: str) -> str:
    """The runtime of a Keras run on a GPU from its recorded software string ("Tensorflow 2.18.0"):
    ``tensorflow-xla-gpu`` from TensorFlow 2.16 (Keras 3, XLA by default), else ``tensorflow-gpu``.

    Raises:
        InputFileError: the string names no TensorFlow version (the runtime would be a guess).
    """
    match = re.search(r"tensorflow\D*(\d+)\.(\d+)", str(software), flags=re.IGNORECASE)
    if match is None:
        raise InputFileError(f"no TensorFlow version in the recorded software {software!r}")
    version = (int(match.group(1)), int(match.group(2)))
    return "tensorflow-xla-gpu" if version >= KERAS3_TF_VERSION else "tensorflow-gpu"


EFF22_CITATION = (
    "Fischer, Jakobs, Muecke, Morik, 'A Unified Framework for Assessing Energy Efficiency of Machine "
    "Learning', ECML-PKDD 2022 workshops; github.com/raphischer/imagenet-energy-efficiency @ 65eb68c (MIT)"
)
RTX4090_CITATION = (
    "Fischer, ai-efficiency-testbed ImageNet runs via STREP, github.com/raphischer/strep @ a8c6024 "
    "(databases/ai-efficiency-testbed)"
)
VALIDATION_CITATION = (
    "Fischer, 'Ground-Truthing AI Energy Consumption: Validating CodeCarbon Against External Measurements', "
    "arXiv 2509.22092; github.com/raphischer/ai-energy-validation @ d71d339"
)
IMAGENET_VAL_IMAGES = 50_000
FISCHER_GPUS = {
    "NVIDIA A100-SXM4-40GB": "a100-40gb",
    "Quadro RTX 5000": "quadro-rtx5000",
    "NVIDIA GeForce RTX 4090": "rtx4090",
}
FISCHER_RUNTIMES = {"tensorflow": "tensorflow-gpu", "pytorch": "pytorch-cuda"}


def per_board_joules_per_sample(board_joules: Sequence[float], samples: int) -> float:
    """Energy per sample of one working board, J, from the per-board energies of a data-parallel run.

    Assumption: the run split its `samples` evenly over the ``len(board_joules)`` boards (TensorFlow's
    MirroredStrategy and PyTorch's DataParallel both scatter each global batch evenly), so each board
    processed ``samples / boards`` of them and its own energy (idle power included) belongs to those.
    The result is the mean board energy divided by the samples per board, which equals the summed energy
    divided by all samples. What it cannot remove: the boards ran at low utilisation, waiting on a shared
    host input pipeline, so the figure holds much idle power; that stays (boundary gpu-board-nvml).
    """
    boards = len(board_joules)
    if boards < 1 or samples < boards:
        raise ValueError("need at least one board and at least one sample per board")
    return (sum(board_joules) / boards) / (samples / boards)


def eff22_samples_and_board_batch(batch: int, boards: int) -> tuple[int, int, int]:
    """(samples processed, samples per board per step, steps) of one ImageNetEff22 inference run.

    Both back ends run ``batch`` images per board: the global batch is ``batch`` x the boards, and the last
    partial batch is dropped. PyTorch multiplies the batch by ``torch.cuda.device_count()`` and its DataLoader
    has ``drop_last=True`` (mlee/ml_pytorch/infer.py); TensorFlow batches ``batch_size * n_gpus`` with
    ``drop_remainder=True`` and MirroredStrategy scatters it over the boards (mlee/ml_tensorflow/load_imagenet.py;
    github.com/raphischer/imagenet-energy-efficiency @ 65eb68c; ``--batch-size``: "images per gpu").
    """
    global_batch = batch * boards
    steps = IMAGENET_VAL_IMAGES // global_batch
    return steps * global_batch, batch, steps


def import_fischer_eff22(path: Path) -> pd.DataFrame:
    """ImageNetEff22 GPU inference runs (imagenet_eff22_infer_runs_parsed.csv) as a training table."""
    file = _resolve(path, "imagenet_eff22_infer_runs_parsed.csv")
    raw = _read_csv(file)
    _need(
        raw,
        [
            "file",
            "model",
            "backend",
            "batch_size",
            "gpu",
            "n_gpus",
            "val_duration_s",
            "gpu_energy_J_per_gpu",
            "gflops",
        ],
        file,
    )
    log: Counter = Counter()
    gpu = raw["gpu"].isin(list(FISCHER_GPUS))
    log["dropped: CPU rows (no GPU)"] += int((~gpu).sum())
    rows = []
    for rec in raw[gpu].itertuples(index=False):
        boards = [float(v) for v in str(rec.gpu_energy_J_per_gpu).split(";")]
        if len(boards) != int(rec.n_gpus):
            log["dropped: per-board energies do not match n_gpus"] += 1
            continue
        samples, board_batch, steps = eff22_samples_and_board_batch(int(rec.batch_size), len(boards))
        j_sample = per_board_joules_per_sample(boards, samples)
        table = TORCHVISION_TO_TIMM if rec.backend == "pytorch" else KERAS_TO_TIMM
        ref, graph_note = graph_ref(rec.model, table, "torchvision" if rec.backend == "pytorch" else "keras")
        many = len(boards) > 1
        rows.append(
            {
                "model_ref": ref,
                "group": family_of(rec.model).lower() + ":" + rec.model,
                "family": family_of(rec.model),
                "task": "imagenet",
                "batch": board_batch,
                "dtype": "float32",
                "hardware": FISCHER_GPUS[rec.gpu],
                "runtime": FISCHER_RUNTIMES[rec.backend],
                "boundary": "gpu-board-nvml",
                "joules_per_inference": j_sample * board_batch,
                "joules_per_sample": j_sample,
                "latency_s": rec.val_duration_s / steps,
                "idle_subtracted": False,
                "repeats": 1,
                "source": "fischer_eff22",
                "citation": EFF22_CITATION,
                "measured_at": str(rec.file)[6:16].replace("_", "-"),
                "notes": (
                    (
                        "per-board energy of 8 data-parallel boards (per_board_joules_per_sample); "
                        if many
                        else ""
                    )
                    + f"{samples} images, global batch {board_batch * len(boards)}; input pipeline and host "
                    "decoding inside the timed loop; "
                    + graph_note
                    + ("; TF32 on by default in TF on Ampere" if rec.backend == "tensorflow" and many else "")
                ),
                "num_classes": 1000,
                "architecture": rec.model,
                # the source's "gflops" counts multiply-adds (VGG16 15.48 G, ResNet50 3.86 G: the published MACs)
                "macs": rec.gflops if rec.backend == "tensorflow" else None,
                "device_name": rec.gpu,
                "accelerators": len(boards),
                "power_w": sum(boards) / len(boards) / rec.val_duration_s,
                "boards": 1,
                "submission": rec.file,
            }
        )
    out = pd.DataFrame(rows)
    for col in ("joules_per_inference", "joules_per_sample", "latency_s", "power_w", "macs"):
        out[col] = _round(out[col])
    return _finish(out, ["hardware", "runtime", "group", "batch"], log)


def import_fischer_rtx4090(path: Path) -> pd.DataFrame:
    """The 40 finished ImageNet runs of Fischer's RTX 4090 testbed as a training table (codecarbon-total)."""
    file = _resolve(path, "imagenet_0_2025-03-12_09-17-15.csv")
    raw = _read_csv(file)
    _need(
        raw,
        [
            "status",
            "params.model",
            "params.batch_size",
            "params.architecture",
            "metrics.power_draw",
            "metrics.running_time",
            "params.n_samples",
            "params.software",
            "start_time",
        ],
        file,
    )
    log: Counter = Counter()
    done = raw["status"] == "FINISHED"
    log["dropped: run not FINISHED"] += int((~done).sum())
    raw = raw[done]
    batch = raw["params.batch_size"].round().astype(int)
    refs = [graph_ref(m, KERAS_TO_TIMM, "keras") for m in raw["params.model"]]
    out = pd.DataFrame(
        {
            "model_ref": [r for r, _ in refs],
            "group": [family_of(m).lower() + ":" + m for m in raw["params.model"]],
            "family": [family_of(m) for m in raw["params.model"]],
            "task": "imagenet",
            "batch": batch,
            "dtype": "float32",
            "hardware": raw["params.architecture"].map(FISCHER_GPUS),
            "runtime": [keras_gpu_runtime(v) for v in raw["params.software"]],
            "boundary": "codecarbon-total",
            "joules_per_inference": _round(raw["metrics.power_draw"] * batch),
            "joules_per_sample": _round(raw["metrics.power_draw"]),
            "latency_s": _round(raw["metrics.running_time"] * batch),
            "idle_subtracted": False,
            "repeats": 1,
            "source": "fischer_rtx4090",
            "citation": RTX4090_CITATION,
            "measured_at": raw["start_time"].str[:10],
            "notes": [
                f"CodeCarbon J/sample (CPU+GPU+RAM) over {int(n)} images incl. input pipeline; {s}; {note}"
                for n, s, (_, note) in zip(raw["params.n_samples"], raw["params.software"], refs, strict=True)
            ],
            "num_classes": 1000,
            "architecture": raw["params.model"],
            "device_name": raw["params.architecture"],
            "accelerators": 1,
            "power_w": _round(raw["metrics.power_draw"] / raw["metrics.running_time"]),
            "boards": 1,
            "submission": raw["run_id"],
        }
    )
    unknown = out["hardware"].isna()
    log["dropped: device without a profile"] += int(unknown.sum())
    return _finish(out[~unknown], ["group", "batch"], log)


def wall_vs_codecarbon(wall_j_per_sample: float, codecarbon_j_per_sample: float) -> float:
    """Ratio wall-meter / CodeCarbon energy of one run (dimensionless).

    The wall meter sees everything CodeCarbon estimates plus what it cannot see (PSU losses, fans,
    motherboard, disks, the idle share CodeCarbon's TDP-based CPU model misses), so the ratio is > 1 for a
    consistent pair. Its resolution is poor: the meter counts 0.001 kWh = 3.6 kJ steps on 12-16 kJ totals.
    """
    return wall_j_per_sample / codecarbon_j_per_sample


def import_fischer_validation(path: Path) -> pd.DataFrame:
    """RTX 4090 runs of Fischer's CodeCarbon-vs-wall study: one codecarbon-total and one wall-system row each."""
    folder = Path(path)
    files = (
        sorted(folder.glob("joined_imagenet_120_*_codecarbon_vs_wall.csv")) if folder.is_dir() else [folder]
    )
    if not files or not all(f.is_file() for f in files):
        raise InputFileError(f"{path} holds no joined_imagenet_120_*_codecarbon_vs_wall.csv; give its folder")
    log: Counter = Counter()
    parts = []
    for file in files:
        raw = _read_csv(file)
        _need(
            raw,
            [
                "params.model",
                "params.architecture",
                "params.batch_size",
                "params.n_samples",
                "metrics.running_time",
                "codecarbon_J_per_sample",
                "wall_J_per_sample",
                "params.software",
            ],
            file,
        )
        gpu = raw["params.architecture"].isin(list(FISCHER_GPUS))
        log["dropped: CPU rows (i9-13900K, no GPU profile here)"] += int((~gpu).sum())
        raw = raw[gpu & (raw["wall_J_per_sample"] > 0)].assign(run_file=file.name)
        parts.append(raw)
    raw = pd.concat(parts, ignore_index=True)
    frames = []
    for boundary, column in (
        ("codecarbon-total", "codecarbon_J_per_sample"),
        ("wall-system", "wall_J_per_sample"),
    ):
        batch = raw["params.batch_size"].round().astype(int)
        ratio = [
            wall_vs_codecarbon(w, c)
            for w, c in zip(raw["wall_J_per_sample"], raw["codecarbon_J_per_sample"], strict=True)
        ]
        frames.append(
            pd.DataFrame(
                {
                    "model_ref": [graph_ref(m, KERAS_TO_TIMM, "keras")[0] for m in raw["params.model"]],
                    "group": [family_of(m).lower() + ":" + m for m in raw["params.model"]],
                    "family": [family_of(m) for m in raw["params.model"]],
                    "task": "imagenet",
                    "batch": batch,
                    "dtype": "float32",
                    "hardware": raw["params.architecture"].map(FISCHER_GPUS),
                    "runtime": [keras_gpu_runtime(v) for v in raw["params.software"]],
                    "boundary": boundary,
                    "joules_per_inference": _round(raw[column] * batch),
                    "joules_per_sample": _round(raw[column]),
                    "latency_s": _round(raw["metrics.running_time"] * batch),
                    "idle_subtracted": False,
                    "repeats": 1,
                    "source": "fischer_validation",
                    "citation": VALIDATION_CITATION,
                    "measured_at": "2025-09-12",
                    "notes": [
                        f"{int(n)} images in ~120 s; wall/CodeCarbon = {r:.3g}; wall meter resolution 3.6 kJ "
                        f"on ~12-16 kJ; {s}"
                        for n, r, s in zip(
                            raw["params.n_samples"], ratio, raw["params.software"], strict=True
                        )
                    ],
                    "num_classes": 1000,
                    "architecture": raw["params.model"],
                    "device_name": raw["params.architecture"],
                    "accelerators": 1,
                    "boards": 1,
                    "submission": raw["run_file"],
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return _finish(out, ["boundary", "group", "batch", "submission"], log)
