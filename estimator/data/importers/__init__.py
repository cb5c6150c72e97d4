"""Importers: turn the shared raw data sets into compact measurement tables (see estimator.data.measurements).

One importer per source, registered in `IMPORTERS`; `import_source(source, path)` dispatches. `path` is the
source's folder under shared/datasets/ or its main file. Every importer is deterministic: the same input
gives the same rows, in the same (sorted) order, with floats rounded to `SIGNIFICANT_DIGITS` significant
digits. What an importer dropped and why is recorded in ``frame.attrs["import_log"]`` (counts by reason).

Sources and what they become (data/PROVENANCE.md has the details):

- ``hwnasbench360``: NAS-Bench-201 networks on a Raspberry Pi 5 core, three runtimes, three tasks
  (training table; boundary soc-core-rail-dynamic).
- ``getzner``: single PyTorch layers and AlexNet / VGG11 / VGG13 on 2x Xeon Gold 5120, RAPL package energy
  (training table; boundary cpu-package-rapl).
- ``mlperf_power``: MLPerf Inference (datacenter, edge) and Tiny power results, whole system at the wall
  (validation table; boundary wall-system).
- ``mlenergy``: ML.ENERGY leaderboard v1-v3, GPU energy of LLM and diffusion serving (validation table;
  boundary gpu-board-nvml).

Run ``python -m estimator.data.importers SOURCE RAW_PATH OUT_PATH`` to write a table.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.measurements import SCHEMA, TableKind, write_measurements
from estimator.errors import DataError, InputFileError

__all__ = [
    "IMPORTERS",
    "SIGNIFICANT_DIGITS",
    "TABLE_KINDS",
    "getzner_layer_specs",
    "import_source",
    "main",
]

#: Significant digits kept for measured floats (the repeat-to-repeat noise is far above 1e-6).
SIGNIFICANT_DIGITS = 6

HWNAS_CITATION = (
    "HW-NAS-Bench-360, github.com/roldebijvank/HW-NAS-Bench-360 @ a9b243e; "
    "NAS-Bench-201 (Dong & Yang, ICLR 2020)"
)
GETZNER_CITATION = (
    "Getzner, Charpentier, Guennemann, 'Accuracy is not the only metric that matters', arXiv 2304.00897; "
    "github.com/JohannesGetzner/dl-energy-estimator @ 2279b0a"
)
MLPERF_CITATION = (
    "MLCommons MLPerf Inference/Tiny Power results via Tschand et al., 'MLPerf Power', HPCA 2025, "
    "arXiv 2410.12032; github.com/aryatschand/MLPerf-Power-HPCA-2025 @ 49b63de"
)
MLENERGY_CITATION = (
    "ML.ENERGY Leaderboard (Chung et al.), github.com/ml-energy/leaderboard-v2 @ c3af7f3 (v1, v2), "
    "github.com/ml-energy/leaderboard @ 0cd52da (v3)"
)


def _round(values: pd.Series | np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> pd.Series:
    """Round to `digits` significant digits; NaN stays NaN."""
    array = np.asarray(values, dtype=float)
    out = np.full_like(array, np.nan)
    finite = np.isfinite(array) & (array != 0)
    magnitude = np.floor(np.log10(np.abs(array[finite])))
    scale = 10.0 ** (digits - 1 - magnitude)
    out[finite] = np.round(array[finite] * scale) / scale
    out[array == 0] = 0.0
    index = values.index if isinstance(values, pd.Series) else None
    return pd.Series(out, index=index)


def _resolve(path: Path, default_file: str) -> Path:
    """The source file: `path` itself, or `default_file` inside the folder `path`."""
    path = Path(path)
    if path.is_dir():
        path = path / default_file
    if not path.is_file():
        raise InputFileError(f"{path} does not exist; give the data set folder or its {default_file}")
    return path


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        reason = " ".join(str(err).split())  # pandas' messages may span lines
        raise DataError(
            f"{path} is not the expected CSV ({reason}); check that it is the shared file"
        ) from None


def _need(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks columns {', '.join(missing)}; is it the right source file?")


def _finish(frame: pd.DataFrame, sort_by: Sequence[str], log: dict[str, int]) -> pd.DataFrame:
    """Schema column order, sorted rows, fresh index, log attached."""
    order = [c.name for c in SCHEMA if c.name in frame.columns]
    extra = [c for c in frame.columns if c not in order]
    out = frame[order + extra].sort_values(list(sort_by), kind="mergesort").reset_index(drop=True)
    out.attrs["import_log"] = dict(log)
    return out


# ------------------------------------------------------------------------------------ HW-NAS-Bench-360

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


# --------------------------------------------------------------------------------------------- Getzner

GETZNER_MODULES = {
    "Conv2d": "conv2d",
    "Linear": "linear",
    "MaxPool2d": "maxpool2d",
    "ReLU": "relu",
    "Sigmoid": "sigmoid",
    "Softmax": "softmax",
    "Tanh": "tanh",
    "AdaptiveAvgPool2d": "adaptiveavgpool2d",
    "Dropout": "dropout",
}
_LAYER_KINDS = {
    "Conv2d": "conv",
    "MaxPool2d": "maxpool",
    "AdaptiveAvgPool2d": "avgpool",
    "Linear": "linear",
    "ReLU": "relu",
    "Dropout": "dropout",
}
GETZNER_WHOLE = {
    "alexnet": ("AlexNet", "torchvision:alexnet"),
    "vgg11": ("VGG", "torchvision:vgg11"),
    "vgg13": ("VGG", "torchvision:vgg13"),
}

# torchvision layer lists (torchvision/models/alexnet.py and vgg.py, configs "A" = vgg11, "B" = vgg13):
# ("conv", out, kernel, stride, padding), ("relu",), ("maxpool", kernel, stride), ("avgpool", out),
# ("dropout",), ("linear", out).
_ALEXNET = [
    ("conv", 64, 11, 4, 2), ("relu",), ("maxpool", 3, 2),
    ("conv", 192, 5, 1, 2), ("relu",), ("maxpool", 3, 2),
    ("conv", 384, 3, 1, 1), ("relu",), ("conv", 256, 3, 1, 1), ("relu",), ("conv", 256, 3, 1, 1), ("relu",),
    ("maxpool", 3, 2), ("avgpool", 6),
    ("dropout",), ("linear", 4096), ("relu",), ("dropout",), ("linear", 4096), ("relu",), ("linear", 1000),
]  # fmt: skip
_VGG_CLASSIFIER = [
    ("avgpool", 7), ("linear", 4096), ("relu",), ("dropout",), ("linear", 4096), ("relu",), ("dropout",),
    ("linear", 1000),
]  # fmt: skip
_VGG_CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
}


def _vgg(name: str) -> list[tuple]:
    layers: list[tuple] = []
    for item in _VGG_CFG[name]:
        layers += [("maxpool", 2, 2)] if item == "M" else [("conv", item, 3, 1, 1), ("relu",)]
    return layers + _VGG_CLASSIFIER


@dataclass(frozen=True)
class LayerSpec:
    """One leaf layer of a torchvision network: its kind, per-sample input shape and MACs per sample.

    MACs follow the source's counting of a layer measured alone (ptflops; bias adds included; MaxPool2d
    counted as k*k*outputs/2; ReLU and AdaptiveAvgPool2d as one per output element; Dropout as zero).
    `input_elements` per sample is what ptflops counts for a MaxPool2d inside a whole network.
    """

    module: str
    input_shape: str
    macs_per_sample: int
    input_elements: int

    @property
    def macs_in_network(self) -> int:
        """MACs per sample as ptflops counts this layer inside the whole network (pooling: input elements)."""
        return self.input_elements if self.module == "maxpool" else self.macs_per_sample


def getzner_layer_specs(architecture: str) -> list[LayerSpec]:
    """Leaf layers of torchvision `architecture` (alexnet, vgg11, vgg13) at 3x224x224, in forward order.

    Element i is layer_idx i + 1 of the Getzner layer-wise runs (layer_idx 0 is the whole network), which
    estimator.zoo names ``torchvision:<architecture>;layer=<i>``.
    """
    if architecture == "alexnet":
        table = _ALEXNET
    elif architecture in _VGG_CFG:
        table = _vgg(architecture)
    else:
        raise DataError(f"unknown Getzner architecture {architecture!r}; expected alexnet, vgg11 or vgg13")
    channels, size, flat = 3, 224, None
    out: list[LayerSpec] = []
    for layer in table:
        kind = layer[0]
        shape = f"{flat}" if flat is not None else f"{channels}x{size}x{size}"
        elements = flat if flat is not None else channels * size * size
        if kind == "conv":
            _, c_out, k, s, p = layer
            h_out = (size + 2 * p - k) // s + 1
            macs = c_out * h_out * h_out * (channels * k * k + 1)
            channels, size = c_out, h_out
        elif kind == "maxpool":
            _, k, s = layer
            h_out = (size - k) // s + 1
            macs = k * k * h_out * h_out * channels // 2
            size = h_out
        elif kind == "avgpool":
            target = layer[1]
            macs = channels * target * target
            flat = channels * target * target
        elif kind == "linear":
            c_out = layer[1]
            macs = elements * c_out + c_out
            flat = c_out
        elif kind == "relu":
            macs = elements
        else:
            macs = 0
        out.append(LayerSpec(kind, shape, macs, elements))
    return out


def _conv_spec(c_in: int, c_out: int, kernel: int, stride: int, padding: int, image: int) -> str:
    shape = f"kernel={kernel};stride={stride};padding={padding};image={image}"
    return f"getzner:conv2d;in={c_in};out={c_out};{shape}"


def _linear_spec(n_in: int, n_out: int) -> str:
    return f"getzner:linear;in={n_in};out={n_out}"


def _maxpool_spec(channels: int, kernel: int, stride: int, padding: int, image: int) -> str:
    shape = f"kernel={kernel};stride={stride};padding={padding};image={image}"
    return f"getzner:maxpool2d;channels={channels};{shape}"


def _activation_spec(kind: str, size: int) -> str:
    """An element-wise layer on a (batch, size) input, as Getzner's activation runs used."""
    return f"getzner:{kind};size={size}"


