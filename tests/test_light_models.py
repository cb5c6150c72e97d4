"""The real models shipped inside the onnx wheel (``onnx/backend/test/data/light``) against published figures.

These are Caffe2 exports (opset 9, 224x224 input) whose weights are ``ConstantOfShape`` nodes. For each one
the expected parameter count and MACs come from an independent reference: the architecture's layer list,
written out below from its paper, costed with the textbook formulas in :class:`Reference` (never by the
cost engine). Where a figure is published for the exact variant, the reference is first checked against
that figure (at the resolution it was published for), so the layer list is not merely the engine's
reading of the file. The engine must then agree with the reference within 1 %.

Conventions of the published figures: parameters are learned weights, biases and batch-norm affine
(scale, shift) -- not batch-norm running statistics; MACs are the multiply-accumulates of convolutions and
fully connected layers (what torchvision's model table calls "GFLOPS", computed with fvcore).

Feature-map sizes: the Caffe models pool in ``ceil`` mode; the ONNX export fixed the input at 224x224 and
kept floor rounding in several pools, so some maps are one pixel smaller than in the papers (AlexNet's
54/26/12 instead of 55/27/13, GoogLeNet's 55/27/13/6 instead of 56/28/14/7). The layer lists below take
the spatial sizes as parameters, and state the ones this export uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest

from estimator.cost.nodes import count_costs
from estimator.graph.load import load_graph

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@dataclass
class Reference:
    """Running totals of a hand-written layer list: learned parameters and multiply-accumulates."""

    params: int = 0
    macs: int = 0

    def conv(self, c_in: int, c_out: int, k: int, out_hw: int, groups: int = 1, bias: bool = True) -> None:
        """A k x k convolution producing an ``out_hw`` x ``out_hw`` map."""
        weights = c_out * (c_in // groups) * k * k
        self.params += weights + (c_out if bias else 0)
        self.macs += weights * out_hw * out_hw

    def fc(self, c_in: int, c_out: int) -> None:
        """A fully connected layer with bias."""
        self.params += c_in * c_out + c_out
        self.macs += c_in * c_out

    def bn(self, channels: int) -> None:
        """Batch-norm affine parameters (scale and shift); running statistics are not parameters."""
        self.params += 2 * channels


# --------------------------------------------------------------------------------------------------
# Layer lists
# --------------------------------------------------------------------------------------------------


def alexnet_bvlc(maps: tuple[int, int, int]) -> Reference:
    """BVLC AlexNet (Krizhevsky et al. 2012, the Caffe model: conv2/4/5 in 2 groups, LRN, no BN).

    ``maps``: spatial size after conv1, after pool1 (conv2's map), after pool2 (conv3-5's map).
    """
    r = Reference()
    m1, m2, m3 = maps
    r.conv(3, 96, 11, m1)
    r.conv(96, 256, 5, m2, groups=2)
    r.conv(256, 384, 3, m3)
    r.conv(384, 384, 3, m3, groups=2)
    r.conv(384, 256, 3, m3, groups=2)
    r.fc(256 * 6 * 6, 4096)
    r.fc(4096, 4096)
    r.fc(4096, 1000)
    return r


def vgg19() -> Reference:
    """VGG-19, configuration E of Simonyan & Zisserman 2014 (Table 1), 224x224."""
    r = Reference()
    c_in, hw = 3, 224
    for width, repeats in ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)):
        for _ in range(repeats):
            r.conv(c_in, width, 3, hw)
            c_in = width
        hw //= 2
    r.fc(512 * 7 * 7, 4096)
    r.fc(4096, 4096)
    r.fc(4096, 1000)
    return r


def resnet50() -> Reference:
    """ResNet-50 (He et al. 2015, Table 1) with the stride on the 3x3 conv (the "v1.5" of torchvision and
    of this Caffe2 export); convolutions have no bias, each is followed by a batch norm."""
    r = Reference()
    r.conv(3, 64, 7, 112, bias=False)
    r.bn(64)
    c_in, hw = 64, 56
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
        for block in range(blocks):
            out_hw = hw // 2 if stage > 0 and block == 0 else hw
            r.conv(c_in, width, 1, hw, bias=False)
            r.bn(width)
            r.conv(width, width, 3, out_hw, bias=False)
            r.bn(width)
            r.conv(width, 4 * width, 1, out_hw, bias=False)
            r.bn(4 * width)
            if block == 0:
                r.conv(c_in, 4 * width, 1, out_hw, bias=False)
                r.bn(4 * width)
            c_in, hw = 4 * width, out_hw
    r.fc(2048, 1000)
    return r


def densenet121(bn_affine_sets: int = 1) -> Reference:
    """DenseNet-121 (Huang et al. 2017, Table 1): growth 32, blocks (6, 12, 24, 16), bottleneck 4k,
    compression 0.5, BN-ReLU-conv order, no conv bias, final BN, 1000-way classifier with bias.

    ``bn_affine_sets``: scale/shift pairs per batch norm. The Caffe model (and this export) has Caffe's
    BatchNorm layer, whose own scale/shift are identity constants, followed by a ``Scale`` layer that
    holds the learned affine; the ONNX graph keeps both as constants, so it stores two sets.
    """
    r = Reference()

    def bn(c: int) -> None:
        for _ in range(bn_affine_sets):
            r.bn(c)

    r.conv(3, 64, 7, 112, bias=False)
    bn(64)
    c, hw = 64, 56
    for index, layers in enumerate((6, 12, 24, 16)):
        for _ in range(layers):
            bn(c)
            r.conv(c, 128, 1, hw, bias=False)
            bn(128)
            r.conv(128, 32, 3, hw, bias=False)
            c += 32
        if index < 3:
            bn(c)
            r.conv(c, c // 2, 1, hw, bias=False)
            c, hw = c // 2, hw // 2
    bn(c)
    r.fc(c, 1000)
    return r


#: GoogLeNet inception modules (Szegedy et al. 2015, Table 1):
#: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET_MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def googlenet(maps: tuple[int, int, int, int, int]) -> Reference:
    """GoogLeNet / BVLC Inception v1 (Szegedy et al. 2015, Table 1), without the auxiliary classifiers.

    ``maps``: spatial size after conv1, of conv2, of inception 3, of inception 4, of inception 5.
    """
    m1, m2, m3, m4, m5 = maps
    r = Reference()
    r.conv(3, 64, 7, m1)
    r.conv(64, 64, 1, m2)
    r.conv(64, 192, 3, m2)
    c_in = 192
    for name, (n1, r3, n3, r5, n5, pp) in GOOGLENET_MODULES.items():
        hw = {"3": m3, "4": m4, "5": m5}[name[0]]
        r.conv(c_in, n1, 1, hw)
        r.conv(c_in, r3, 1, hw)
        r.conv(r3, n3, 3, hw)
        r.conv(c_in, r5, 1, hw)
        r.conv(r5, n5, 5, hw)
        r.conv(c_in, pp, 1, hw)
        c_in = n1 + n3 + n5 + pp
    r.fc(1024, 1000)
    return r


#: BN-Inception modules (Ioffe & Szegedy 2015, Figure 5): #1x1, #3x3 reduce, #3x3, double #3x3 reduce,
#: double #3x3, pool proj (0 = max pool pass-through), stride.
BN_INCEPTION_MODULES = (
    ("3a", 64, 64, 64, 64, 96, 32, 1),
    ("3b", 64, 64, 96, 64, 96, 64, 1),
    ("3c", 0, 128, 160, 64, 96, 0, 2),
    ("4a", 224, 64, 96, 96, 128, 128, 1),
    ("4b", 192, 96, 128, 96, 128, 128, 1),
    ("4c", 160, 128, 160, 128, 160, 96, 1),
    ("4d", 96, 128, 192, 160, 192, 96, 1),
    ("4e", 0, 128, 192, 192, 256, 0, 2),
    ("5a", 352, 192, 320, 160, 224, 128, 1),
    ("5b", 352, 192, 320, 192, 224, 128, 1),
)


def bn_inception(bn_affine_sets: int = 1) -> Reference:
    """BN-Inception / "Inception v2" (Ioffe & Szegedy 2015, Figure 5), 224x224, no conv bias, a BN after
    every conv. The paper's table gives 4c's pool projection as 128; the released Caffe model, and this
    export, use 96 (so that 4c outputs 576 channels as the table's output column says).
    ``bn_affine_sets``: as for :func:`densenet121` (Caffe BatchNorm + Scale keeps two sets)."""
    r = Reference()

    def conv_bn(c_in: int, c_out: int, k: int, hw: int) -> None:
        r.conv(c_in, c_out, k, hw, bias=False)
        for _ in range(bn_affine_sets):
            r.bn(c_out)

    conv_bn(3, 64, 7, 112)
    conv_bn(64, 64, 1, 56)
    conv_bn(64, 192, 3, 56)
    c_in, hw = 192, 28
    for _name, n1, r3, n3, rd, nd, pp, stride in BN_INCEPTION_MODULES:
        out_hw = hw // stride
        if n1:
            conv_bn(c_in, n1, 1, hw)
        conv_bn(c_in, r3, 1, hw)
        conv_bn(r3, n3, 3, out_hw)
        conv_bn(c_in, rd, 1, hw)
        conv_bn(rd, nd, 3, hw)
        conv_bn(nd, nd, 3, out_hw)
        if pp:
            conv_bn(c_in, pp, 1, hw)
        c_in = n1 + n3 + nd + (pp if pp else c_in)
        hw = out_hw
    r.fc(1024, 1000)
    return r


def squeezenet11() -> Reference:
    """SqueezeNet 1.1 (the v1.1 of the SqueezeNet repository: 3x3/64 conv1, pools after conv1, fire3 and
    fire5), 224x224: fire modules (squeeze, expand1x1 = expand3x3) and a 1x1 conv classifier."""
    r = Reference()
    r.conv(3, 64, 3, 111)
    c_in = 64
    for squeeze, expand, hw in (
        (16, 64, 55),
        (16, 64, 55),
        (32, 128, 27),
        (32, 128, 27),
        (48, 192, 13),
        (48, 192, 13),
        (64, 256, 13),
        (64, 256, 13),
    ):
        r.conv(c_in, squeeze, 1, hw)
        r.conv(squeeze, expand, 1, hw)
        r.conv(squeeze, expand, 3, hw)
        c_in = 2 * expand
    r.conv(512, 1000, 1, 13)
    return r


def shufflenet_caffe2() -> Reference:
    """The Caffe2 ShuffleNet (v1 units of Zhang et al. 2017 with g = 4 grouped 1x1 convs and channel
    shuffle) as exported here: stage widths 136/272/544 (the paper's 0.5x for g = 4), the bottleneck as
    wide as the unit's output (the paper uses 1/4), stage 2's first 1x1 conv grouped too, 3x3/24 stem
    with bias, batch norms after every conv of the units, 1000-way fc. No published figure exists for
    this variant, hence the layer list."""
    r = Reference()
    r.conv(3, 24, 3, 112)
    r.bn(24)
    c_in, hw = 24, 56
    for width, repeats in ((136, 4), (272, 8), (544, 4)):
        for unit in range(repeats):
            # First unit: stride 2, its residual is a 3x3 average pool concatenated to the output.
            branch = width - c_in if unit == 0 else width
            out_hw = hw // 2 if unit == 0 else hw
            r.conv(c_in, branch, 1, hw, groups=4, bias=False)
            r.bn(branch)
            r.conv(branch, branch, 3, out_hw, groups=branch, bias=False)
            r.bn(branch)
            r.conv(branch, branch, 1, out_hw, groups=4, bias=False)
            r.bn(branch)
            c_in, hw = width, out_hw
    r.fc(544, 1000)
    return r


def zfnet512() -> Reference:
    """ZFNet (Zeiler & Fergus 2013, Figure 3: 7x7/2 conv1 with 96 filters, 5x5/2 conv2 with 256) in the
    Caffe2 "ZFNet-512" variant: 512 filters in conv3-conv5 and a 1024-wide fc7; 224x224 input."""
    r = Reference()
    r.conv(3, 96, 7, 109)
    r.conv(96, 256, 5, 25)
    r.conv(256, 512, 3, 12)
    r.conv(512, 512, 3, 12)
    r.conv(512, 512, 3, 12)
    r.fc(512 * 6 * 6, 4096)
    r.fc(4096, 1024)
    r.fc(1024, 1000)
    return r


# --------------------------------------------------------------------------------------------------
# The layer lists reproduce the published figures (where there is one for the exact variant)
# --------------------------------------------------------------------------------------------------


def test_references_match_published_figures() -> None:
    # BVLC AlexNet at its native 227x227 (maps 55/27/13): 60,965,224 parameters (the Caffe model's
    # blob sizes) and 724 M MACs (the figure usually quoted for the grouped Caffe model).
    alexnet = alexnet_bvlc((55, 27, 13))
    assert alexnet.params == 60_965_224
    assert alexnet.macs == pytest.approx(724e6, rel=0.005)
    # torchvision model table (docs: "Classification" weights tables): params and GFLOPS (= GMACs).
    assert vgg19().params == 143_667_240
    assert vgg19().macs == pytest.approx(19.63e9, rel=0.001)
    assert resnet50().params == 25_557_032
    assert resnet50().macs == pytest.approx(4.09e9, rel=0.002)
    assert densenet121().params == 7_978_856
    assert densenet121().macs == pytest.approx(2.83e9, rel=0.01)
    assert squeezenet11().params == 1_235_496
    assert squeezenet11().macs == pytest.approx(0.35e9, rel=0.02)
    # GoogLeNet paper, Table 1: ~6.8 M parameters (rounded; Table 1 omits biases) and ~1.5 G
    # multiply-adds at the paper's 224x224 with ceil-mode pooling (maps 112/56/28/14/7).
    googlenet_paper = googlenet((112, 56, 28, 14, 7))
    assert googlenet_paper.params == pytest.approx(6.8e6, rel=0.04)
    assert googlenet_paper.macs == pytest.approx(1.5e9, rel=0.06)


# --------------------------------------------------------------------------------------------------
# The cost engine on the real files
# --------------------------------------------------------------------------------------------------

#: file -> reference layer list at this export's feature-map sizes. DenseNet-121 and BN-Inception store two
#: batch-norm affine sets (see :func:`densenet121`), so the graph holds 83,648 (DenseNet-121: 7,978,856 ->
#: 8,062,504, +1.05 %) and 19,904 (BN-Inception) more parameters than the published architectures.
CASES = {
    "light_bvlc_alexnet.onnx": alexnet_bvlc((54, 26, 12)),
    "light_vgg19.onnx": vgg19(),
    "light_resnet50.onnx": resnet50(),
    "light_densenet121.onnx": densenet121(bn_affine_sets=2),
    "light_inception_v1.onnx": googlenet((112, 55, 27, 13, 6)),
    "light_inception_v2.onnx": bn_inception(bn_affine_sets=2),
    "light_squeezenet.onnx": squeezenet11(),
    "light_shufflenet.onnx": shufflenet_caffe2(),
    "light_zfnet512.onnx": zfnet512(),
}


@pytest.fixture(scope="module")
def reports() -> dict[str, object]:
    return {name: count_costs(load_graph(LIGHT / name)) for name in CASES}


@pytest.mark.parametrize("name", sorted(CASES))
def test_light_model_params_and_macs(name: str, reports: dict[str, object]) -> None:
    reference = CASES[name]
    totals = reports[name].totals
    assert totals.params == pytest.approx(reference.params, rel=0.01)
    assert totals.macs == pytest.approx(reference.macs, rel=0.01)


@pytest.mark.parametrize("name", sorted(CASES))
def test_light_model_fully_costed(name: str, reports: dict[str, object]) -> None:
    assert dict(reports[name].unsupported) == {}
