"""Networks written directly as ONNX graphs (no PyTorch): NAS-Bench-201 cells, Getzner et al.'s single
modules, torchvision's AlexNet and VGG. Builders return an ``onnx.ModelProto`` (opset 17, static batch,
float32 or float16) whose weights are light ``ConstantOfShape`` fills unless ``weights="random"`` asks for
real initializers (see ``estimator.zoo._builder``). Building a NAS-Bench-201 network takes a few ms.

Model references used by the measurement tables, ``build_from_spec(spec, batch)``; a spec is
``<kind>:<main>[;key=value]*`` with the batch size given apart:

``nb201:<arch_str>[;C=16][;N=5][;classes=10][;input=3x32x32][;fold_bn=0]``
    NAS-Bench-201 ``TinyNetwork``; ``input`` is one sample's channels x height x width; ``fold_bn=1`` folds
    each Conv's BatchNorm into its bias as the exporter's eval mode does. ``spec_for_nasbench201(arch, task)``
    writes it for cifar10, cifar100, ImageNet16-120, ninapro (1x52x16, 18 classes) and darcy (1x88x88, 1).
``getzner:conv2d;in=;out=;kernel=;image=[;stride=1][;padding=0]``
    ``nn.Conv2d(in, out, kernel, stride, padding)`` with bias on ``batch x in x image x image``.
``getzner:linear;in=;out=``
    ``nn.Linear(in, out)`` with bias on ``batch x in``.
``getzner:maxpool2d;channels=;kernel=;stride=;image=[;padding=0]``
    ``nn.MaxPool2d(kernel, stride, padding)`` on ``batch x channels x image x image``.
``getzner:relu;size=`` (also ``sigmoid``, ``tanh``, ``softmax`` over dim 1)
    the activation on ``batch x size``: ``size`` is the element count per sample, Getzner's ``input_size``.
``torchvision:<alexnet|vgg11|vgg13|vgg16>[;layer=K]``
    the whole model on ``batch x 3 x 224 x 224``, or its leaf module K alone (0-based, Getzner's order) at
    the input shape it sees in the network. ``spec_for_getzner(record)`` maps a row of Getzner's tidy table.
``hf:<model id>;seq=N``
    a Hugging Face base model (what ``AutoModel.from_config`` runs) rebuilt from its published config for
    ``batch x seq`` token ids: bert-base-uncased, distilbert-base-uncased, roberta-base, gpt2, distilgpt2,
    openai-gpt (estimator.zoo.hf_models lists every difference from the real model).

Every malformed spec or impossible network raises :class:`estimator.errors.DataError`.
"""

from estimator.zoo.getzner import getzner_activation, getzner_conv2d, getzner_linear, getzner_maxpool2d
from estimator.zoo.nasbench201 import NB201_OPS, nasbench201, parse_arch_str
from estimator.zoo.spec import NB201_TASKS, build_from_spec, spec_for_getzner, spec_for_nasbench201
from estimator.zoo.torchvision_models import (
    MODELS as TORCHVISION_MODELS,
)
from estimator.zoo.torchvision_models import (
    torchvision_layer,
    torchvision_layer_count,
    torchvision_model,
)
from estimator.zoo.transformers import bert_encoder, gpt2_decoder

__all__ = [
    "NB201_OPS",
    "NB201_TASKS",
    "TORCHVISION_MODELS",
    "bert_encoder",
    "build_from_spec",
    "getzner_activation",
    "getzner_conv2d",
    "getzner_linear",
    "getzner_maxpool2d",
    "gpt2_decoder",
    "nasbench201",
    "parse_arch_str",
    "spec_for_getzner",
    "spec_for_nasbench201",
    "torchvision_layer",
    "torchvision_layer_count",
    "torchvision_model",
]
