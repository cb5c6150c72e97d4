#!/usr/bin/env python3
"""Energy measurement campaign on one NVIDIA GPU: vision networks, transformers, NAS-Bench-201 cells, MLPs.

Runs on a machine with PyTorch, torchvision, timm, transformers, onnx and nvidia-ml-py and no package
registry: the repository tree is copied there and this script imports ``estimator`` from it (no install).
Every network is built with random weights (nothing is downloaded) and measured with the protocol of
``estimator.data.measure`` (NVML total-energy counter, idle power, warm-up, >= 3 windows of >= 1 s) at each batch
size and precision. Results go to ``--out``:

- ``measurements.csv``: one row per configuration (the project's measurement schema), rewritten after each;
- ``graphs.zip``: the ONNX graph of each network and precision, weights stripped (external data whose file
  is not shipped), named as the rows' ``onnx_file`` column says;
- ``failures.csv``: configurations that could not be built, run, measured or exported, and why;
- ``runs.json``: provenance of each run (dates, device, driver, clocks, library versions, settings).

A run stops cleanly before ``--budget-s`` is spent; ``--chunk i/n`` takes every n-th network, so each chunk
covers every family, and configurations already in ``--out``'s table or in ``--done`` tables are skipped.
See campaign/README.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import itertools
import json
import math
import platform
import random
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402  (after the repository is on the path)
from torch import nn  # noqa: E402

from estimator.data.counters import BOUNDARY_NVML, NvmlCounter, SimulatedCounter  # noqa: E402
from estimator.data.measure import (  # noqa: E402
    ProtocolSettings,
    measure_configurations,
    measure_idle_power,
    measure_torch_module,
    measurement_row,
)
from estimator.data.measurements import read_measurements  # noqa: E402
from estimator.zoo import NB201_OPS, spec_for_nasbench201  # noqa: E402

BATCHES = (1, 8, 32, 128)
DTYPES = ("float32", "float16")
SOURCE = "own-measurement-campaign"
CITATION = "this repository (campaign/run_campaign.py)"
#: Seconds one configuration costs beyond its windows (last inference's overshoot, syncs, row writing).
CONFIG_OVERHEAD_S = 0.4
#: Seconds one network costs beyond its configurations (build, idle window excluded, 2 ONNX exports).
NETWORK_OVERHEAD_S = 5.0
#: Seconds kept free at the end of a run for the last writes.
END_MARGIN_S = 15.0


@dataclass(frozen=True)
class Network:
    """A network to measure: how to build it (random weights) and one sample's input."""

    name: str  # unique, file-name safe
    model_ref: str
    group: str
    family: str
    task: str
    kind: str  # "vision" | "transformer" | "nb201" | "mlp"
    sample_shape: tuple[int, ...]  # one sample, batch excluded
    build: Callable[[], nn.Module] = field(compare=False, repr=False)
    vocab: int = 0  # token inputs (transformers): ids drawn from [0, vocab)
    batches: tuple[int, ...] = BATCHES


@dataclass(frozen=True)
class Config:
    network: Network
    batch: int
    dtype: str

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.network.model_ref, self.batch, self.dtype)

    def __str__(self) -> str:
        return f"{self.network.name} b{self.batch} {self.dtype}"


# ------------------------------------------------------------------------------------------------ networks

# torchvision.models.get_model names -> family. Input 3x224x224 unless said otherwise.
TORCHVISION = {
    "resnet18": "ResNet",
    "resnet34": "ResNet",
    "resnet50": "ResNet",
    "resnet101": "ResNet",
    "resnext50_32x4d": "ResNeXt",
    "wide_resnet50_2": "ResNet",
    "regnet_x_400mf": "RegNet",
    "regnet_y_400mf": "RegNet",
    "regnet_y_1_6gf": "RegNet",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3",
    "mobilenet_v3_large": "MobileNetV3",
    "efficientnet_b0": "EfficientNet",
    "efficientnet_b3": "EfficientNet",
    "efficientnet_v2_s": "EfficientNetV2",
    "convnext_tiny": "ConvNeXt",
    "convnext_small": "ConvNeXt",
    "densenet121": "DenseNet",
    "densenet169": "DenseNet",
    "vgg11_bn": "VGG",
    "vgg16": "VGG",
    "alexnet": "AlexNet",
    "googlenet": "GoogLeNet",
    "inception_v3": "Inception",
    "squeezenet1_1": "SqueezeNet",
    "shufflenet_v2_x1_0": "ShuffleNetV2",
    "mnasnet1_0": "MNASNet",
    "vit_b_16": "ViT",
    "vit_b_32": "ViT",
    "swin_t": "Swin",
    "swin_s": "Swin",
    "maxvit_t": "MaxViT",
}
TORCHVISION_INPUT = {"inception_v3": 299}