def _module_formula_macs(row: pd.Series) -> float:
    """MACs of one forward pass of a random single-layer row by the module formula (ptflops convention)."""
    b = row["batch_size"]
    module = row["module"]
    if module == "Conv2d":
        h = math.floor((row["image_size"] + 2 * row["padding"] - row["kernel_size"]) / row["stride"]) + 1
        k2 = row["kernel_size"] ** 2
        return b * row["out_channels"] * h * h * (row["in_channels"] * k2 + 1)
    if module == "Linear":
        return b * (row["input_size"] * row["output_size"] + row["output_size"])
    if module == "MaxPool2d":
        h = math.floor((row["image_size"] - row["kernel_size"] + 2 * row["padding"]) / row["stride"] + 1)
        return math.floor(row["kernel_size"] ** 2 * h * h * row["in_channels"] * b / 2)
    if module == "ReLU":
        return b * row["input_size"]
    return 0.0


def _single_layer_spec(row: pd.Series) -> tuple[str, str]:
    """(spec, per-sample input shape) of a layer row that carries its own hyper-parameters."""
    module = row["module"]
    as_int = {k: int(row[k]) for k in row.index if k in _INT_FIELDS and pd.notna(row[k])}
    if module == "Conv2d":
        shape = f"{as_int['in_channels']}x{as_int['image_size']}x{as_int['image_size']}"
        spec = _conv_spec(
            as_int["in_channels"],
            as_int["out_channels"],
            as_int["kernel_size"],
            as_int["stride"],
            as_int["padding"],
            as_int["image_size"],
        )
        return spec, shape
    if module == "MaxPool2d":
        shape = f"{as_int['in_channels']}x{as_int['image_size']}x{as_int['image_size']}"
        spec = _maxpool_spec(
            as_int["in_channels"],
            as_int["kernel_size"],
            as_int["stride"],
            as_int["padding"],
            as_int["image_size"],
        )
        return spec, shape
    if module == "Linear":
        return _linear_spec(as_int["input_size"], as_int["output_size"]), str(as_int["input_size"])
    return _activation_spec(GETZNER_MODULES[module], as_int["input_size"]), str(as_int["input_size"])


