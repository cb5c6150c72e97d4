"""The graph each measured CNN refers to: Keras Applications and torchvision models -> their timm twins.

Measurement rows name a network as ``data/graphs/<timm name>.onnx`` (weight-stripped graphs exported from timm;
see data/graphs/manifest.csv). A Keras model is rebuilt from the timm model with the same architecture; the
note of each entry says what differs. The Keras networks timm has no twin for (NASNetMobile, larq-zoo's
QuickNets) are rebuilt layer for layer from their Keras source in PyTorch (scripts/keras_twins.py; graph names
with a prefix of :data:`REBUILT_PREFIXES`). ``None`` would mean no graph: the row keeps ``keras:<name>`` as its
model_ref, which names the network but is not built.

Keras models add an input Rescaling/Normalization layer that timm graphs do not have (a few element-wise ops
per pixel, negligible next to the convolutions); that difference applies to every Keras entry.

The timm twins are exported with every BatchNormalization kept as an inference-mode node (the exporter's
Conv+BN folding, an eval-only pass, skipped: scripts/export_graphs.py, ``keep_bn``), as Keras and eager PyTorch
keep them as layers. Whether a BatchNormalization costs a kernel of its own is the runtime's business
(:attr:`estimator.energy.runtimes.Runtime.fusion`): eager PyTorch runs it alone, TensorFlow on a GPU runs it
apart from the convolution (grappler fuses Conv2D + FusedBatchNorm on the CPU only), graph runtimes fold it
into the convolution. What that changes on Fischer's RTX 4090 is measured in docs/fischer_rtx4090.md.
"""

from __future__ import annotations

#: Graph names of networks rebuilt from their Keras source (scripts/keras_twins.py), not taken from timm.
REBUILT_PREFIXES = ("keras-", "larq-")
QUICKNET_NOTE = (
    "rebuilt from larq-zoo's quicknet.py: binary convolutions as TensorFlow runs larq: sign of the input and of "
    "the stored kernel, float Conv"
)

#: Keras Applications name -> (graph name (a timm name unless rebuilt) or None, what differs).
KERAS_TO_TIMM: dict[str, tuple[str | None, str]] = {
    "ConvNeXtTiny": ("convnext_tiny", "same architecture"),
    "ConvNeXtSmall": ("convnext_small", "same architecture"),
    "ConvNeXtBase": ("convnext_base", "same architecture"),
    "ConvNeXtLarge": ("convnext_large", "same architecture"),
    "ConvNeXtXLarge": ("convnext_xlarge", "same architecture"),
    "DenseNet121": ("densenet121", "same architecture"),
    "DenseNet169": ("densenet169", "same architecture"),
    "DenseNet201": ("densenet201", "same architecture"),
    **{
        f"EfficientNetB{i}": (f"tf_efficientnet_b{i}", "TF 'same' padding twin; Keras input resolution")
        for i in range(8)
    },
    **{f"EfficientNetV2B{i}": (f"tf_efficientnetv2_b{i}", "TF-ported twin") for i in range(4)},
    "EfficientNetV2S": ("tf_efficientnetv2_s", "TF-ported twin"),
    "EfficientNetV2M": ("tf_efficientnetv2_m", "TF-ported twin"),
    "EfficientNetV2L": ("tf_efficientnetv2_l", "TF-ported twin"),
    "InceptionResNetV2": ("inception_resnet_v2", "ported from the TF-slim model; 299x299 input"),
    "InceptionV3": ("inception_v3", "torchvision-style port; 299x299 input"),
    "MobileNet": ("mobilenetv1_100", "timm's MobileNet-V1 1.0 (timm >= 1.0); Keras pads differently"),
    "MobileNetV2": ("mobilenetv2_100", "same architecture, PyTorch padding"),
    "MobileNetV3Large": ("tf_mobilenetv3_large_100", "TF-ported twin"),
    "MobileNetV3Small": ("tf_mobilenetv3_small_100", "TF-ported twin"),
    "NASNetLarge": ("nasnetalarge", "NASNet-A Large port, 331x331 input"),
    "NASNetMobile": ("keras-nasnet-mobile", "rebuilt layer for layer from Keras' nasnet.py; no timm twin"),
    "ResNet50": (
        "resnet50",
        "Keras ResNet v1 strides in the first 1x1 conv, timm in the 3x3 (same MACs +-1%)",
    ),
    "ResNet101": ("resnet101", "as ResNet50: stride placement differs"),
    "ResNet152": ("resnet152", "as ResNet50: stride placement differs"),
    "ResNet50V2": ("resnetv2_50", "pre-activation ResNet; Keras V2 strides at the block end"),
    "ResNet101V2": ("resnetv2_101", "pre-activation ResNet; Keras V2 strides at the block end"),
    "ResNet152V2": ("resnetv2_152", "pre-activation ResNet; Keras V2 strides at the block end"),
    "VGG16": ("vgg16", "same architecture"),
    "VGG19": ("vgg19", "same architecture"),
    "Xception": ("legacy_xception", "timm's port of the Keras Xception"),
    "QuickNet": ("larq-quicknet", QUICKNET_NOTE),
    "QuickNetSmall": ("larq-quicknet-small", QUICKNET_NOTE),
    "QuickNetLarge": ("larq-quicknet-large", QUICKNET_NOTE),
}