# timm.create_model names -> family (families torchvision lacks). Input 3x224x224 unless said otherwise.
TIMM = {
    "deit_tiny_patch16_224": "DeiT",
    "deit_small_patch16_224": "DeiT",
    "vit_small_patch16_224": "ViT",
    "mixer_s16_224": "MLP-Mixer",
    "mixer_b16_224": "MLP-Mixer",
    "resmlp_12_224": "ResMLP",
    "poolformer_s12": "PoolFormer",
    "levit_128": "LeViT",
    "mobilevit_s": "MobileViT",
    "efficientformer_l1": "EfficientFormer",
    "ghostnet_100": "GhostNet",
    "cait_xxs24_224": "CaiT",
    "coat_lite_tiny": "CoaT",
    "edgenext_small": "EdgeNeXt",
}
TIMM_INPUT = {"mobilevit_s": 256, "edgenext_small": 256}

# (name, layers, hidden, heads) of BERT-like encoders and GPT-2-like decoders; feed-forward = 4 x hidden.
BERT = (
    ("bert-tiny", 2, 128, 2),
    ("bert-mini", 4, 256, 4),
    ("bert-medium", 8, 512, 8),
    ("bert-base", 12, 768, 12),
)
GPT2 = (
    ("gpt2-tiny", 4, 256, 4),
    ("distilgpt2", 6, 768, 12),
    ("gpt2", 12, 768, 12),
    ("gpt2-medium", 24, 1024, 16),
)
SEQUENCE_LENGTHS = (128, 512)

NB201_ARCHS = 24
NB201_TASK = "cifar100"  # 3x32x32, 100 classes: the task HW-NAS-Bench-360 measured on the Raspberry Pi 5

# BUTTER-style MLPs (Tripp et al., 2022): ReLU, input 1024, 10 outputs; hidden widths cross the GPU's L2.
MLP_SHAPES = ("rectangle", "trapezoid")
MLP_DEPTHS = (2, 4, 8)
MLP_WIDTHS = (256, 1024, 2048, 4096)
MLP_INPUT, MLP_OUTPUT = 1024, 10


def vision_networks() -> list[Network]:
    out = []
    for name, family in TORCHVISION.items():
        size = TORCHVISION_INPUT.get(name, 224)
        out.append(
            Network(
                name=f"torchvision-{name}",
                model_ref=f"torchvision:{name}",
                group=name,
                family=family,
                task="imagenet",
                kind="vision",
                sample_shape=(3, size, size),
                build=lambda name=name: _torchvision(name),
            )
        )
    for name, family in TIMM.items():
        size = TIMM_INPUT.get(name, 224)
        out.append(
            Network(
                name=f"timm-{name}",
                model_ref=f"timm:{name}",
                group=name,
                family=family,
                task="imagenet",
                kind="vision",
                sample_shape=(3, size, size),
                build=lambda name=name: _timm(name),
            )
        )
    return out


def _torchvision(name: str) -> nn.Module:
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": True} if name in ("inception_v3", "googlenet") else {}
    return torchvision.models.get_model(name, weights=None, **kwargs)


def _timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