_INT_FIELDS = frozenset(
    {
        "image_size",
        "kernel_size",
        "in_channels",
        "out_channels",
        "stride",
        "padding",
        "input_size",
        "output_size",
    }
)
_GETZNER_CONFIG = [
    "source_file",
    "module",
    "macs",
    "batch_size",
    "input_size",
    "architecture",
    "layer_idx",
    "image_size",
    "kernel_size",
    "in_channels",
    "out_channels",
    "stride",
    "padding",
    "output_size",
]


def import_getzner(path: Path) -> pd.DataFrame:
    """Getzner et al. CPU inference energies (getzner_tidy_DERIVED.csv) as a training table.

    One row per configuration: the mean of its 3 repetitions of cpu_J_per_forward_pass (RAPL package energy
    of a 30 s loop / forward passes; idle not subtracted), `spread_rel` = (max - min) / median over the 3,
    latency = mean of duration / forward passes. Whole AlexNet / VGG11 / VGG13 runs become
    ``torchvision:<name>``; their layers keep `architecture` and `layer_idx` (0 = whole network).
    """
    file = _resolve(path, "getzner_tidy_DERIVED.csv")
    raw = _read_csv(file)
    _need(
        raw,
        [*_GETZNER_CONFIG, "rep_no", "timestamp", "duration_s", "forward_passes", "cpu_J_per_forward_pass"],
        file,
    )
    log: Counter[str] = Counter(rows_in=len(raw))
    raw = raw.copy()
    raw["block"] = (raw["rep_no"] == 1).cumsum()
    sizes = raw.groupby("block")["rep_no"].agg(list)
    complete = sizes.map(lambda reps: reps == [1, 2, 3])
    if not complete.all():
        first = int(sizes.index[~complete][0])
        raise DataError(f"{file}: configuration block {first} does not hold repetitions 1, 2, 3 in order")
    configs = raw.groupby("block")[_GETZNER_CONFIG].nunique(dropna=False)
    if (configs > 1).any(axis=None):
        raise DataError(f"{file}: the 3 repetitions of a configuration differ in their settings")
    raw["latency"] = raw["duration_s"] / raw["forward_passes"]
    blocks = raw.groupby("block")
    first_rows = blocks.first()
    energy = blocks["cpu_J_per_forward_pass"]
    agg = first_rows[_GETZNER_CONFIG].copy()
    agg["joules"] = energy.mean()
    agg["spread"] = (energy.max() - energy.min()) / energy.median()
    agg["latency"] = blocks["latency"].mean()
    agg["measured_at"] = first_rows["timestamp"].str.slice(0, 10)
    # codecarbon's cpu_count: under Slurm, the CPUs the job was given, which bounds PyTorch's threads.
    agg["threads"] = first_rows.get("cpu_count", pd.NA)
    unknown = ~agg["module"].isin([*GETZNER_MODULES, "AlexNet", "VGG"])
    log["dropped: unknown module"] = int(unknown.sum())
    agg = agg[~unknown]

    layerwise = agg["source_file"].str.contains("architectures-layerwise", regex=False)
    whole = agg["module"].isin(["AlexNet", "VGG"])
    in_arch = agg["architecture"].notna()
    arch_config = in_arch & ~layerwise & ~whole & ~agg["source_file"].str.contains("02_architectures")
    # Layer-config files number layers from 0 without the whole network; the layer-wise runs from 1.
    agg.loc[arch_config, "layer_idx"] = agg.loc[arch_config, "layer_idx"] + 1

    specs: list[str] = []
    shapes: list[str] = []
    macs_expected: list[float] = []
    tables = {name: getzner_layer_specs(name) for name in GETZNER_WHOLE}
    for _, row in agg.iterrows():
        if row["module"] in ("AlexNet", "VGG"):
            specs.append(GETZNER_WHOLE[row["architecture"]][1])
            shapes.append("3x224x224")
            layers = tables[row["architecture"]]
            macs_expected.append(row["batch_size"] * sum(layer.macs_in_network for layer in layers))
        elif pd.notna(row["architecture"]):
            layer = tables[row["architecture"]][int(row["layer_idx"]) - 1]
            if layer.module != _LAYER_KINDS[row["module"]]:
                raise DataError(
                    f"{file}: {row['architecture']} layer {int(row['layer_idx'])} is {row['module']} in the "
                    f"data but {layer.module} in the torchvision layer table"
                )
            specs.append(f"torchvision:{row['architecture']};layer={int(row['layer_idx']) - 1}")
            shapes.append(layer.input_shape)
            macs_expected.append(row["batch_size"] * layer.macs_per_sample)
        else:
            spec, shape = _single_layer_spec(row)
            specs.append(spec)
            shapes.append(shape)
            macs_expected.append(_module_formula_macs(row))
    agg["model_ref"] = specs
    agg["input_shape"] = shapes
    expected = np.asarray(macs_expected, dtype=float)
    mismatch = ~np.isclose(agg["macs"].to_numpy(dtype=float), expected, rtol=1e-9, atol=0.5)
    log["checked: macs match the module formula"] = int((~mismatch).sum())
    log["checked: macs differ from the module formula"] = int(mismatch.sum())

    family = agg["module"].map(GETZNER_MODULES).fillna(agg["module"])
    out = pd.DataFrame(
        {
            "model_ref": agg["model_ref"],
            "group": agg["architecture"].where(in_arch, agg["model_ref"]),
            "family": family,
            "task": np.where(in_arch, "imagenet", "random-layer"),
            "batch": agg["batch_size"].astype(int),
            "dtype": "float32",
            "hardware": "xeon-gold-5120",
            "runtime": "pytorch-cpu",
            "boundary": "cpu-package-rapl",
            "joules_per_inference": _round(agg["joules"]),
            "joules_per_sample": _round(agg["joules"] / agg["batch_size"]),
            "latency_s": _round(agg["latency"]),
            "idle_subtracted": False,
            "repeats": 3,
            "spread_rel": _round(agg["spread"], 3),
            "threads": agg["threads"].astype("Int64"),
            "source": "getzner",
            "citation": GETZNER_CITATION,
            "measured_at": agg["measured_at"],
            "input_shape": agg["input_shape"],
            "num_classes": np.where(whole, 1000, pd.NA),
            "architecture": agg["architecture"],
            "layer_idx": agg["layer_idx"].astype("Int64"),
            "macs": agg["macs"].astype(float),
            "device_name": "2x Intel Xeon Gold 5120 @ 2.20GHz",
            "source_file": agg["source_file"].str.replace("raw/", "", regex=False),
        }
    )
    out["num_classes"] = out["num_classes"].astype("Int64")
    log["rows_out"] = len(out)
    return _finish(out, ["source_file", "architecture", "family", "model_ref", "batch", "layer_idx"], log)


