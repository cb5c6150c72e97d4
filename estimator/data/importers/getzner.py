"""Getzner et al.: single PyTorch layers and AlexNet / VGG on 2x Xeon Gold 5120 (training table, cpu-package-rapl)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.importers._common import _finish, _need, _read_csv, _resolve, _round
from estimator.errors import DataError

GETZNER_CITATION = (
    "Getzner, Charpentier, Guennemann, 'Accuracy is not the only metric that matters', arXiv 2304.00897; "
    "github.com/JohannesGetzner/dl-energy-estimator @ 2279b0a"
)

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
