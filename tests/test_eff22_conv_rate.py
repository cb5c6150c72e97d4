"""``scripts/eff22_conv_rate.py``: which convolutions it counts as 3x3 stride-1 dense ones (their FLOPs against
closed forms of two committed graphs) and Winograd's multiplication share (Lavin and Gray 2016)."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eff22_conv_rate.py"


@cache
def _script():
    spec = importlib.util.spec_from_file_location("eff22_conv_rate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["eff22_conv_rate"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("tile", "winograd", "direct"), [(2, 16, 36), (4, 36, 144)])
def test_winograd_share(tile, winograd, direct):
    # F(m x m, 3 x 3): one (m + 2) x (m + 2) element-wise product per output tile of m x m, whose direct
    # convolution takes 9 multiplications per output (Lavin and Gray, arXiv:1509.09308, section 4)
    assert _script().winograd_multiply_share(tile) == pytest.approx(winograd / direct)


def test_vgg16_all_its_convolutions():
    # VGG16: thirteen 3x3 convolutions at stride 1 (padding 1), none grouped; MACs = H x W x Cin x Cout x 9. Each
    # is a _FusedConv2D under tensorflow-gpu (Conv2D + BiasAdd + Relu): + 1 FLOP of bias and 1 of Relu per output
    layers = [
        (224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128),
        (56, 128, 256), (56, 256, 256), (56, 256, 256),
        (28, 256, 512), (28, 512, 512), (28, 512, 512),
        (14, 512, 512), (14, 512, 512), (14, 512, 512),
    ]  # fmt: skip
    macs = sum(h * h * ci * co * 9 for h, ci, co in layers)
    outputs = sum(h * h * co for h, _, co in layers)
    seconds, flops = _script().conv3x3_seconds("data/graphs/vgg16.onnx", 2, "quadro-rtx5000")
    assert flops == pytest.approx(2 * (2 * macs + 2 * outputs), rel=1e-9)
    assert seconds > 0


def test_quicknet_binary_convolutions_only():
    # larq QuickNet: four binary 3x3 stride-1 convolutions per stage (Pad 1.0 then VALID) at 56, 28, 14, 7 pixels
    # and 64, 128, 256, 512 channels, without bias; its stem (stride 2), depthwise transitions and 1x1
    # convolutions are not such
    macs = sum(4 * h * h * c * c * 9 for h, c in [(56, 64), (28, 128), (14, 256), (7, 512)])
    _, flops = _script().conv3x3_seconds("data/graphs/larq-quicknet.onnx", 1, "quadro-rtx5000")
    assert flops == pytest.approx(2 * macs, rel=1e-9)
