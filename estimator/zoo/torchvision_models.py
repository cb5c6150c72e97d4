"""torchvision's AlexNet and VGG11/13/16 (no batch norm) for 1000 classes on 3 x 224 x 224 images.

Each network is the list of its leaf modules in ``named_children`` order (``features``, ``avgpool``,
``classifier``), which is also how Getzner et al. number the layers they measured one by one (their
``traverse_architecture_and_return_module_configs``; index 0 is the first Conv2d). The whole model is exported
as ``torch.onnx.export`` does in eval mode: ``Dropout`` vanishes and ``torch.flatten(x, 1)`` becomes a
``Flatten`` between ``avgpool`` and ``classifier``. Published parameter counts (torchvision docs): AlexNet
61,100,840; VGG11 132,863,336; VGG13 133,047,848; VGG16 138,357,544.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from estimator.errors import DataError
from estimator.zoo._builder import GraphBuilder
from estimator.zoo._layers import (
    AdaptiveAvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    single_layer_model,
)

#: Input of every model here: channels, height, width (pixels).
IMAGE_SHAPE = (3, 224, 224)
NUM_CLASSES = 1000

_ALEXNET: tuple[Layer, ...] = (
    Conv2d(3, 64, 11, 4, 2),
    ReLU(),
    MaxPool2d(3, 2),
    Conv2d(64, 192, 5, 1, 2),
    ReLU(),
    MaxPool2d(3, 2),
    Conv2d(192, 384, 3, 1, 1),
    ReLU(),
    Conv2d(384, 256, 3, 1, 1),
    ReLU(),
    Conv2d(256, 256, 3, 1, 1),
    ReLU(),
    MaxPool2d(3, 2),
    AdaptiveAvgPool2d(6),
    Dropout(0.5),
    Linear(256 * 6 * 6, 4096),
    ReLU(),
    Dropout(0.5),
    Linear(4096, 4096),
    ReLU(),
    Linear(4096, NUM_CLASSES),
)

#: torchvision's VGG configurations: output channels of each 3x3 conv, "M" for a 2x2 max-pool.
_VGG_CFGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


def _vgg(cfg: Sequence[int | str]) -> tuple[Layer, ...]:
    layers: list[Layer] = []
    channels = 3
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(2, 2))
        else:
            layers += [Conv2d(channels, int(v), 3, 1, 1), ReLU()]
            channels = int(v)
    return (
        *layers,
        AdaptiveAvgPool2d(7),
        Linear(512 * 7 * 7, 4096),
        ReLU(),
        Dropout(0.5),
        Linear(4096, 4096),
        ReLU(),
        Dropout(0.5),
        Linear(4096, NUM_CLASSES),
    )


#: Leaf modules of each model, in order.
MODELS: dict[str, tuple[Layer, ...]] = {"alexnet": _ALEXNET, **{k: _vgg(v) for k, v in _VGG_CFGS.items()}}


def _layers(name: str) -> tuple[Layer, ...]:
    if name not in MODELS:
        raise DataError(f"torchvision model {name!r} is not in the zoo; use one of {', '.join(MODELS)}")
    return MODELS[name]


def _check_batch(batch: int) -> None:
    if batch < 1:
        raise DataError(f"batch={batch} must be a positive number of images")


def torchvision_model(
    name: str, batch: int = 1, *, dtype: str = "float32", weights: str = "zeros"
) -> onnx.ModelProto:
    """The whole torchvision model ``name`` (alexnet, vgg11, vgg13, vgg16) for ``batch`` 224x224 images.

    Input ``input`` (batch x 3 x 224 x 224), output ``logits`` (batch x 1000). With ``weights="random"`` the
    model stores every weight (244 MB for AlexNet, 553 MB for VGG16 in float32).
    """
    layers = _layers(name)
    _check_batch(batch)
    b = GraphBuilder(name, dtype=dtype, weights=weights)
    x = b.input("input", (batch, *IMAGE_SHAPE))
    for layer in layers:
        if isinstance(layer, Dropout):
            continue
        x = layer.emit(b, x)
        if isinstance(layer, AdaptiveAvgPool2d):
            x = Flatten().emit(b, x)
    return b.model([x], doc=f"torchvision {name}, batch {batch}")


def torchvision_layer_count(name: str) -> int:
    """Number of leaf modules of torchvision model ``name`` (valid layer indices are 0..count-1)."""
    return len(_layers(name))


def torchvision_layer(
    name: str, index: int, batch: int = 1, *, dtype: str = "float32", weights: str = "zeros"
) -> onnx.ModelProto:
    """Leaf module ``index`` (0-based, Getzner et al.'s order) of torchvision model ``name`` alone.

    Its input has the shape that module sees inside the whole network for ``batch`` 224x224 images (a Linear
    gets the flattened ``batch x features``), as in Getzner et al.'s layer-by-layer measurements.
    """
    layers = _layers(name)
    _check_batch(batch)
    if not 0 <= index < len(layers):
        raise DataError(f"{name} has layers 0..{len(layers) - 1}; layer {index} does not exist")
    scratch = GraphBuilder(f"{name}_shapes")
    x = scratch.input("input", (batch, *IMAGE_SHAPE))
    for layer in layers[:index]:
        x = layer.emit(scratch, x)
        if isinstance(layer, AdaptiveAvgPool2d):
            x = Flatten().emit(scratch, x)
    layer = layers[index]
    return single_layer_model(
        layer, x.shape, name=f"{name}_layer{index}_{type(layer).__name__}", dtype=dtype, weights=weights
    )
