"""PyTorch ``nn`` modules written as the ONNX nodes ``torch.onnx.export`` (eval mode) gives for them.

Each layer is a frozen dataclass named after its ``torch.nn`` module, with the module's defaults, and
``emit(builder, x)`` appends its nodes for the input tensor ``x`` and returns the output tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx

from estimator.errors import DataError
from estimator.zoo._builder import GraphBuilder, Tensor, pooled_size


def _image(x: Tensor, what: str) -> tuple[int, int, int, int]:
    if len(x.shape) != 4:
        raise DataError(f"{what} needs an N x C x H x W input, got shape {x.shape}")
    n, c, h, w = x.shape
    return n, c, h, w


@dataclass(frozen=True)
class Conv2d:
    """``nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias)``, square, no groups."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    bias: bool = True

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append a ``Conv`` node; output N x out_channels x H' x W'."""
        n, c, h, w = _image(x, "Conv2d")
        if c != self.in_channels:
            raise DataError(f"Conv2d expects {self.in_channels} input channels, the input has {c}")
        k, s, p = self.kernel_size, self.stride, self.padding
        out_shape = (
            n,
            self.out_channels,
            pooled_size(h, k, s, p, "Conv2d"),
            pooled_size(w, k, s, p, "Conv2d"),
        )
        fan_in = c * k * k
        inputs = [x.name, b.weight("conv_weight", (self.out_channels, c, k, k), fan_in=fan_in)]
        if self.bias:
            inputs.append(b.weight("conv_bias", (self.out_channels,), fan_in=fan_in))
        return b.node(
            "Conv",
            inputs,
            out_shape,
            dilations=[1, 1],
            group=1,
            kernel_shape=[k, k],
            pads=[p, p, p, p],
            strides=[s, s],
        )


@dataclass(frozen=True)
class BatchNorm2d:
    """``nn.BatchNorm2d(num_features)`` in eval mode (affine, running statistics, eps 1e-5)."""

    num_features: int

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append a ``BatchNormalization`` node (scale, bias learned; mean, var buffers)."""
        c = self.num_features
        inputs = [
            x.name,
            b.weight("bn_scale", (c,), fill=1.0),
            b.weight("bn_bias", (c,)),
            b.weight("bn_mean", (c,)),
            b.weight("bn_var", (c,), fill=1.0),
        ]
        return b.node("BatchNormalization", inputs, x.shape, epsilon=1e-5, momentum=0.9)


@dataclass(frozen=True)
class ReLU:
    """``nn.ReLU()``."""

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append a ``Relu`` node (shared with an identical one on the same input)."""
        return b.node("Relu", [x.name], x.shape, share_key=("Relu", x.identity))


@dataclass(frozen=True)
class Sigmoid:
    """``nn.Sigmoid()``."""

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append a ``Sigmoid`` node."""
        return b.node("Sigmoid", [x.name], x.shape, share_key=("Sigmoid", x.identity))


@dataclass(frozen=True)
class Tanh:
    """``nn.Tanh()``."""

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append a ``Tanh`` node."""
        return b.node("Tanh", [x.name], x.shape, share_key=("Tanh", x.identity))


@dataclass(frozen=True)
class Softmax:
    """``nn.Softmax(dim)``."""

    dim: int = 1

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append a ``Softmax`` node over axis ``dim``."""
        return b.node("Softmax", [x.name], x.shape, axis=self.dim)


@dataclass(frozen=True)
class MaxPool2d:
    """``nn.MaxPool2d(kernel_size, stride, padding)``; ``stride`` None means the kernel size, as in torch."""

    kernel_size: int
    stride: int | None = None
    padding: int = 0

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append a ``MaxPool`` node (floor mode, dilation 1)."""
        n, c, h, w = _image(x, "MaxPool2d")
        k, p = self.kernel_size, self.padding
        s = k if self.stride is None else self.stride
        if 2 * p > k:
            raise DataError(f"MaxPool2d: padding {p} exceeds half the kernel {k}, which PyTorch refuses")
        out_shape = (n, c, pooled_size(h, k, s, p, "MaxPool2d"), pooled_size(w, k, s, p, "MaxPool2d"))
        return b.node(
            "MaxPool",
            [x.name],
            out_shape,
            ceil_mode=0,
            dilations=[1, 1],
            kernel_shape=[k, k],
            pads=[p, p, p, p],
            strides=[s, s],
        )


@dataclass(frozen=True)
class AvgPool2d:
    """``nn.AvgPool2d(kernel_size, stride, padding, count_include_pad)``."""

    kernel_size: int
    stride: int | None = None
    padding: int = 0
    count_include_pad: bool = True

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append an ``AveragePool`` node (floor mode), shared with an identical one on the same input."""
        n, c, h, w = _image(x, "AvgPool2d")
        k, p = self.kernel_size, self.padding
        s = k if self.stride is None else self.stride
        out_shape = (n, c, pooled_size(h, k, s, p, "AvgPool2d"), pooled_size(w, k, s, p, "AvgPool2d"))
        attrs = {
            "ceil_mode": 0,
            "count_include_pad": int(self.count_include_pad),
            "kernel_shape": [k, k],
            "pads": [p, p, p, p],
            "strides": [s, s],
        }
        key = ("AveragePool", x.identity, k, s, p, self.count_include_pad)
        return b.node("AveragePool", [x.name], out_shape, share_key=key, **attrs)


