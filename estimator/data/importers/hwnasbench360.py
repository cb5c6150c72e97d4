"""HW-NAS-Bench-360: NAS-Bench-201 networks on a Raspberry Pi 5 core (training table, soc-core-rail-dynamic)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.importers._common import _finish, _need, _read_csv, _resolve, _round

HWNAS_CITATION = (
    "HW-NAS-Bench-360, github.com/roldebijvank/HW-NAS-Bench-360 @ a9b243e; "
    "NAS-Bench-201 (Dong & Yang, ICLR 2020)"
)

HWNAS_RUNTIMES = {"litert": "tflite", "onnx": "onnxruntime", "torchmobile": "torchscript-mobile"}


@dataclass(frozen=True)
class _Task:
    input_shape: str
    num_classes: int


HWNAS_TASKS = {
    "cifar100": _Task("3x32x32", 100),
    "ninapro": _Task("1x52x16", 18),
    "darcy": _Task("1x88x88", 1),
}
#: Average core-rail power (energy / latency) outside this band is physically implausible for one Cortex-A76
#: core running a float32 network (the bulk lies between 0.7 and 2.9 W); such rows are dropped.
HWNAS_POWER_BAND_W = (0.5, 5.0)


def import_hwnasbench360(path: Path) -> pd.DataFrame:
    """Raspberry Pi 5 rows of HW-NAS-Bench-360 (measured_unique_with_arch_str.csv) as a training table.

    Energy mJ -> J per inference (batch 1, idle-subtracted core rail), latency ms -> s, latency spread =
    sqrt(lat_ms_var) / lat_ms_median (lat_ms_var is the sample variance of 40 timed runs). Energy has one
    0.5 s window per row, so `repeats` is 1 and `spread_rel` is empty. Pixel rows (latency only) are dropped.
    """
    file = _resolve(path, "measured_unique_with_arch_str.csv")
    raw = _read_csv(file)
    _need(
        raw,
        ["arch_idx", "device", "framework", "task", "lat_ms_median", "lat_ms_var", "energy_mj", "arch_str"],
        file,
    )
    log: Counter[str] = Counter(rows_in=len(raw))
    pi = raw[raw["device"] == "pi5"]
    log["dropped: not pi5 (no energy)"] = len(raw) - len(pi)
    has_energy = pi["energy_mj"].notna() & (pi["energy_mj"] > 0)
    log["dropped: pi5 without energy"] = int((~has_energy).sum())
    pi = pi[has_energy]
    known = pi["framework"].isin(list(HWNAS_RUNTIMES)) & pi["task"].isin(list(HWNAS_TASKS))
    log["dropped: unknown runtime or task"] = int((~known).sum())
    pi = pi[known]
    watts = pi["energy_mj"] / pi["lat_ms_median"]
    low, high = HWNAS_POWER_BAND_W
    plausible = watts.between(low, high)
    log[f"dropped: energy/latency outside {low}-{high} W"] = int((~plausible).sum())
    pi = pi[plausible]

    tasks = pi["task"].map(HWNAS_TASKS)
    shapes = tasks.map(lambda t: t.input_shape)
    classes = tasks.map(lambda t: t.num_classes)
    joules = _round(pi["energy_mj"].to_numpy() / 1000.0)
    out = pd.DataFrame(
        {
            "model_ref": "nb201:"
            + pi["arch_str"]
            + ";C=16;N=5;classes="
            + classes.astype(str)
            + ";input="
            + shapes,
            "group": "nb201:" + pi["arch_idx"].astype(str),
            "family": "nb201",
            "task": pi["task"],
            "batch": 1,
            "dtype": "float32",
            "hardware": "rpi5",
            "runtime": pi["framework"].map(HWNAS_RUNTIMES),
            "boundary": "soc-core-rail-dynamic",
            "joules_per_inference": joules.to_numpy(),
            "joules_per_sample": joules.to_numpy(),
            "latency_s": _round(pi["lat_ms_median"].to_numpy() / 1000.0).to_numpy(),
            "idle_subtracted": True,
            "repeats": 1,
            "spread_rel": np.nan,
            "latency_spread_rel": _round(np.sqrt(pi["lat_ms_var"]) / pi["lat_ms_median"], 3).to_numpy(),
            "source": "hwnasbench360",
            "citation": HWNAS_CITATION,
            "input_shape": shapes,
            "num_classes": classes,
            "device_name": "Raspberry Pi 5 (one Cortex-A76 core, 1 thread)",
            "arch_idx": pi["arch_idx"].astype(int),
        }
    )
    log["rows_out"] = len(out)
    out = _finish(out, ["arch_idx", "task", "runtime"], log)
    return out.drop(columns="arch_idx")