class LastHiddenState(nn.Module):
    """A transformers model returning its last hidden state as a plain tensor (exportable)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).last_hidden_state


def _bert(layers: int, hidden: int, heads: int) -> nn.Module:
    import transformers

    config = transformers.BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
    )
    return LastHiddenState(transformers.BertModel(config, add_pooling_layer=False))


def _gpt2(layers: int, hidden: int, heads: int) -> nn.Module:
    import transformers

    config = transformers.GPT2Config(
        n_embd=hidden, n_layer=layers, n_head=heads, n_positions=1024, use_cache=False
    )
    return LastHiddenState(transformers.GPT2Model(config))


def transformer_networks() -> list[Network]:
    out = []
    for (family, specs, build, vocab), seq in itertools.product(
        (("BERT", BERT, _bert, 30522), ("GPT-2", GPT2, _gpt2, 50257)), SEQUENCE_LENGTHS
    ):
        for name, layers, hidden, heads in specs:
            kind = "encoder" if family == "BERT" else "decoder"
            out.append(
                Network(
                    name=f"{name}-seq{seq}",
                    model_ref=f"transformers:{kind};layers={layers};hidden={hidden};heads={heads};seq={seq}",
                    group=name,
                    family=family,
                    task=f"tokens-{seq}",
                    kind="transformer",
                    sample_shape=(seq,),
                    build=lambda b=build, a=(layers, hidden, heads): b(*a),
                    vocab=vocab,
                )
            )
    return out


def nb201_archs(count: int, seed: int = 201) -> list[str]:
    """``count`` distinct NAS-Bench-201 cells drawn uniformly (fixed seed), in NAS-Bench-201's notation."""
    rng = random.Random(seed)
    archs: dict[str, None] = {}
    while len(archs) < count:
        ops = [rng.choice(NB201_OPS) for _ in range(6)]
        nodes = (ops[0:1], ops[1:3], ops[3:6])
        archs["+".join("|" + "|".join(f"{op}~{j}" for j, op in enumerate(node)) + "|" for node in nodes)] = (
            None
        )
    return list(archs)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)
        )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class Cell(nn.Module):
    """NAS-Bench-201 ``InferCell``: node i is the sum of one operation on each earlier node."""

    def __init__(self, arch: str, c: int) -> None:
        super().__init__()
        make = {
            "none": Zero,
            "skip_connect": nn.Identity,
            "nor_conv_1x1": lambda: ReLUConvBN(c, c, 1, 1),
            "nor_conv_3x3": lambda: ReLUConvBN(c, c, 3, 1),
            "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        }
        self.nodes = [
            [(int(e.split("~")[1]), e.split("~")[0]) for e in n.strip("|").split("|")]
            for n in arch.split("+")
        ]
        self.edges = nn.ModuleList(make[op]() for node in self.nodes for _, op in node)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, edges = [x], iter(self.edges)
        for node in self.nodes:
            states.append(sum(next(edges)(states[j]) for j, _ in node))
        return states[-1]


class ResNetBasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def nb201_network(arch: str, c: int = 16, n: int = 5, classes: int = 100) -> nn.Module:
    """NAS-Bench-201 ``TinyNetwork`` (see estimator/zoo/nasbench201.py for the layer list)."""
    layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)]
    for stage, width in enumerate((c, 2 * c, 4 * c)):
        if stage:
            layers.append(ResNetBasicBlock(width // 2, width))
        layers.extend(Cell(arch, width) for _ in range(n))
    layers += [
        nn.BatchNorm2d(4 * c),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * c, classes),
    ]
    return nn.Sequential(*layers)


def nb201_networks() -> list[Network]:
    out = []
    for arch in nb201_archs(NB201_ARCHS):
        ops = "-".join(
            e.split("~")[0].replace("_", "") for e in arch.replace("+", "").strip("|").split("|") if e
        )
        out.append(
            Network(
                name=f"nb201-{ops}",
                model_ref=spec_for_nasbench201(arch, NB201_TASK),
                group=f"nb201:{arch}",
                family="nb201",
                task=NB201_TASK,
                kind="nb201",
                sample_shape=(3, 32, 32),
                build=lambda arch=arch: nb201_network(arch),
            )
        )
    return out


def mlp_widths(shape: str, depth: int, width: int) -> list[int]:
    """Hidden widths: constant (rectangle) or falling linearly from ``width`` to the output (trapezoid)."""
    if shape == "rectangle":
        return [width] * depth
    return [max(MLP_OUTPUT, round(width - (width - MLP_OUTPUT) * i / depth)) for i in range(depth)]


def mlp_networks() -> list[Network]:
    out = []
    for shape, depth, width in itertools.product(MLP_SHAPES, MLP_DEPTHS, MLP_WIDTHS):
        widths = mlp_widths(shape, depth, width)
        dims = [MLP_INPUT, *widths]
        out.append(
            Network(
                name=f"mlp-{shape}-w{width}-d{depth}",
                model_ref=f"mlp:{shape};input={MLP_INPUT};widths={'x'.join(map(str, widths))};"
                f"output={MLP_OUTPUT}",
                group=f"mlp-{shape}-w{width}-d{depth}",
                family="mlp",
                task="butter-synthetic",
                kind="mlp",
                sample_shape=(MLP_INPUT,),
                build=lambda dims=dims: nn.Sequential(
                    *(m for a, b in itertools.pairwise(dims) for m in (nn.Linear(a, b), nn.ReLU())),
                    nn.Linear(dims[-1], MLP_OUTPUT),
                ),
            )
        )
    return out


GROUPS: dict[str, Callable[[], list[Network]]] = {
    "vision": vision_networks,
    "transformer": transformer_networks,
    "nb201": nb201_networks,
    "mlp": mlp_networks,
}


def interleave(lists: Sequence[Sequence[Network]]) -> list[Network]:
    """Round robin over the groups, so that a run cut short has measured networks of every group."""
    out = []
    for items in itertools.zip_longest(*lists):
        out.extend(n for n in items if n is not None)
    return out


# ----------------------------------------------------------------------------------------------- measuring


class BudgetSpent(Exception):
    """The run's time budget would be exceeded by the next configuration."""


class Failed(Exception):
    """A configuration that cannot be measured; logged to failures.csv, the campaign goes on."""


class Campaign:
    """Builds networks one at a time, measures configurations, exports graphs, logs failures."""

    def __init__(self, args: argparse.Namespace, counter: Any, settings: ProtocolSettings, out: Path) -> None:
        self.args, self.counter, self.settings, self.out = args, counter, settings, out
        self.device = torch.device(args.device)
        self.started = time.monotonic()
        self.network: Network | None = None
        self.module: nn.Module | None = None
        self.idle_power_w: float | None = None
        self.exported: set[str] = set(_zip_names(out / "graphs.zip"))
        self.failures = 0

    # -- time
    def config_seconds(self) -> float:
        s = self.settings
        return s.warmup_s + s.repeats * s.window_s + CONFIG_OVERHEAD_S

    def check_budget(self, config: Config) -> None:
        need = self.config_seconds() + END_MARGIN_S
        if config.network != self.network:
            need += self.settings.idle_s + NETWORK_OVERHEAD_S
        if time.monotonic() - self.started + need > self.args.budget_s:
            raise BudgetSpent

    # -- one configuration
    def measure(self, config: Config) -> dict[str, Any] | None:
        self.check_budget(config)
        try:
            self._prepare(config.network)
            x = self._input(config.network, config.batch)
            result = measure_torch_module(
                self.module,
                [x],
                device=self.args.device,
                dtype=config.dtype,
                counter=self.counter,
                settings=self.settings,
                idle_power_w=self.idle_power_w,
            )
        except (Failed, torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            self._fail(config, "measure", exc)
            return None
        graph = self._export(config)
        versions = {**result.versions, **_library_versions()}
        net = config.network
        return {
            **measurement_row(
                replace(result, versions=versions),
                model_ref=net.model_ref,
                batch=config.batch,
                group=net.group,
                family=net.family,
                task=net.task,
                hardware=self.args.hardware,
                input_shape="x".join(map(str, net.sample_shape)),
                source="dry-run" if self.args.dry_run else SOURCE,
                citation=CITATION,
                notes=self._notes(),
            ),
            "onnx_file": graph,
            "campaign_kind": net.kind,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }

    def _notes(self) -> str:
        notes = "random weights; eager PyTorch; idle power measured once per network, before its first config"
        return "SIMULATED COUNTER (dry run); " + notes if self.args.dry_run else notes

    def _prepare(self, network: Network) -> None:
        if network == self.network:
            if self.module is None:
                raise Failed("could not be built (see its first failure)")
            return
        self.network, self.module, self.idle_power_w = network, None, None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        try:
            torch.manual_seed(0)
            self.module = network.build().eval()
        except Exception as exc:  # a missing model name, an API change in the library
            raise Failed(f"cannot build: {type(exc).__name__}: {exc}") from exc
        self.idle_power_w = measure_idle_power(
            self.counter, self.settings.idle_s, synchronize=self._synchronize
        )

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _input(self, network: Network, batch: int, dtype: str = "float32") -> torch.Tensor:
        shape = (batch, *network.sample_shape)
        if network.vocab:
            return torch.randint(0, network.vocab, shape, device=self.device)
        return torch.randn(shape, device=self.device, dtype=getattr(torch, dtype))

    def _export(self, config: Config) -> str:
        """The graph's name in graphs.zip, written once per network and precision; '' when export fails."""
        name = f"graphs/{config.network.name}__{config.dtype}.onnx"
        if name in self.exported or self.args.no_export:
            return name if name in self.exported else ""
        try:
            example = self._input(config.network, 2, config.dtype)
            payload = export_stripped(self.module, example, config.network.vocab > 0)
        except Exception as exc:  # the exporter raises many types; the measurement stands without a graph
            self._fail(config, "export", exc)
            self.exported.add(name)  # do not retry at every batch size
            return ""
        with zipfile.ZipFile(self.out / "graphs.zip", "a", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, payload)
        self.exported.add(name)
        return name

    def _fail(self, config: Config, stage: str, exc: BaseException) -> None:
        self.failures += 1
        path = self.out / "failures.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["network", "model_ref", "batch", "dtype", "stage", "error", "at"])
            message = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
            writer.writerow(
                [
                    config.network.name,
                    config.network.model_ref,
                    config.batch,
                    config.dtype,
                    stage,
                    message,
                    _now(),
                ]
            )
            handle.flush()
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        print(f"  failed ({stage}): {config}: {message}", file=sys.stderr, flush=True)


def export_stripped(module: nn.Module, example: torch.Tensor, tokens: bool) -> bytes:
    """The module's ONNX graph (opset 17, symbolic batch) with every float weight >= 1 KiB made external.

    The weights become external-data references to a file that is not shipped (``weights.bin``): the graph
    keeps every tensor's shape and type for the estimator, and stays a few hundred kB.
    """
    import onnx
    from onnx.external_data_helper import set_external_data

    buffer = io.BytesIO()
    name = "input_ids" if tokens else "input"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=[name],
            output_names=["output"],
            dynamic_axes={name: {0: "batch"}, "output": {0: "batch"}},
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    floats = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    }
    offset = 0
    for tensor in model.graph.initializer:
        if tensor.data_type in floats and tensor.HasField("raw_data") and len(tensor.raw_data) >= 1024:
            length = len(tensor.raw_data)
            set_external_data(tensor, location="weights.bin", offset=offset, length=length)
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            offset += length
    return model.SerializeToString()


def _zip_names(path: Path) -> list[str]:
    if not path.exists():
        return []
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def _library_versions() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for name in ("torchvision", "timm", "transformers", "onnx", "nvidia-ml-py"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------ planning


def plan(args: argparse.Namespace) -> list[Config]:
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise SystemExit(f"unknown group(s) {', '.join(unknown)}: use {', '.join(GROUPS)}")
    index, count = args.chunk
    networks = interleave([GROUPS[g]()[index - 1 :: count] for g in groups])
    batches = tuple(int(b) for b in args.batches.split(","))
    dtypes = tuple(d.strip() for d in args.dtypes.split(","))
    return [Config(n, b, d) for n in networks for d in dtypes for b in n.batches if b in batches]


def estimate_seconds(configs: Sequence[Config], settings: ProtocolSettings) -> float:
    """Expected wall time of a list of configurations, in seconds."""
    networks = len({c.network for c in configs})
    per_config = settings.warmup_s + settings.repeats * settings.window_s + CONFIG_OVERHEAD_S
    return len(configs) * per_config + networks * (settings.idle_s + NETWORK_OVERHEAD_S)


def parse_chunk(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"chunk {text!r} is not i/n") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"chunk {text!r}: i must be between 1 and n")
    return index, count


def done_keys(paths: Sequence[Path]) -> set[tuple[str, int, str]]:
    keys = set()
    for path in paths:
        if path.exists():
            table = read_measurements(path)
            keys |= {(r.model_ref, int(r.batch), r.dtype) for r in table.itertuples()}
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for measurements.csv, graphs.zip, ..."
    )
    parser.add_argument(
        "--chunk", type=parse_chunk, default=(1, 1), help="i/n: every n-th network from the i-th"
    )
    parser.add_argument("--budget-s", type=float, default=540.0, help="stop cleanly before this many seconds")
    parser.add_argument("--groups", default=",".join(GROUPS), help="comma list of " + ", ".join(GROUPS))
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="float32, float16, bfloat16")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument(
        "--hardware", default=None, help="hardware profile name (default: slug of the GPU name)"
    )
    parser.add_argument("--done", type=Path, nargs="*", default=[], help="earlier tables whose rows to skip")
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle-s", type=float, default=1.0)
    parser.add_argument("--warmup-s", type=float, default=0.5)
    parser.add_argument("--no-export", action="store_true", help="do not write ONNX graphs")
    parser.add_argument("--list", action="store_true", help="print the plan and its duration, run nothing")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU, simulated counter, 0.05 s windows: checks the script itself",
    )
    args = parser.parse_args(argv)

    if args.dry_run:
        args.device, args.window_s, args.idle_s, args.warmup_s = "cpu", 0.05, 0.05, 0.0
        args.hardware = args.hardware or "dry-run-cpu"
    settings = ProtocolSettings(
        idle_s=args.idle_s,
        warmup_s=args.warmup_s,
        warmup_runs=3,
        window_s=args.window_s,
        repeats=args.repeats,
    )
    if not args.dry_run:
        settings.check_hygiene()
    configs = plan(args)
    skip = done_keys([*args.done, args.out / "measurements.csv"])
    todo = [c for c in configs if c.key not in skip]
    total = estimate_seconds(todo, settings)
    chunks = math.ceil(total / (args.budget_s - END_MARGIN_S)) if todo else 0
    print(
        f"{len(todo)} configurations to measure ({len(configs) - len(todo)} already done) on "
        f"{len({c.network for c in todo})} networks: about {total / 60:.1f} min, "
        f"{chunks} run(s) of {args.budget_s / 60:.1f} min",
        file=sys.stderr,
        flush=True,
    )
    if args.list:
        for c in todo:
            print(c)
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        counter: Any = SimulatedCounter(time.perf_counter, idle_w=50.0, boundary=BOUNDARY_NVML)
    else:
        counter = NvmlCounter(torch.device(args.device).index or 0)
    run = {
        "started": _now(),
        "chunk": "/".join(map(str, args.chunk)),
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "libraries": _library_versions(),
        "settings": asdict(settings),
        "counter_at_start": dict(counter.metadata()),
    }
    campaign = Campaign(args, counter, settings, args.out)
    table = args.out / "measurements.csv"
    rows_before = len(done_keys([table]))
    stopped = "finished"
    try:
        measure_configurations(
            todo,
            campaign.measure,
            args.out / "measurements.csv",
            key=lambda r: (r["model_ref"], int(r["batch"]), r["dtype"]),
            config_key=lambda c: c.key,
        )
    except BudgetSpent:
        stopped = "time budget reached"
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        run.update(
            finished=_now(),
            stopped=stopped,
            failures=campaign.failures,
            counter_at_end=dict(counter.metadata()),
        )
        runs_path = args.out / "runs.json"
        runs = json.loads(runs_path.read_text()) if runs_path.exists() else []
        runs_path.write_text(json.dumps([*runs, run], indent=1, default=str) + "\n")
        if hasattr(counter, "close"):
            counter.close()
    finished = done_keys([table])
    left = len([c for c in todo if c.key not in finished])
    print(
        f"{stopped}: {len(finished) - rows_before} new rows ({len(finished)} in {table}), "
        f"{campaign.failures} failures, {left} configurations of this plan left",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
