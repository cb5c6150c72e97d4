"""Single-module graphs of Getzner et al. (2023), "Accuracy is not the only metric that matters".

Their data collectors (github.com/JohannesGetzner/dl-energy-estimator, ``data_collectors/*.py``) time one
``torch.nn`` module in eval mode on a ``torch.rand`` input. The input shapes, from ``generate_data``:

============  ==================================================  =========================================
module        torch module                                        input
============  ==================================================  =========================================
Conv2d        ``Conv2d(in, out, kernel, stride, padding)``, bias  ``batch x in x image x image``
Linear        ``Linear(input_size, output_size)``, bias           ``batch x input_size``
MaxPool2d     ``MaxPool2d(kernel, stride, padding)``              ``batch x in_channels x image x image``
ReLU/Sigmoid  ``ReLU()`` / ``Sigmoid()`` / ``Tanh()``             ``batch x input_size``
Tanh
Softmax       ``Softmax(dim=1)``                                  ``batch x input_size``
============  ==================================================  =========================================

so ``input_size`` of an activation is the element count per sample. Their ``macs`` column (ptflops, plus
their own formula for max-pooling) matches these shapes on every record: Conv2d ``out_elements * (in *
k^2 + 1)``, Linear ``batch * (in + 1) * out``, ReLU ``batch * input_size``, MaxPool2d
``batch * channels * H'^2 * k^2 / 2``.
"""

from __future__ import annotations

import onnx

from estimator.errors import DataError
from estimator.zoo._layers import Conv2d, Linear, MaxPool2d, ReLU, Sigmoid, Softmax, Tanh, single_layer_model

#: Activation modules Getzner et al. measured, by the lower-case name used in specs.
ACTIVATIONS = {"relu": ReLU(), "sigmoid": Sigmoid(), "softmax": Softmax(dim=1), "tanh": Tanh()}


def _positive(what: str, **values: int) -> None:
    bad = {k: v for k, v in values.items() if v < 1}
    if bad:
        raise DataError(f"{what}: {', '.join(f'{k}={v}' for k, v in bad.items())} must be positive")


def getzner_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    image_size: int,
    batch: int = 1,
    *,
    dtype: str = "float32",
    weights: str = "zeros",
) -> onnx.ModelProto:
    """``nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)`` (bias) on a square image.

    Input ``batch x in_channels x image_size x image_size`` (pixels); output named ``output``.
    Raises DataError for non-positive sizes, negative padding or a kernel that does not fit.
    """
    _positive(
        "Conv2d",
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_size,
        stride=stride,
        image_size=image_size,
        batch=batch,
    )
    if padding < 0:
        raise DataError(f"Conv2d: padding={padding} must be 0 or more")
    layer = Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=True)
    shape = (batch, in_channels, image_size, image_size)
    return single_layer_model(layer, shape, name="getzner_conv2d", dtype=dtype, weights=weights)


def getzner_linear(
    in_features: int, out_features: int, batch: int = 1, *, dtype: str = "float32", weights: str = "zeros"
) -> onnx.ModelProto:
    """``nn.Linear(in_features, out_features)`` (bias) on a ``batch x in_features`` input."""
    _positive("Linear", in_features=in_features, out_features=out_features, batch=batch)
    layer = Linear(in_features, out_features)
    return single_layer_model(
        layer, (batch, in_features), name="getzner_linear", dtype=dtype, weights=weights
    )


def getzner_maxpool2d(
    channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    image_size: int,
    batch: int = 1,
    *,
    dtype: str = "float32",
    weights: str = "zeros",
) -> onnx.ModelProto:
    """``nn.MaxPool2d(kernel_size, stride, padding)`` on ``batch x channels x image_size x image_size``.

    Raises DataError for non-positive sizes, a padding above half the kernel or a window that does not fit.
    """
    _positive(
        "MaxPool2d",
        channels=channels,
        kernel_size=kernel_size,
        stride=stride,
        image_size=image_size,
        batch=batch,
    )
    if padding < 0:
        raise DataError(f"MaxPool2d: padding={padding} must be 0 or more")
    layer = MaxPool2d(kernel_size, stride, padding)
    shape = (batch, channels, image_size, image_size)
    return single_layer_model(layer, shape, name="getzner_maxpool2d", dtype=dtype, weights=weights)


def getzner_activation(
    kind: str, size: int, batch: int = 1, *, dtype: str = "float32", weights: str = "zeros"
) -> onnx.ModelProto:
    """An activation module (``relu``, ``sigmoid``, ``softmax`` over dim 1, ``tanh``) on ``batch x size``."""
    if kind not in ACTIVATIONS:
        raise DataError(
            f"activation {kind!r} is not one Getzner et al. measured; use one of {', '.join(ACTIVATIONS)}"
        )
    _positive(kind, size=size, batch=batch)
    return single_layer_model(
        ACTIVATIONS[kind], (batch, size), name=f"getzner_{kind}", dtype=dtype, weights=weights
    )
