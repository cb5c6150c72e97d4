"""Tests of ``estimator.zoo``: graphs built without PyTorch, checked against published parameter counts,
closed-form shapes, the MAC figures recorded in Getzner et al.'s measurements and, when PyTorch is installed,
against the reference networks exported by ``torch.onnx.export`` and counted by ``FlopCounterMode``."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from estimator.cost.nodes import count_costs
from estimator.errors import DataError
from estimator.graph.load import load_graph
from estimator.zoo import (
    NB201_OPS,
    build_from_spec,
    getzner_activation,
    getzner_conv2d,
    getzner_linear,
    getzner_maxpool2d,
    nasbench201,
    parse_arch_str,
    spec_for_getzner,
    spec_for_nasbench201,
    torchvision_layer,
    torchvision_layer_count,
    torchvision_model,
)

# Architectures that, together, use every operation on every edge position and exercise the exporter's
# sharing of repeated parameter-free nodes (x*0 twice on one input, two ReLUs of one node, a pool of the
# same tensor reached through a skip).
ARCHS = (
    "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|avg_pool_3x3~0|skip_connect~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|",
)
TASKS = ("cifar100", "ninapro", "darcy")

PUBLISHED_PARAMS = {  # torchvision documentation, "Params" column of the classification models table
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
}


def _costs(model: onnx.ModelProto):
    return count_costs(load_graph(model))


def _conv_gemm_macs(report) -> int:
    return sum(n.macs for n in report.nodes if n.op_type in ("Conv", "Gemm"))


def _ops(model: onnx.ModelProto, ignore=("Constant", "ConstantOfShape", "Identity")) -> Counter:
    return Counter(n.op_type for n in model.graph.node if n.op_type not in ignore)


def _out_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    return tuple(d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim)


# ----------------------------------------------------------------------------------------------------------
# NAS-Bench-201 without torch


def _nb201_closed_form(arch: str, C: int, N: int, classes: int, cin: int, h: int, w: int) -> tuple[int, int]:
    """Conv+Gemm MACs and learned parameters of TinyNetwork, from the architecture's definition."""
    nodes = parse_arch_str(arch)
    macs = params = 0
    # stem conv3x3 + BN
    macs += C * h * w * cin * 9
    params += C * cin * 9 + 2 * C
    for stage, c in enumerate((C, 2 * C, 4 * C)):
        if stage:  # every task here has even sizes before each reduction
            h, w, cp = h // 2, w // 2, c // 2
            macs += c * h * w * cp * 9 + c * h * w * c * 9 + c * h * w * cp  # conv_a, conv_b, shortcut 1x1
            params += c * cp * 9 + 2 * c + c * c * 9 + 2 * c + c * cp
        for edges in nodes:
            for op, _ in edges:
                k = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}.get(op)
                if k:
                    macs += N * c * h * w * c * k * k
                    params += N * (c * c * k * k + 2 * c)
    macs += 4 * C * classes
    params += 2 * 4 * C + 4 * C * classes + classes
    return macs, params


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("task", TASKS)
def test_nb201_matches_closed_form(arch: str, task: str) -> None:
    model = build_from_spec(spec_for_nasbench201(arch, task), batch=1)
    onnx.checker.check_model(model, full_check=True)
    (cin, h, w), classes = {
        "cifar100": ((3, 32, 32), 100),
        "ninapro": ((1, 52, 16), 18),
        "darcy": ((1, 88, 88), 1),
    }[task]
    macs, params = _nb201_closed_form(arch, 16, 5, classes, cin, h, w)
    report = _costs(model)
    assert _conv_gemm_macs(report) == macs
    assert report.totals.params == params
    assert _out_shape(model) == (1, classes)
    assert report.coverage == 1.0


def test_nb201_batch_scales_macs_not_params() -> None:
    one = _costs(nasbench201(ARCHS[0], input_shape=(1, 3, 32, 32))).totals
    four = _costs(nasbench201(ARCHS[0], input_shape=(4, 3, 32, 32))).totals
    assert four.macs == 4 * one.macs
    assert four.params == one.params


