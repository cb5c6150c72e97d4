"""PyTorch twins of the Keras networks that timm has no counterpart for, written layer for layer from the Keras
source, as networks for ``scripts/export_graphs.py`` (source ``keras-twin``).

* :func:`nasnet_mobile`: Keras Applications ``NASNetMobile`` (NASNet-A 4 @ 1056, Zoph et al. 2018),
  github.com/keras-team/keras @ v2.8.0 (d8fcb9d4d4dad45080ecfdd575483653028f8eda) ``keras/applications/nasnet.py``
  (the tf.keras of TensorFlow 2.8), unchanged in Keras 3 (@ 3422977a5e38fb2f7709aaa9a08e47f0c43d0f60,
  ``keras/src/applications/nasnet.py``). timm's ``nasnetalarge`` (Cadene's port of TF-slim's NASNet-A Large)
  hard-codes 6 cells per stage and its own channel plumbing, so the cells are written here from the Keras
  functions ``_separable_conv_block``, ``_adjust_block``, ``_normal_a_cell`` and ``_reduction_a_cell``.
* :func:`quicknet`: larq-zoo's ``QuickNet``, ``QuickNetSmall`` and ``QuickNetLarge`` (Bannink et al. 2021,
  arXiv 2011.09398), github.com/larq/zoo @ 77c5853f095d0df4ec338e1e419125b561d1c1af ``larq_zoo/sota/quicknet.py``
  (architecture unchanged since 6ae9a6b, 2021-01-14, before Fischer's 2022 runs with larq 0.12.2). What
  TensorFlow executes for a larq ``QuantConv2D`` outside Larq Compute Engine (github.com/larq/larq @
  fe3ce52171aca19da649571bd541e68f758469f0): ``BaseLayer.call`` applies the input quantizer to the activations,
  the kernel is a ``QuantizedVariable`` whose value inside ``quantized_scope`` is the kernel quantizer applied to
  the stored float kernel at every call (``quantized_variable.py``), ``QuantizerBaseConv.call`` pads with
  ``pad_values`` (``tf.pad``) before a 'valid' convolution when ``pad_values != 0``, and the convolution is
  Keras' float32 ``Conv2D`` on the +-1 tensors. ``SteSign``'s forward is ``larq.math.sign(x) =
  tf.sign(tf.sign(x) + 0.1)`` (``math.py``; the straight-through gradient does not run at inference). The twin
  does exactly that: Sign, Add 0.1, Sign on the activations and on the stored kernel, Pad with 1.0, Conv.

Both keep every BatchNormalization as a layer (exported as inference-mode nodes) and end in the softmax the Keras
models compute; input preprocessing (``preprocess_input``) ran in Fischer's input pipeline, outside the model.
Padding: Keras 'same' with stride 2 pads one pixel at the end only; where the Keras code pads explicitly
(``ZeroPadding2D``, larq's ``tf.pad``) the twin has the same Pad, elsewhere a symmetric pad of the convolution
gives the same output size and products.

Keras counts parameters with BatchNormalization's moving mean and variance; PyTorch's parameters leave them out.
:func:`keras_param_count` adds them back, so that a twin's count can be checked against Keras' own figure.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: Keras BatchNormalization of NASNet: ``momentum=0.9997, epsilon=1e-3`` (eps only matters for values).
NASNET_BN_EPS = 1e-3
#: larq-zoo QuickNet's BatchNormalization in the blocks: ``momentum=0.9, epsilon=1e-5``; Keras' default 1e-3 in
#: the stem.
QUICKNET_BN_EPS = 1e-5
#: ``larq.math.sign`` adds this before the second sign so that sign(0) = +1.
LARQ_SIGN_OFFSET = 0.1


def keras_param_count(model: nn.Module) -> int:
    """Parameters as Keras ``count_params`` counts them: PyTorch's parameters plus each BatchNorm's moving mean and
    variance (2 per channel), which Keras stores as non-trainable weights."""
    params = sum(p.numel() for p in model.parameters())
    stats = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )
    return params + stats


def _bn(channels: int, eps: float = NASNET_BN_EPS, affine: bool = True) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=eps, affine=affine)


def _correct_pad(size: int, kernel: int) -> tuple[int, int]:
    """Keras ``imagenet_utils.correct_pad`` along one axis: (before, after) for an input of ``size``."""
    adjust = 1 - size % 2
    return kernel // 2 - adjust, kernel // 2


# ----------------------------------------------------------------------------------------------------------
# NASNet-A (Keras Applications)
# ----------------------------------------------------------------------------------------------------------


class SeparableConv(nn.Module):
    """Keras ``SeparableConv2D`` without bias: a depthwise k x k convolution (depth multiplier 1), then a 1 x 1
    convolution to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel, stride, padding, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SeparableBlock(nn.Module):
    """``_separable_conv_block``: ReLU, [ZeroPadding2D(correct_pad) when strided], SeparableConv2D, BN, ReLU,
    SeparableConv2D ('same'), BN."""

    def __init__(self, in_ch: int, filters: int, kernel: int, stride: int, size: int) -> None:
        super().__init__()
        self.pad = _correct_pad(size, kernel) if stride == 2 else None
        self.sep1 = SeparableConv(in_ch, filters, kernel, stride, 0 if stride == 2 else kernel // 2)
        self.bn1 = _bn(filters)
        self.sep2 = SeparableConv(filters, filters, kernel, 1, kernel // 2)
        self.bn2 = _bn(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if self.pad is not None:
            before, after = self.pad
            x = F.pad(x, (before, after, before, after))
        x = self.bn1(self.sep1(x))
        return self.bn2(self.sep2(F.relu(x)))


def _avg_same(x: torch.Tensor) -> torch.Tensor:
    """Keras ``AveragePooling2D((3, 3), strides=(1, 1), padding='same')``: TensorFlow leaves the padding out of
    each window's count."""
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class Adjust(nn.Module):
    """``_adjust_block``: match the previous path ``p`` to the cell input ``ip`` (spatially: factorised
    reduction; in channels: a 1 x 1 projection; else unchanged)."""

    def __init__(self, p_shape: tuple[int, int] | None, ip_shape: tuple[int, int], filters: int) -> None:
        super().__init__()
        self.mode = "none"
        if p_shape is None:
            self.mode = "ip"
        elif p_shape[1] != ip_shape[1]:
            self.mode = "reduce"
            self.conv1 = nn.Conv2d(p_shape[0], filters // 2, 1, bias=False)
            self.conv2 = nn.Conv2d(p_shape[0], filters // 2, 1, bias=False)
            self.bn = _bn(filters)
        elif p_shape[0] != filters:
            self.mode = "project"
            self.conv = nn.Conv2d(p_shape[0], filters, 1, bias=False)
            self.bn = _bn(filters)

    def forward(self, p: torch.Tensor | None, ip: torch.Tensor) -> torch.Tensor:
        if self.mode == "ip":
            return ip
        if self.mode == "reduce":
            p = F.relu(p)
            p1 = self.conv1(F.avg_pool2d(p, 1, 2))
            # ZeroPadding2D(((0, 1), (0, 1))) then Cropping2D(((1, 0), (1, 0))): a one-pixel shift
            p2 = F.pad(p, (0, 1, 0, 1))[:, :, 1:, 1:]
            p2 = self.conv2(F.avg_pool2d(p2, 1, 2))
            return self.bn(torch.cat([p1, p2], dim=1))
        if self.mode == "project":
            return self.bn(self.conv(F.relu(p)))
        return p


class _Cell(nn.Module):
    """What both NASNet-A cells start with: ``_adjust_block`` of the previous output, and a 1x1 conv + BN of the
    input after a ReLU (``p_ch``: the channels the adjusted previous output has)."""

    def __init__(self, ip_shape, p_shape, filters: int) -> None:
        super().__init__()
        self.adjust = Adjust(p_shape, ip_shape, filters)
        self.p_ch = ip_shape[0] if p_shape is None else filters
        self.conv = nn.Conv2d(ip_shape[0], filters, 1, bias=False)
        self.bn = _bn(filters)


class NormalCell(_Cell):
    """``_normal_a_cell``: output channels 6 x ``filters`` at the input's size."""

    def __init__(self, ip_shape, p_shape, filters: int) -> None:
        super().__init__(ip_shape, p_shape, filters)
        size, p_ch = ip_shape[1], self.p_ch
        self.left1 = SeparableBlock(filters, filters, 5, 1, size)
        self.right1 = SeparableBlock(p_ch, filters, 3, 1, size)
        self.left2 = SeparableBlock(p_ch, filters, 5, 1, size)
        self.right2 = SeparableBlock(p_ch, filters, 3, 1, size)
        self.left5 = SeparableBlock(filters, filters, 3, 1, size)
        self.out_shape = (6 * filters, size)

    def forward(self, ip: torch.Tensor, p: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.adjust(p, ip)
        h = self.bn(self.conv(F.relu(ip)))
        x1 = self.left1(h) + self.right1(p)
        x2 = self.left2(p) + self.right2(p)
        x3 = _avg_same(h) + p
        x4 = _avg_same(p) + _avg_same(p)
        x5 = self.left5(h) + h
        return torch.cat([p, x1, x2, x3, x4, x5], dim=1), ip


class ReductionCell(_Cell):
    """``_reduction_a_cell``: output channels 4 x ``filters`` at half the input's size."""

    def __init__(self, ip_shape, p_shape, filters: int) -> None:
        super().__init__(ip_shape, p_shape, filters)
        size, p_ch = ip_shape[1], self.p_ch
        self.pad3 = _correct_pad(size, 3)
        self.left1 = SeparableBlock(filters, filters, 5, 2, size)
        self.right1 = SeparableBlock(p_ch, filters, 7, 2, size)
        self.right2 = SeparableBlock(p_ch, filters, 7, 2, size)
        self.right3 = SeparableBlock(p_ch, filters, 5, 2, size)
        half = (size - 1) // 2 + 1
        self.left5 = SeparableBlock(filters, filters, 3, 1, half)
        self.out_shape = (4 * filters, half)

    def forward(self, ip: torch.Tensor, p: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.adjust(p, ip)
        h = self.bn(self.conv(F.relu(ip)))
        before, after = self.pad3
        h3 = F.pad(h, (before, after, before, after))
        x1 = self.left1(h) + self.right1(p)
        x2 = F.max_pool2d(h3, 3, 2) + self.right2(p)
        x3 = F.avg_pool2d(h3, 3, 2) + self.right3(p)
        x4 = x2 + _avg_same(x1)
        x5 = self.left5(x1) + F.max_pool2d(h3, 3, 2)
        return torch.cat([x2, x3, x4, x5], dim=1), ip


class NASNet(nn.Module):
    """Keras ``NASNet(...)`` with ``include_top=True``: stem convolution, two stem reduction cells, then
    ``num_blocks`` normal cells, a reduction cell, ``num_blocks`` normal cells, a reduction cell, ``num_blocks``
    normal cells; ReLU, global average pooling, Dense(classes), softmax."""

    def __init__(
        self,
        penultimate_filters: int,
        num_blocks: int,
        stem_block_filters: int,
        skip_reduction: bool,
        filter_multiplier: int = 2,
        size: int = 224,
        classes: int = 1000,
    ) -> None:
        super().__init__()
        filters = penultimate_filters // 24
        self.stem = nn.Conv2d(3, stem_block_filters, 3, 2, bias=False)  # 'valid'
        self.stem_bn = _bn(stem_block_filters)
        x_shape: tuple[int, int] = (stem_block_filters, (size - 3) // 2 + 1)
        p_shape: tuple[int, int] | None = None
        cells: list[nn.Module] = []
        #: per cell: whether the next cell's previous path is this cell's input (else the previous path stays)
        self.passes_ip: list[bool] = []

        def add(cell_cls, width: int, passes_ip: bool = True) -> None:
            nonlocal x_shape, p_shape
            cell = cell_cls(x_shape, p_shape, width)
            cells.append(cell)
            self.passes_ip.append(passes_ip)
            if passes_ip:
                p_shape = x_shape
            x_shape = cell.out_shape

        # the stem cells always pass their input on; the two inner reduction cells only without skip_reduction
        add(ReductionCell, filters // filter_multiplier**2)
        add(ReductionCell, filters // filter_multiplier)
        for stage in range(3):
            width = filters * filter_multiplier**stage
            if stage:
                add(ReductionCell, width, passes_ip=not skip_reduction)
            for _ in range(num_blocks):
                add(NormalCell, width)
        self.cells = nn.ModuleList(cells)
        self.head = nn.Linear(x_shape[0], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_bn(self.stem(x))
        p = None
        for cell, passes_ip in zip(self.cells, self.passes_ip, strict=True):
            x, ip = cell(x, p)
            if passes_ip:
                p = ip
        x = F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1)
        return F.softmax(self.head(x), dim=1)


def nasnet_mobile() -> NASNet:
    """Keras Applications ``NASNetMobile``: ``NASNet(penultimate_filters=1056, num_blocks=4,
    stem_block_filters=32, skip_reduction=False, filter_multiplier=2)`` at 224 x 224."""
    return NASNet(1056, 4, 32, skip_reduction=False, filter_multiplier=2, size=224)


# ----------------------------------------------------------------------------------------------------------
# QuickNet (larq-zoo)
# ----------------------------------------------------------------------------------------------------------


def larq_sign(x: torch.Tensor) -> torch.Tensor:
    """``larq.math.sign``: ``sign(sign(x) + 0.1)``, +-1 with sign(0) = +1 (three element-wise ops)."""
    return torch.sign(torch.sign(x) + LARQ_SIGN_OFFSET)


class BinaryConv(nn.Module):
    """larq ``QuantConv2D(C, 3x3, input_quantizer=SteSign, kernel_quantizer=SteSign, padding='same',
    pad_values=1.0, activation='relu', use_bias=False)`` as TensorFlow runs it: sign of the input, sign of the
    stored kernel, Pad with 1.0, a 'valid' float convolution, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(larq_sign(x), (1, 1, 1, 1), value=1.0)
        return F.relu(F.conv2d(x, larq_sign(self.weight)))


class BlurPool(nn.Module):
    """The transition's ``DepthwiseConv2D(3x3, blurpool_initializer, strides=2, padding='same', trainable=False)``:
    a stored (non-trainable) 3 x 3 kernel per channel, outer([1, 2, 1], [1, 2, 1]) / 16."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(k, k) / 16.0
        self.weight = nn.Parameter(kernel.expand(channels, 1, 3, 3).clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, stride=2, padding=1, groups=x.shape[1])


class QuickNet(nn.Module):
    """larq-zoo ``QuickNetFactory.build`` with ``include_top=True`` at 224 x 224."""

    def __init__(
        self,
        section_blocks: tuple[int, ...],
        section_filters: tuple[int, ...],
        size: int = 224,
        classes: int = 1000,
    ) -> None:
        super().__init__()
        f0 = section_filters[0]
        for _ in range(2):  # the stem's two stride-2 'same' convolutions
            size = math.ceil(size / 2)
        # stem_module: float QuantConv2D (no quantizers), BN, ReLU, float depthwise, BN(scale=False,
        # center=False), float 1x1 QuantConv2D, BN (Keras' default epsilon 1e-3)
        self.stem = nn.Sequential(
            nn.Conv2d(3, f0 // 4, 3, 2, 1, bias=False),
            _bn(f0 // 4, 1e-3),
            nn.ReLU(),
            nn.Conv2d(f0 // 4, f0 // 4, 3, 2, 1, groups=f0 // 4, bias=False),
            _bn(f0 // 4, 1e-3, affine=False),
            nn.Conv2d(f0 // 4, f0, 1, bias=False),
            _bn(f0, 1e-3),
        )
        layers: list[nn.Module] = []
        channels = f0
        for blocks, filters in zip(section_blocks, section_filters, strict=True):
            for _ in range(blocks):
                if filters != channels:
                    layers.append(Transition(channels, filters))
                    channels = filters
                    size = math.ceil((size - 1) / 2)  # MaxPool2D(2, strides=1, 'valid'), stride-2 blur
                layers.append(Residual(channels))
        self.body = nn.Sequential(*layers)
        self.pool = size
        self.head = nn.Linear(channels, classes)  # float QuantDense (no quantizers), with bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.body(self.stem(x)))
        # larq_zoo.core.utils.global_pool: AveragePooling2D over the whole (static) map, then Flatten
        x = F.avg_pool2d(x, self.pool).flatten(1)
        return F.softmax(self.head(x), dim=1)


class Residual(nn.Module):
    """``residual_block``: binary 3 x 3 convolution (ReLU inside), BN, add the block input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = BinaryConv(channels)
        self.bn = _bn(channels, QUICKNET_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + x


class Transition(nn.Module):
    """``transition_block(strides=2)``: ReLU, MaxPool2D(2, strides=1, 'valid'), blur pool (stride 2), float
    1 x 1 QuantConv2D (no quantizers), BN."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.blur = BlurPool(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = _bn(out_ch, QUICKNET_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(x), 2, 1)
        return self.bn(self.conv(self.blur(x)))


#: larq-zoo factories: name -> (section_blocks, section_filters).
QUICKNETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "QuickNet": ((4, 4, 4, 4), (64, 128, 256, 512)),
    "QuickNetSmall": ((4, 4, 4, 4), (32, 64, 256, 512)),
    "QuickNetLarge": ((6, 8, 12, 6), (64, 128, 256, 512)),
}


def quicknet(name: str) -> QuickNet:
    """larq-zoo's ``name`` (``QuickNet``, ``QuickNetSmall`` or ``QuickNetLarge``) at 224 x 224."""
    blocks, filters = QUICKNETS[name]
    return QuickNet(blocks, filters)


KERAS_AT = "keras @ v2.8.0 (d8fcb9d) keras/applications/nasnet.py"
LARQ_AT = "larq-zoo @ 77c5853 larq_zoo/sota/quicknet.py; larq @ fe3ce52"
#: Constructor expressions of the twins (``Spec.constructor`` in scripts/export_graphs.py) -> (builder, the
#: source it follows, for the manifest's library_version).
BUILDERS = {
    "keras_twins.nasnet_mobile()": (nasnet_mobile, KERAS_AT),
    **{f"keras_twins.quicknet('{n}')": (lambda n=n: quicknet(n), LARQ_AT) for n in QUICKNETS},
}