#: Fischer et al. 2022 PyTorch rows ran torchvision models; name -> (timm name, what differs). Each graph is
#: exported at the centre crop the run fed that model (scripts/export_graphs.py ``torchvision``), which the graph's
#: fixed input binds: EfficientNetB1-B7 at 240/288/300/380/456/528/600, the others at 224.
TORCHVISION_TO_TIMM: dict[str, tuple[str | None, str]] = {
    **{
        f"EfficientNetB{i}": (
            f"efficientnet_b{i}",
            f"torchvision efficientnet_b{i}: timm's PyTorch-padding twin",
        )
        for i in range(8)
    },
    "InceptionV3": ("inception_v3", "timm's port of torchvision inception_v3"),
    "MobileNetV2": ("mobilenetv2_100", "torchvision mobilenet_v2: same architecture"),
    "MobileNetV3Large": ("mobilenetv3_large_100", "torchvision mobilenet_v3_large: same architecture"),
    "MobileNetV3Small": ("mobilenetv3_small_100", "torchvision mobilenet_v3_small: same architecture"),
    "RegNetX400MF": ("regnetx_004_tv", "torchvision regnet_x_400mf: timm's torchvision-compatible twin"),
    "RegNetX8GF": ("regnetx_080", "torchvision regnet_x_8gf: same architecture"),
    "RegNetX32GF": ("regnetx_320", "torchvision regnet_x_32gf: same architecture"),
    "ResNet50": ("resnet50", "same architecture"),
    "ResNet101": ("resnet101", "same architecture"),
    "ResNet152": ("resnet152", "same architecture"),
    "ResNext50": ("resnext50_32x4d", "same architecture"),
    "ResNext101": ("resnext101_32x8d", "torchvision resnext101_32x8d: same architecture"),
    "VGG16": ("vgg16", "same architecture"),
    "VGG19": ("vgg19", "same architecture"),
}


#: Family of each source name (for grouped cross-validation by architecture family).
def family_of(name: str) -> str:
    """The architecture family of a Keras / torchvision model name, e.g. 'EfficientNetV2S' -> 'EfficientNetV2'."""
    for prefix in (
        "EfficientNetV2",
        "EfficientNet",
        "ConvNeXt",
        "DenseNet",
        "InceptionResNet",
        "Inception",
        "MobileNetV3",
        "MobileNetV2",
        "MobileNet",
        "NASNet",
        "ResNext",
        "RegNetX",
        "QuickNet",
        "VGG",
        "Xception",
    ):
        if name.startswith(prefix):
            return prefix
    if name.startswith("ResNet"):
        return "ResNetV2" if name.endswith("V2") else "ResNet"
    return name


def graph_ref(name: str, table: dict[str, tuple[str | None, str]], prefix: str) -> tuple[str, str]:
    """(model_ref, note) of a measured network: ``data/graphs/<graph>.onnx`` or ``<prefix>:<name>`` unbuilt."""
    graph, note = table.get(name, (None, "not in the mapping table"))
    if graph is None:
        return f"{prefix}:{name}", note
    kind = "" if graph.startswith(REBUILT_PREFIXES) else "timm "
    return f"data/graphs/{graph}.onnx", f"graph: {kind}{graph} ({note})"