def test_nb201_folding_keeps_macs_and_moves_bn_into_bias() -> None:
    plain = nasbench201(ARCHS[2], N=2)
    folded = nasbench201(ARCHS[2], N=2, fold_batchnorm=True)
    assert _ops(folded)["BatchNormalization"] == 1  # only the final BN + ReLU
    assert _ops(plain)["BatchNormalization"] == _ops(plain)["Conv"] - 2 + 1  # not the 2 shortcuts; + final BN
    # each folded BN(c) trades 2c learned values (scale, shift) for a c-wide conv bias: per cell 3 convs
    # (3x3 on node 0, 1x1 on node 0, 3x3 on node 2) x N=2 cells per stage, 2 per block, 1 in the stem
    folded_channels = 16 + 2 * 3 * (16 + 32 + 64) + 2 * (32 + 64)
    assert _costs(plain).totals.params - _costs(folded).totals.params == folded_channels
    assert _conv_gemm_macs(_costs(plain)) == _conv_gemm_macs(_costs(folded))


def test_nb201_shares_repeated_parameter_free_nodes() -> None:
    # node 1 = x*0, node 2 = x*0 + n1*0, node 3 = x*0 + n1*0 + n2*0: the exporter's CSE leaves 3 Muls and
    # 2 Adds per cell (n2's first Add is node 3's first Add).
    ops = _ops(nasbench201(ARCHS[1], N=1))
    assert ops["Mul"] == 3 * 3
    assert ops["Add"] == 3 * 2 + 2  # + the two residual blocks
    assert ops["Relu"] == 2 * 2 + 1  # the blocks' two ReLUConvBN each, and the final ReLU