@dataclass(frozen=True)
class AdaptiveAvgPool2d:
    """``nn.AdaptiveAvgPool2d(output_size)``, exported as ``GlobalAveragePool`` (size 1) or an ``AveragePool``
    whose kernel and stride are the input size over the output size (the exporter's only supported case)."""

    output_size: int

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append the pooling node; raises DataError when the input size is not a multiple of the output."""
        n, c, h, w = _image(x, "AdaptiveAvgPool2d")
        o = self.output_size
        if o == 1:
            return b.node("GlobalAveragePool", [x.name], (n, c, 1, 1))
        if h % o or w % o:
            raise DataError(
                f"AdaptiveAvgPool2d({o}) on a {h}x{w} input has uneven windows that ONNX cannot express; "
                f"use an input whose feature map is a multiple of {o}"
            )
        return b.node(
            "AveragePool",
            [x.name],
            (n, c, o, o),
            ceil_mode=0,
            count_include_pad=1,
            kernel_shape=[h // o, w // o],
            pads=[0, 0, 0, 0],
            strides=[h // o, w // o],
        )


@dataclass(frozen=True)
class Flatten:
    """``torch.flatten(x, 1)`` (a function in torchvision's ``forward``, not a module)."""

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append a ``Flatten`` node (axis 1)."""
        return b.node("Flatten", [x.name], (x.shape[0], math.prod(x.shape[1:])), axis=1)


@dataclass(frozen=True)
class Dropout:
    """``nn.Dropout(p)`` in eval mode: the identity. Exported whole models drop it; alone: ``Identity``."""

    p: float = 0.5

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append an ``Identity`` node."""
        return b.node("Identity", [x.name], x.shape)


@dataclass(frozen=True)
class Linear:
    """``nn.Linear(in_features, out_features, bias=True)`` on N x in_features, exported as ``Gemm``."""

    in_features: int
    out_features: int
    bias: bool = True

    def emit(self, b: GraphBuilder, x: Tensor) -> Tensor:
        """Append a ``Gemm`` node (transB=1)."""
        if len(x.shape) != 2 or x.shape[1] != self.in_features:
            raise DataError(f"Linear expects an N x {self.in_features} input, got shape {x.shape}")
        inputs = [
            x.name,
            b.weight("fc_weight", (self.out_features, self.in_features), fan_in=self.in_features),
        ]
        if self.bias:
            inputs.append(b.weight("fc_bias", (self.out_features,), fan_in=self.in_features))
        return b.node("Gemm", inputs, (x.shape[0], self.out_features), alpha=1.0, beta=1.0, transB=1)


#: Any layer of this module.
Layer = (
    Conv2d
    | BatchNorm2d
    | ReLU
    | Sigmoid
    | Tanh
    | Softmax
    | MaxPool2d
    | AvgPool2d
    | AdaptiveAvgPool2d
    | Flatten
    | Dropout
    | Linear
)


def single_layer_model(
    layer: Layer, input_shape: tuple[int, ...], *, name: str, dtype: str, weights: str
) -> onnx.ModelProto:
    """A model holding ``layer`` alone: input ``input`` of ``input_shape``, output ``output``."""
    if min(input_shape) < 1:
        raise DataError(f"{name}: every input dimension must be positive, got {input_shape}")
    b = GraphBuilder(name, dtype=dtype, weights=weights)
    out = layer.emit(b, b.input("input", input_shape))
    return b.model([out], doc=f"{layer}")