# ---------------------------------------------------------------------------------------- MLPerf Power

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


# ------------------------------------------------------------------------------------------- ML.ENERGY

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


# -------------------------------------------------------------------------------------------- dispatch

IMPORTERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "hwnasbench360": import_hwnasbench360,
    "getzner": import_getzner,
    "mlperf_power": import_mlperf_power,
    "mlenergy": import_mlenergy,
}
TABLE_KINDS: dict[str, TableKind] = {
    "hwnasbench360": "training",
    "getzner": "training",
    "mlperf_power": "validation",
    "mlenergy": "validation",
}


def import_source(source: str, path: Path) -> pd.DataFrame:
    """Import one shared data set as a measurement table (energies in J, latencies in s).

    `source` is one of `IMPORTERS`; `path` is the data set folder or its main file. The counts of what was
    dropped and why are in ``frame.attrs["import_log"]``.
    """
    try:
        importer = IMPORTERS[source]
    except KeyError:
        raise DataError(f"unknown data source {source!r}; choose one of {', '.join(IMPORTERS)}") from None
    return importer(Path(path))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m estimator.data.importers SOURCE RAW_PATH OUT_PATH``: import and write one table."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        sys.stderr.write("usage: python -m estimator.data.importers SOURCE RAW_PATH OUT_PATH\n")
        return 2
    source, raw_path, out_path = args
    frame = import_source(source, Path(raw_path))
    write_measurements(frame, Path(out_path), table=TABLE_KINDS[source])
    for reason, count in frame.attrs.get("import_log", {}).items():
        sys.stdout.write(f"{reason}: {count}\n")
    sys.stdout.write(f"wrote {len(frame)} rows to {out_path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
