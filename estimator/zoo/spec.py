"""Model references of the measurement tables: ``<kind>:<main>[;key=value]*`` -> ``onnx.ModelProto``.

The grammar is documented in :mod:`estimator.zoo`. The batch size is not part of a spec; it is given apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import onnx

from estimator.errors import DataError
from estimator.zoo.getzner import (
    ACTIVATIONS,
    getzner_activation,
    getzner_conv2d,
    getzner_linear,
    getzner_maxpool2d,
)
from estimator.zoo.hf_models import hf_model
from estimator.zoo.nasbench201 import nasbench201
from estimator.zoo.torchvision_models import MODELS, torchvision_layer, torchvision_model

#: NAS-Bench-201 / HW-NAS-Bench(-360) tasks: per-sample input (channels, height, width) and outputs.
NB201_TASKS: Mapping[str, tuple[tuple[int, int, int], int]] = {
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
    "ImageNet16-120": ((3, 16, 16), 120),
    "ninapro": ((1, 52, 16), 18),
    "darcy": ((1, 88, 88), 1),
}

# Keys of each spec: name -> default (None: required; "": optional without a default).
_NB201_KEYS: dict[str, str | None] = {
    "C": "16",
    "N": "5",
    "classes": "10",
    "input": "3x32x32",
    "fold_bn": "0",
}
_GETZNER_KEYS: dict[str, dict[str, str | None]] = {
    "conv2d": {"in": None, "out": None, "kernel": None, "stride": "1", "padding": "0", "image": None},
    "linear": {"in": None, "out": None},
    "maxpool2d": {"channels": None, "kernel": None, "stride": None, "padding": "0", "image": None},
    **{name: {"size": None} for name in ACTIVATIONS},
}
_TORCHVISION_KEYS: dict[str, str | None] = {"layer": ""}
_HF_KEYS: dict[str, str | None] = {"seq": None}


def _split(spec: str) -> tuple[str, str, dict[str, str]]:
    kind, colon, rest = spec.strip().partition(":")
    if not colon or not kind or not rest:
        raise DataError(f"model spec {spec!r} is not '<kind>:<main>[;key=value]*' (e.g. 'torchvision:vgg11')")
    main, *pairs = rest.split(";")
    keys: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise DataError(f"model spec {spec!r}: {pair!r} is not 'key=value'")
        if key in keys:
            raise DataError(f"model spec {spec!r}: key {key!r} is given twice")
        keys[key] = value
    return kind.strip(), main.strip(), keys


def _resolve(spec: str, keys: dict[str, str], allowed: Mapping[str, str | None]) -> dict[str, str]:
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise DataError(
            f"model spec {spec!r}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    missing = [k for k, default in allowed.items() if default is None and k not in keys]
    if missing:
        raise DataError(f"model spec {spec!r}: missing key(s) {', '.join(missing)}")
    return {k: keys.get(k, default or "") for k, default in allowed.items() if k in keys or default}


def _int(spec: str, key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"model spec {spec!r}: {key}={value!r} is not an integer") from None


def _dims(spec: str, value: str) -> tuple[int, ...]:
    parts = value.lower().split("x")
    if len(parts) != 3:
        raise DataError(f"model spec {spec!r}: input={value!r} is not CxHxW (e.g. 3x32x32)")
    return tuple(_int(spec, "input", p) for p in parts)


def _flag(spec: str, key: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise DataError(f"model spec {spec!r}: {key}={value!r} must be 0 or 1")
    return value == "1"


def build_from_spec(
    spec: str, batch: int = 1, *, dtype: str = "float32", weights: str = "zeros"
) -> onnx.ModelProto:
    """Build the model a spec string names, for ``batch`` samples (see :mod:`estimator.zoo` for the grammar).

    Args:
        spec: e.g. ``nb201:|nor_conv_3x3~0|+|...|;classes=100;input=3x32x32``,
            ``getzner:linear;in=4096;out=1000``, ``torchvision:vgg16``, ``torchvision:alexnet;layer=15``,
            ``hf:bert-base-uncased;seq=128`` (see estimator.zoo.hf_models).
        batch: the static leading dimension (samples per inference).
        dtype: ``float32`` or ``float16``. weights: ``zeros`` (light) or ``random`` (runnable, real values).

    Raises:
        DataError: the spec is malformed or names an impossible network; the message quotes the spec.
    """
    kind, main, keys = _split(spec)
    common: dict[str, Any] = {"dtype": dtype, "weights": weights}
    try:
        if kind == "nb201":
            v = _resolve(spec, keys, _NB201_KEYS)
            return nasbench201(
                main,
                C=_int(spec, "C", v["C"]),
                N=_int(spec, "N", v["N"]),
                num_classes=_int(spec, "classes", v["classes"]),
                input_shape=(batch, *_dims(spec, v["input"])),
                fold_batchnorm=_flag(spec, "fold_bn", v["fold_bn"]),
                **common,
            )
        if kind == "getzner":
            if main not in _GETZNER_KEYS:
                raise DataError(
                    f"model spec {spec!r}: getzner module {main!r} unknown; use one of "
                    f"{', '.join(_GETZNER_KEYS)}"
                )
            v = _resolve(spec, keys, _GETZNER_KEYS[main])
            n = {k: _int(spec, k, s) for k, s in v.items()}
            builders: dict[str, Callable[[], onnx.ModelProto]] = {
                "conv2d": lambda: getzner_conv2d(
                    n["in"], n["out"], n["kernel"], n["stride"], n["padding"], n["image"], batch, **common
                ),
                "linear": lambda: getzner_linear(n["in"], n["out"], batch, **common),
                "maxpool2d": lambda: getzner_maxpool2d(
                    n["channels"], n["kernel"], n["stride"], n["padding"], n["image"], batch, **common
                ),
            }
            if main in builders:
                return builders[main]()
            return getzner_activation(main, n["size"], batch, **common)
        if kind == "torchvision":
            v = _resolve(spec, keys, _TORCHVISION_KEYS)
            if "layer" in v:
                return torchvision_layer(main, _int(spec, "layer", v["layer"]), batch, **common)
            return torchvision_model(main, batch, **common)
        if kind == "hf":
            v = _resolve(spec, keys, _HF_KEYS)
            if dtype != "float32" or weights != "zeros":
                raise DataError("hf specs build float32 graphs with absent external weights only")
            return hf_model(main, batch, _int(spec, "seq", v["seq"]))
    except DataError as err:
        if spec in str(err):
            raise
        raise DataError(f"model spec {spec!r}: {err}") from None
    raise DataError(f"model spec {spec!r}: unknown kind {kind!r}; use nb201, getzner, torchvision or hf")


def spec_for_nasbench201(arch_str: str, task: str, *, fold_batchnorm: bool = False) -> str:
    """The spec of NAS-Bench-201 ``TinyNetwork(C=16, N=5)`` with ``arch_str`` for one task.

    Tasks: cifar10, cifar100, ImageNet16-120 (HW-NAS-Bench) and ninapro, darcy (HW-NAS-Bench-360, whose stem
    conv takes 1 channel and whose darcy head has 1 output); see :data:`NB201_TASKS`.
    """
    if task not in NB201_TASKS:
        raise DataError(f"NAS-Bench-201 task {task!r} is not known; use one of {', '.join(NB201_TASKS)}")
    (c, h, w), classes = NB201_TASKS[task]
    spec = f"nb201:{arch_str.strip()};C=16;N=5;classes={classes};input={c}x{h}x{w}"
    return spec + ";fold_bn=1" if fold_batchnorm else spec


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value != ""


def _as_int(record: Mapping[str, Any], column: str) -> int:
    value = record.get(column)
    if not _present(value):
        raise DataError(f"Getzner record: column {column!r} is empty; {dict(record)}")
    number = float(value)
    if not number.is_integer():
        raise DataError(f"Getzner record: column {column!r}={value!r} is not a whole number")
    return int(number)


def spec_for_getzner(record: Mapping[str, Any]) -> str:
    """The spec of the network one record of ``getzner_tidy_DERIVED.csv`` measured (its batch is apart).

    Records with module hyper-parameters give ``getzner:`` specs; whole AlexNet/VGG runs give
    ``torchvision:<architecture>``; the layer-by-layer runs of ``0?_architectures-layerwise-raw.csv``, which
    number layers from 1 (0 is the whole model) and carry no hyper-parameters, give
    ``torchvision:<architecture>;layer=<layer_idx - 1>``, checked against the record's module type.
    """
    module = str(record.get("module", ""))
    arch = record.get("architecture")
    if module in ("AlexNet", "VGG"):
        if not _present(arch) or str(arch) not in MODELS:
            raise DataError(f"Getzner record of a whole {module} names no known architecture: {arch!r}")
        return f"torchvision:{arch}"
    if module == "Conv2d" and _present(record.get("kernel_size")):
        n = {
            c: _as_int(record, c)
            for c in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "image_size")
        }
        return (
            f"getzner:conv2d;in={n['in_channels']};out={n['out_channels']};kernel={n['kernel_size']};"
            f"stride={n['stride']};padding={n['padding']};image={n['image_size']}"
        )
    if module == "MaxPool2d" and _present(record.get("kernel_size")):
        n = {c: _as_int(record, c) for c in ("in_channels", "kernel_size", "stride", "padding", "image_size")}
        return (
            f"getzner:maxpool2d;channels={n['in_channels']};kernel={n['kernel_size']};stride={n['stride']};"
            f"padding={n['padding']};image={n['image_size']}"
        )
    if module == "Linear" and _present(record.get("input_size")):
        return f"getzner:linear;in={_as_int(record, 'input_size')};out={_as_int(record, 'output_size')}"
    if module.lower() in ACTIVATIONS and _present(record.get("input_size")):
        return f"getzner:{module.lower()};size={_as_int(record, 'input_size')}"
    if _present(arch) and _present(record.get("layer_idx")):
        if str(arch) not in MODELS:
            raise DataError(f"Getzner record names architecture {arch!r}; known: {', '.join(MODELS)}")
        index = _as_int(record, "layer_idx") - 1
        layers = MODELS[str(arch)]
        if not 0 <= index < len(layers) or type(layers[index]).__name__ != module:
            raise DataError(f"Getzner record: layer_idx {index + 1} of {arch} is not a {module}")
        return f"torchvision:{arch};layer={index}"
    raise DataError(
        f"Getzner record of module {module!r} has neither hyper-parameters nor an architecture layer"
    )