def test_nb201_fp16_is_float16_throughout() -> None:
    spec = spec_for_nasbench201(ARCHS[0], "cifar100")
    half, full = build_from_spec(spec, dtype="float16"), build_from_spec(spec)
    onnx.checker.check_model(half, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(half, strict_mode=True)
    float_types = {
        v.type.tensor_type.elem_type
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        if v.type.tensor_type.elem_type != onnx.TensorProto.INT64
    }
    assert float_types == {onnx.TensorProto.FLOAT16}
    half_totals, full_totals = _costs(half).totals, _costs(full).totals
    assert half_totals.params == full_totals.params
    assert 2 * half_totals.param_bytes == full_totals.param_bytes
    assert half_totals.macs == full_totals.macs


@pytest.mark.parametrize(
    "arch",
    [
        "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|",  # 2 nodes
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # unknown op
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",  # wrong source
        "|none~0|+|none~0|+|none~0|none~1|none~2|",  # missing edge
        "none~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # missing bar
    ],
)
def test_nb201_rejects_malformed_arch(arch: str) -> None:
    with pytest.raises(DataError):
        nasbench201(arch)


def test_nb201_ops_are_the_search_space() -> None:
    assert set(NB201_OPS) == {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"}


# ----------------------------------------------------------------------------------------------------------
# torchvision models


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_torchvision_params_match_published(name: str) -> None:
    model = torchvision_model(name, batch=2)
    onnx.checker.check_model(model, full_check=True)
    assert _costs(model).totals.params == PUBLISHED_PARAMS[name]
    assert _out_shape(model) == (2, 1000)
    assert model.ByteSize() < 20_000  # light weights: no data stored


def test_torchvision_fp16_halves_parameter_bytes() -> None:
    model = torchvision_model("alexnet", dtype="float16")
    onnx.checker.check_model(model, full_check=True)
    totals = _costs(model).totals
    assert totals.params == PUBLISHED_PARAMS["alexnet"]
    assert totals.param_bytes == 2 * PUBLISHED_PARAMS["alexnet"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def _ptflops_macs(model: onnx.ModelProto, batch: int) -> int:
    """Getzner et al.'s ``macs`` of a single-module graph (ptflops conventions, their max-pool formula),
    computed from the graph's own input/output shapes and attributes."""
    node = next(n for n in model.graph.node if n.op_type not in ("ConstantOfShape",))
    x = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    y = _out_shape(model)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        k = attrs["kernel_shape"][0]
        return math.prod(y) * (x[1] * k * k + 1)
    if node.op_type == "Gemm":
        return batch * (x[1] + 1) * y[1]
    if node.op_type == "MaxPool":
        k = attrs["kernel_shape"][0]
        return int(math.prod(y) * k * k / 2)
    if node.op_type in ("Relu", "AveragePool"):
        return math.prod(x)
    if node.op_type in ("Identity", "Sigmoid", "Tanh", "Softmax"):
        return 0
    raise AssertionError(node.op_type)


# Getzner et al.'s layer-by-layer runs (raw/architectures/00_architectures-layerwise-raw.csv): layer_idx,
# module and the ``macs`` they recorded (alexnet at batch 154, vgg11 at batch 12).
# fmt: off
LAYERWISE = {
    ("alexnet", 154): [
        (1, "Conv2d", 10852441600),
        (2, "ReLU", 29814400),
        (3, "MaxPool2d", 32332608),
        (4, "Conv2d", 34509670272),
        (5, "ReLU", 21555072),
        (6, "MaxPool2d", 22486464),
        (7, "Conv2d", 17279598336),
        (8, "ReLU", 9993984),
        (9, "Conv2d", 23032801792),
        (10, "ReLU", 6662656),
        (11, "Conv2d", 15357422080),
        (12, "ReLU", 6662656),
        (13, "MaxPool2d", 6386688),
        (14, "AdaptiveAvgPool2d", 1419264),
        (15, "Dropout", 0),
        (16, "Linear", 5813936128),
        (17, "ReLU", 630784),
        (18, "Dropout", 0),
        (19, "Linear", 2584322048),
        (20, "ReLU", 630784),
        (21, "Linear", 630938000),
    ],
    ("vgg11", 12): [
        (1, "Conv2d", 1078984704),
        (2, "ReLU", 38535168),
        (3, "MaxPool2d", 19267584),
        (4, "Conv2d", 11117395968),
        (5, "ReLU", 19267584),
        (6, "MaxPool2d", 9633792),
        (7, "Conv2d", 11107762176),
        (8, "ReLU", 9633792),
        (9, "Conv2d", 22205890560),
        (10, "ReLU", 9633792),
        (11, "MaxPool2d", 4816896),
        (12, "Conv2d", 11102945280),
        (13, "ReLU", 4816896),
        (14, "Conv2d", 22201073664),
        (15, "ReLU", 4816896),
        (16, "MaxPool2d", 2408448),
        (17, "Conv2d", 5550268416),
        (18, "ReLU", 1204224),
        (19, "Conv2d", 5550268416),
        (20, "ReLU", 1204224),
        (21, "MaxPool2d", 602112),
        (22, "AdaptiveAvgPool2d", 301056),
        (23, "Linear", 1233174528),
        (24, "ReLU", 49152),
        (25, "Dropout", 0),
        (26, "Linear", 201375744),
        (27, "ReLU", 49152),
        (28, "Dropout", 0),
        (29, "Linear", 49164000),
    ],
}
# fmt: on


@pytest.mark.parametrize(("arch", "batch"), sorted(LAYERWISE))
def test_torchvision_layers_match_getzner_layerwise_macs(arch: str, batch: int) -> None:
    rows = LAYERWISE[(arch, batch)]
    assert torchvision_layer_count(arch) == len(rows)
    for layer_idx, module, macs in rows:
        record = {
            "module": module,
            "architecture": arch,
            "layer_idx": float(layer_idx),
            "kernel_size": math.nan,
        }
        spec = spec_for_getzner(record)
        assert spec == f"torchvision:{arch};layer={layer_idx - 1}"
        model = build_from_spec(spec, batch=batch)
        onnx.checker.check_model(model, full_check=True)
        assert _ptflops_macs(model, batch) == macs, (layer_idx, module)


def test_whole_model_record_and_layer_errors() -> None:
    assert (
        spec_for_getzner({"module": "VGG", "architecture": "vgg13", "layer_idx": 0.0}) == "torchvision:vgg13"
    )
    with pytest.raises(DataError):
        spec_for_getzner(
            {"module": "Conv2d", "architecture": "alexnet", "layer_idx": 2.0}
        )  # layer 2 is a ReLU
    with pytest.raises(DataError):
        torchvision_layer("alexnet", 21)


# ----------------------------------------------------------------------------------------------------------
# Getzner single modules: records of getzner_tidy_DERIVED.csv with the ``macs`` their collector recorded

GETZNER_RECORDS = [
    {"module": "Conv2d", "batch_size": 117, "image_size": 51.0, "kernel_size": 7.0, "in_channels": 436.0,
     "out_channels": 175.0, "stride": 1.0, "padding": 3.0, "macs": 1137803223375},
    {"module": "Conv2d", "batch_size": 115, "image_size": 179.0, "kernel_size": 4.0, "in_channels": 303.0,
     "out_channels": 399.0, "stride": 3.0, "padding": 0.0, "macs": 774509846565},
    {"module": "Conv2d", "batch_size": 237, "image_size": 224.0, "kernel_size": 11.0, "in_channels": 3.0,
     "out_channels": 64.0, "stride": 4.0, "padding": 2.0, "macs": 16701484800},
    {"module": "Linear", "batch_size": 115, "input_size": 326.0, "output_size": 1382.0, "macs": 51970110},
    {"module": "Linear", "batch_size": 438, "input_size": 4688.0, "output_size": 1421.0, "macs": 2918424222},
    {"module": "MaxPool2d", "batch_size": 217, "image_size": 166.0, "kernel_size": 7.0, "in_channels": 98.0,
     "stride": 4.0, "padding": 0.0, "macs": 833627200},
    {"module": "MaxPool2d", "batch_size": 12, "image_size": 60.0, "kernel_size": 11.0, "in_channels": 56.0,
     "stride": 3.0, "padding": 1.0, "macs": 13172544},
    {"module": "MaxPool2d", "batch_size": 145, "image_size": 223.0, "kernel_size": 3.0, "in_channels": 102.0,
     "stride": 5.0, "padding": 1.0, "macs": 134773875},
    {"module": "ReLU", "batch_size": 108, "input_size": 1919824.0, "macs": 207340992},
    {"module": "Sigmoid", "batch_size": 254, "input_size": 3523699.0, "macs": 0},
    {"module": "Softmax", "batch_size": 284, "input_size": 1793030.0, "macs": 0},
    {"module": "Tanh", "batch_size": 407, "input_size": 2721529.0, "macs": 0},
]  # fmt: skip


@pytest.mark.parametrize("record", GETZNER_RECORDS, ids=lambda r: f"{r['module']}-{r['batch_size']}")
def test_getzner_records_rebuild_with_their_macs(record: dict) -> None:
    record = {"architecture": math.nan, "layer_idx": math.nan, **record}
    model = build_from_spec(spec_for_getzner(record), batch=record["batch_size"])
    onnx.checker.check_model(model, full_check=True)
    assert _ptflops_macs(model, record["batch_size"]) == record["macs"]


def test_getzner_builders_shapes_and_costs() -> None:
    conv = getzner_conv2d(3, 64, 11, 4, 2, 224, batch=2)
    assert _out_shape(conv) == (2, 64, 55, 55)
    assert _costs(conv).totals.macs == 2 * 64 * 55 * 55 * 3 * 11 * 11
    assert _costs(conv).totals.params == 64 * 3 * 11 * 11 + 64
    linear = getzner_linear(4096, 1000, batch=3)
    assert _costs(linear).totals.macs == 3 * 4096 * 1000
    assert _costs(linear).totals.params == 4096 * 1000 + 1000
    assert _out_shape(getzner_maxpool2d(64, 3, 2, 0, 55, batch=5)) == (5, 64, 27, 27)
    softmax = getzner_activation("softmax", 1000, batch=7)
    assert _out_shape(softmax) == (7, 1000)
    assert [a.i for a in softmax.graph.node[0].attribute if a.name == "axis"] == [1]


def test_getzner_spec_examples() -> None:
    spec = "getzner:conv2d;in=3;out=64;kernel=11;stride=4;padding=2;image=224"
    assert _out_shape(build_from_spec(spec, 8)) == (8, 64, 55, 55)
    assert _out_shape(build_from_spec("getzner:conv2d;in=3;out=8;kernel=3;image=10")) == (1, 8, 8, 8)
    assert _out_shape(build_from_spec("getzner:linear;in=4096;out=1000", 4)) == (4, 1000)
    assert _out_shape(build_from_spec("getzner:maxpool2d;channels=64;kernel=3;stride=2;image=55")) == (
        1,
        64,
        27,
        27,
    )
    assert _out_shape(build_from_spec("getzner:tanh;size=100", 2)) == (2, 100)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "vgg16",
        "resnet:50",
        "torchvision:resnet50",
        "torchvision:vgg16;layer=x",
        "torchvision:vgg16;depth=3",
        "getzner:conv3d;in=1",
        "getzner:conv2d;in=3;out=64;kernel=11;stride=4;padding=2",  # no image
        "getzner:conv2d;in=3;out=64;kernel=11;image=5",  # kernel larger than image
        "getzner:conv2d;in=3;in=4;out=64;kernel=1;image=5",  # key twice
        "getzner:linear;in=0;out=10",
        "getzner:linear;in=4.5;out=10",
        "getzner:maxpool2d;channels=3;kernel=2;stride=2;padding=2;image=8",  # padding > kernel / 2
        "getzner:relu;size",
        "nb201:|none~0|+|none~0|none~1|+|none~0|none~1|none~2|;input=3x32",
        "nb201:|none~0|+|none~0|none~1|+|none~0|none~1|none~2|;fold_bn=yes",
        "nb201:|none~0|+|none~0|none~1|",
    ],
)
def test_bad_specs_raise_data_error(spec: str) -> None:
    with pytest.raises(DataError):
        build_from_spec(spec)


def test_bad_builder_arguments_raise_data_error() -> None:
    with pytest.raises(DataError):
        nasbench201(ARCHS[0], dtype="int8")
    with pytest.raises(DataError):
        nasbench201(ARCHS[0], weights="ones")
    with pytest.raises(DataError):
        spec_for_nasbench201(ARCHS[0], "imagenet")
    with pytest.raises(DataError):
        getzner_activation("gelu", 10)
    with pytest.raises(DataError):
        torchvision_model("alexnet", batch=0)


def test_spec_for_nasbench201_tasks() -> None:
    assert (
        spec_for_nasbench201(ARCHS[0], "cifar100") == f"nb201:{ARCHS[0]};C=16;N=5;classes=100;input=3x32x32"
    )
    assert spec_for_nasbench201(ARCHS[0], "ninapro").endswith(";classes=18;input=1x52x16")
    assert spec_for_nasbench201(ARCHS[0], "darcy", fold_batchnorm=True).endswith(
        ";classes=1;input=1x88x88;fold_bn=1"
    )


def test_random_weights_store_values_and_run() -> None:
    from onnx.reference import ReferenceEvaluator

    model = nasbench201(ARCHS[0], N=1, num_classes=5, input_shape=(2, 3, 8, 8), weights="random")
    onnx.checker.check_model(model, full_check=True)
    assert not any(n.op_type == "ConstantOfShape" for n in model.graph.node)
    light = nasbench201(ARCHS[0], N=1, num_classes=5, input_shape=(2, 3, 8, 8))
    assert _costs(model).totals.params == _costs(light).totals.params
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    (logits,) = ReferenceEvaluator(model).run(None, {"input": x})
    assert logits.shape == (2, 5)
    assert np.isfinite(logits).all()
    assert np.abs(logits).sum() > 0


# ----------------------------------------------------------------------------------------------------------
# Against PyTorch references (optional dependency)


def _torch_reference():
    """NAS-Bench-201's TinyNetwork as written in xautodl (models/cell_operations.py, cell_infers/cells.py,
    cell_infers/tiny_network.py), restricted to the five NAS-Bench-201 operations, and torchvision's
    AlexNet and VGG."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class ReLUConvBN(nn.Module):
        def __init__(
            self, C_in, C_out, kernel_size, stride, padding, dilation, affine, track_running_stats=True
        ):
            super().__init__()
            self.op = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, dilation=dilation,
                          bias=not affine),
                nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
            )  # fmt: skip

        def forward(self, x):
            return self.op(x)

    class ResNetBasicblock(nn.Module):
        def __init__(self, inplanes, planes, stride, affine=True, track_running_stats=True):
            super().__init__()
            self.conv_a = ReLUConvBN(inplanes, planes, 3, stride, 1, 1, affine, track_running_stats)
            self.conv_b = ReLUConvBN(planes, planes, 3, 1, 1, 1, affine, track_running_stats)
            if stride == 2:
                self.downsample = nn.Sequential(
                    nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                    nn.Conv2d(inplanes, planes, kernel_size=1, stride=1, padding=0, bias=False),
                )
            elif inplanes != planes:
                self.downsample = ReLUConvBN(inplanes, planes, 1, 1, 0, 1, affine, track_running_stats)
            else:
                self.downsample = None
            self.out_dim = planes

        def forward(self, inputs):
            basicblock = self.conv_b(self.conv_a(inputs))
            residual = self.downsample(inputs) if self.downsample is not None else inputs
            return residual + basicblock

    class POOLING(nn.Module):
        def __init__(self, C_in, C_out, stride, mode, affine=True, track_running_stats=True):
            super().__init__()
            self.preprocess = (
                None if C_in == C_out else ReLUConvBN(C_in, C_out, 1, 1, 0, 1, affine, track_running_stats)
            )
            self.op = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

        def forward(self, inputs):
            x = self.preprocess(inputs) if self.preprocess else inputs
            return self.op(x)

    class Identity(nn.Module):
        def forward(self, x):
            return x

    class Zero(nn.Module):
        def __init__(self, C_in, C_out, stride):
            super().__init__()
            self.C_in, self.C_out, self.stride = C_in, C_out, stride

        def forward(self, x):
            if self.C_in == self.C_out:
                if self.stride == 1:
                    return x.mul(0.0)
                return x[:, :, :: self.stride, :: self.stride].mul(0.0)
            shape = list(x.shape)
            shape[1] = self.C_out
            return x.new_zeros(shape, dtype=x.dtype, device=x.device)

    OPS = {
        "none": lambda C_in, C_out, stride, affine, trs: Zero(C_in, C_out, stride),
        "avg_pool_3x3": lambda C_in, C_out, stride, affine, trs: POOLING(
            C_in, C_out, stride, "avg", affine, trs
        ),
        "nor_conv_3x3": lambda C_in, C_out, stride, affine, trs: ReLUConvBN(
            C_in, C_out, (3, 3), (stride, stride), (1, 1), (1, 1), affine, trs
        ),
        "nor_conv_1x1": lambda C_in, C_out, stride, affine, trs: ReLUConvBN(
            C_in, C_out, (1, 1), (stride, stride), (0, 0), (1, 1), affine, trs
        ),
        "skip_connect": lambda C_in, C_out, stride, affine, trs: (
            Identity()
            if stride == 1 and C_in == C_out
            else pytest.fail("FactorizedReduce is not reached in NAS-Bench-201")
        ),
    }

    class InferCell(nn.Module):
        def __init__(self, genotype, C_in, C_out, stride, affine=True, track_running_stats=True):
            super().__init__()
            self.layers = nn.ModuleList()
            self.node_IN, self.node_IX = [], []
            for node_info in genotype:
                cur_index, cur_innod = [], []
                for op_name, op_in in node_info:
                    if op_in == 0:
                        layer = OPS[op_name](C_in, C_out, stride, affine, track_running_stats)
                    else:
                        layer = OPS[op_name](C_out, C_out, 1, affine, track_running_stats)
                    cur_index.append(len(self.layers))
                    cur_innod.append(op_in)
                    self.layers.append(layer)
                self.node_IX.append(cur_index)
                self.node_IN.append(cur_innod)
            self.out_dim = C_out

        def forward(self, inputs):
            nodes = [inputs]
            for node_layers, node_innods in zip(self.node_IX, self.node_IN, strict=True):
                node_feature = sum(
                    self.layers[_il](nodes[_ii]) for _il, _ii in zip(node_layers, node_innods, strict=True)
                )
                nodes.append(node_feature)
            return nodes[-1]

    class TinyNetwork(nn.Module):
        def __init__(self, C, N, genotype, num_classes):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C)
            )
            layer_channels = [C] * N + [C * 2] + [C * 2] * N + [C * 4] + [C * 4] * N
            layer_reductions = [False] * N + [True] + [False] * N + [True] + [False] * N
            C_prev = C
            self.cells = nn.ModuleList()
            for C_curr, reduction in zip(layer_channels, layer_reductions, strict=True):
                cell = (
                    ResNetBasicblock(C_prev, C_curr, 2)
                    if reduction
                    else InferCell(genotype, C_prev, C_curr, 1)
                )
                self.cells.append(cell)
                C_prev = cell.out_dim
            self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
            self.global_pooling = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(C_prev, num_classes)

        def forward(self, inputs):
            feature = self.stem(inputs)
            for cell in self.cells:
                feature = cell(feature)
            out = self.lastact(feature)
            out = self.global_pooling(out)
            out = out.view(out.size(0), -1)
            logits = self.classifier(out)
            return out, logits

    class LogitsOnly(nn.Module):  # HW-NAS-Bench-360 scripts/utils/convert_utils.py
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)[1]

    def build_nb201(arch, in_channels, num_classes, N=5):
        net = TinyNetwork(16, N, parse_arch_str(arch), num_classes)
        if in_channels != 3:  # HW-NAS-Bench-360 scripts/utils/model_utils.py
            old = net.stem[0]
            net.stem[0] = nn.Conv2d(
                in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                padding=old.padding, bias=old.bias is not None,
            )  # fmt: skip
        with torch.no_grad():  # distinct BN values, so the exporter cannot merge equal initializers
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 1.5)
        return LogitsOnly(net).eval()

    def vgg(cfg):
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c = v
        return nn.Sequential(
            nn.Sequential(*layers),
            nn.AdaptiveAvgPool2d((7, 7)),
            nn.Flatten(1),
            nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, 4096),
                          nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, 1000)),
        )  # fmt: skip

    def alexnet():
        return nn.Sequential(
            nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
            ),
            nn.AdaptiveAvgPool2d((6, 6)),
            nn.Flatten(1),
            nn.Sequential(
                nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
                nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1000),
            ),
        )  # fmt: skip

    cfgs = {
        "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    }
    classic = {"alexnet": alexnet, **{k: (lambda c=c: vgg(c)) for k, c in cfgs.items()}}
    return torch, build_nb201, classic


def _export(torch, module, x, preserve_bn: bool) -> onnx.ModelProto:
    import io
    import warnings

    buffer = io.BytesIO()
    mode = torch.onnx.TrainingMode.PRESERVE if preserve_bn else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, opset_version=17, dynamo=False, training=mode,
                          input_names=["input"], output_names=["logits"])  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def _flop_counter_macs(torch, module, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2  # convolution and matmul FLOPs = 2 x MACs


NB201_TORCH_CASES = [(ARCHS[0], "cifar100"), (ARCHS[3], "ninapro"), (ARCHS[2], "darcy")]


@pytest.mark.parametrize(("arch", "task"), NB201_TORCH_CASES)
def test_nb201_matches_torch_export(arch: str, task: str) -> None:
    torch, build_nb201, _ = _torch_reference()
    (cin, h, w), classes = {
        "cifar100": ((3, 32, 32), 100),
        "ninapro": ((1, 52, 16), 18),
        "darcy": ((1, 88, 88), 1),
    }[task]
    net = build_nb201(arch, cin, classes)
    x = torch.randn(1, cin, h, w)
    plain = build_from_spec(spec_for_nasbench201(arch, task))
    folded = build_from_spec(spec_for_nasbench201(arch, task, fold_batchnorm=True))
    exported_eval = _export(torch, net, x, preserve_bn=False)  # what HW-NAS-Bench-360 measured
    exported_bn = _export(torch, net, x, preserve_bn=True)

    assert _ops(folded) == _ops(exported_eval)
    assert _ops(plain) == _ops(exported_bn)
    plain_costs, folded_costs = _costs(plain), _costs(folded)
    eval_costs, bn_costs = _costs(exported_eval), _costs(exported_bn)
    assert plain_costs.totals.params == sum(p.numel() for p in net.parameters())
    assert folded_costs.totals.params == eval_costs.totals.params
    assert folded_costs.totals.macs == eval_costs.totals.macs
    assert plain_costs.totals.macs == bn_costs.totals.macs
    assert plain_costs.totals.flops == bn_costs.totals.flops
    torch_macs = _flop_counter_macs(torch, net, x)
    assert _conv_gemm_macs(plain_costs) == torch_macs
    assert _conv_gemm_macs(bn_costs) == torch_macs


def _random_archs(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ops = rng.integers(0, len(NB201_OPS), size=(count, 6))
    return ["|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*(NB201_OPS[i] for i in row)) for row in ops]


@pytest.mark.parametrize("arch", _random_archs(12, seed=201))
def test_nb201_random_archs_match_torch_export_node_for_node(arch: str) -> None:
    torch, build_nb201, _ = _torch_reference()
    net = build_nb201(arch, 3, 10, N=1)
    exported = _export(torch, net, torch.randn(2, 3, 32, 32), preserve_bn=False)
    ours = nasbench201(arch, N=1, input_shape=(2, 3, 32, 32), fold_batchnorm=True)
    assert _ops(ours) == _ops(exported)
    assert _costs(ours).totals == _costs(exported).totals


def test_nb201_random_weights_compute_what_torch_computes() -> None:
    from onnx.reference import ReferenceEvaluator

    torch, build_nb201, _ = _torch_reference()
    arch = ARCHS[2]
    model = nasbench201(arch, N=1, num_classes=7, input_shape=(2, 3, 16, 16), weights="random")
    net = build_nb201(arch, 3, 7, N=1)
    values = [numpy_helper.to_array(t) for t in model.graph.initializer]
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert [tuple(v.shape) for v in values] == [tuple(v.shape) for v in state.values()]
    net.load_state_dict(
        {k: torch.from_numpy(v.copy()) for k, v in zip(state, values, strict=True)}, strict=False
    )
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    (ours,) = ReferenceEvaluator(model).run(None, {"input": x})
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_torchvision_matches_torch_reference(name: str) -> None:
    torch, _, classic = _torch_reference()
    with torch.device("meta"):  # no memory for the weights: only shapes are needed
        net = classic[name]().eval()
    assert sum(p.numel() for p in net.parameters()) == PUBLISHED_PARAMS[name]
    x = torch.empty(2, 3, 224, 224, device="meta")
    assert _conv_gemm_macs(_costs(torchvision_model(name, batch=2))) == _flop_counter_macs(torch, net, x)


def test_alexnet_matches_torch_export() -> None:
    torch, _, classic = _torch_reference()
    net = classic["alexnet"]().eval()
    exported = _export(torch, net, torch.randn(1, 3, 224, 224), preserve_bn=False)
    ours = torchvision_model("alexnet")
    assert _ops(ours) == _ops(exported)
    assert _costs(ours).totals == _costs(exported).totals
