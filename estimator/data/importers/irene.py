"""IrEne (Cao et al., ACL 2021): Hugging Face transformers in PyTorch eager on two desktop GPUs.

Every measured forward pass gives two rows, one per boundary, never mixed: ``gpu-board-nvml`` (the GPU
sensor read through NVML, IrEne's ``gpu_energy_mean``) and ``machine-total`` (IrEne's ground truth from an
external meter on the whole machine, ``energy_mean``). Both are joules per call of one forward pass of
``batch`` sequences of ``seq_len`` tokens, fp32, random weights (``AutoModel.from_config``); ``times_mean`` is
seconds per call. No conversion is applied.

- ``import_irene`` (source ``irene``): whole models -> a training table.
- ``import_irene_modules`` (source ``irene_modules``): modules (``level=module``) and primitive ops
  (``level=op``, IrEne's ml1/ml2 files) -> a training table whose rows are parts of a network: ``module``
  names the part; ``model_ref`` is the whole network it sits in (not yet matched to graph nodes).

The devices: IrEne's data names them only device_1 and device_2. Identified from the clocks the data records
(an estimate, not stated in the data): device_1 runs its core at ~1.9 GHz with memory at 3802 MHz (8 Gbps
GDDR5 in the CUDA P2 state) and draws up to ~200 W: a GeForce GTX 1070 class Pascal board -> ``gtx1070``;
device_2 runs at ~1.6 GHz with memory at 5005 MHz (11 Gbps GDDR5X in the P2 state, 10 Gbps) and draws up to
~240 W, ~1.5x device_1's throughput: a GeForce GTX 1080 Ti -> ``gtx1080ti``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from estimator.data.importers._common import _finish, _need, _read_csv, _round
from estimator.errors import InputFileError
from estimator.zoo.hf_models import HF_MODELS

IRENE_CITATION = (
    "Cao, Lal, Trivedi, Balasubramanian, Balasubramanian, 'IrEne: Interpretable Energy Prediction for "
    "Transformers', ACL 2021, arXiv 2106.01199; github.com/StonyBrookNLP/irene @ 72e5d91 (branch original)"
)

#: IrEne device folder -> (hardware profile, how the device was identified).
IRENE_DEVICES = {
    "device_1": (
        "gtx1070",
        "IrEne device_1: GeForce GTX 1070 (identified from clocks 1.9 GHz / mem 3802 MHz)",
    ),
    "device_2": ("gtx1080ti", "IrEne device_2: GeForce GTX 1080 Ti (identified from clocks / mem 5005 MHz)"),
}
IRENE_FAMILIES = {
    "bert-base-uncased": "BERT",
    "distilbert-base-uncased": "DistilBERT",
    "roberta-base": "RoBERTa",
    "gpt2": "GPT-2",
    "distilgpt2": "GPT-2",
    "openai-gpt": "OpenAI-GPT",
}
#: Level files of each device folder and the `level` they become.
IRENE_LEVEL_FILES = {
    "model": ("model_level_features.csv",),
    "module": ("module_level_features.csv",),
    "op": ("ml1_level_features.csv", "ml2_level_features.csv"),
}
#: (boundary, IrEne column) pairs: one row per boundary.
IRENE_BOUNDARIES = (("gpu-board-nvml", "gpu_energy_mean"), ("machine-total", "energy_mean"))
_COLUMNS = [
    "batch_size",
    "seq_len",
    "gpu_clk",
    "gpu_mem_clk",
    "times_mean",
    "gpu_energy_mean",
    "energy_mean",
    "level_name",
    "model_name",
]


def _read_level(folder: Path, level: str, log: Counter) -> pd.DataFrame:
    parts = []
    for device, (hardware, device_name) in IRENE_DEVICES.items():
        for name in IRENE_LEVEL_FILES[level]:
            file = folder / device / name
            if not file.is_file():
                raise InputFileError(f"{file} does not exist; give the irene data set folder")
            raw = _read_csv(file)
            _need(raw, _COLUMNS, file)
            raw = raw.assign(hardware=hardware, device_name=device_name)
            parts.append(raw)
    raw = pd.concat(parts, ignore_index=True)
    known = raw["model_name"].isin(list(HF_MODELS))
    log["dropped: no torch-free graph (sshleifer/tiny-ctrl)"] += int((~known).sum())
    raw = raw[known]
    positive = (raw["times_mean"] > 0) & (raw["gpu_energy_mean"] > 0) & (raw["energy_mean"] > 0)
    log["dropped: zero or negative time or energy"] += int((~positive).sum())
    return raw[positive].reset_index(drop=True)


def _rows(raw: pd.DataFrame, level: str) -> pd.DataFrame:
    batch = raw["batch_size"].round().astype(int)
    seq = raw["seq_len"].round().astype(int)
    frames = []
    for boundary, column in IRENE_BOUNDARIES:
        energy = raw[column]
        frame = pd.DataFrame(
            {
                "model_ref": "hf:" + raw["model_name"] + ";seq=" + seq.astype(str),
                "group": raw["model_name"],
                "family": raw["model_name"].map(IRENE_FAMILIES),
                "task": "text",
                "batch": batch,
                "dtype": "float32",
                "hardware": raw["hardware"],
                "runtime": "pytorch-cuda",
                "boundary": boundary,
                "joules_per_inference": _round(energy),
                "joules_per_sample": _round(energy / batch),
                "latency_s": _round(raw["times_mean"]),
                "idle_subtracted": False,
                "repeats": 1,
                "source": "irene",
                "citation": IRENE_CITATION,
                "measured_at": "2021",
                "notes": (
                    "mean over IrEne's repeated runs (their count is not in the data); random weights; "
                    "gpu clock {clk} MHz, memory {mem} MHz"
                ),
                "input_shape": seq.astype(str),
                "architecture": raw["model_name"],
                "device_name": raw["device_name"],
                "accelerators": 1,
                "power_w": _round(energy / raw["times_mean"]),
                "seq_len": seq,
                "boards": 1,
                "level": level,
                "module": raw["level_name"] if level != "model" else None,
            }
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def import_irene(path: Path) -> pd.DataFrame:
    """IrEne whole-model forward passes on both devices, one row per boundary (J per call, s per call)."""
    log: Counter = Counter()
    raw = _read_level(Path(path), "model", log)
    out = _rows(raw, "model").drop(columns=["module"])
    return _finish(out, ["hardware", "boundary", "group", "batch", "seq_len"], log)


def import_irene_modules(path: Path) -> pd.DataFrame:
    """IrEne modules and primitive ops on both devices, one row per boundary; `module` names the part."""
    log: Counter = Counter()
    parts = [_rows(_read_level(Path(path), level, log), level) for level in ("module", "op")]
    # power_w (= joules_per_inference / latency_s) is left out to keep the 105k-row table under 2 MB.
    out = pd.concat(parts, ignore_index=True).drop(columns=["power_w"])
    return _finish(out, ["hardware", "boundary", "group", "level", "module", "batch", "seq_len"], log)
