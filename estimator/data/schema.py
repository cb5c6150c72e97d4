"""The measurement schema: every column of a measurement table, its type, unit, and meaning.

`SCHEMA` is the one source of truth for the columns; `BOUNDARIES` names what an energy counter includes;
`RUNTIMES` names the inference runtimes. estimator.data.measurements reads, checks and writes tables against
it, and data/README.md documents the same list for people reading the CSV files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BOUNDARIES", "DTYPES", "LEVELS", "RUNTIMES", "SCHEMA", "Column", "TableKind"]

TableKind = Literal["training", "validation"]

#: The measurement boundaries (what the energy counter includes). Rows of different boundaries are never
#: pooled silently: a conversion between them is a named function in the importer that made the row.
BOUNDARIES: tuple[str, ...] = (
    "soc-core-rail-dynamic",  # Raspberry Pi 5 core rail from the PMIC, idle subtracted
    "cpu-package-rapl",  # CPU package energy from RAPL, idle included
    "gpu-board-nvml",  # one GPU board's energy from NVML (counter or integrated power samples), idle included
    # Several GPU boards' NVML energies summed while fewer of them work (`boards` says how many are summed).
    "gpu-boards-summed",
    # CodeCarbon's total: NVML GPU energy plus a RAPL or TDP-share CPU estimate plus a RAM estimate.
    "codecarbon-total",
    # A whole machine measured at its power supply by an external meter (IrEne's ground truth), idle included.
    "machine-total",
    "wall-system",  # the whole system at the wall socket, host and fans included
)

#: Granularities of a measured unit (the `level` column).
LEVELS: tuple[str, ...] = ("model", "module", "op")

#: Inference runtimes a row may name, with what each means.
RUNTIMES: dict[str, str] = {
    "tflite": "TensorFlow Lite / LiteRT interpreter on a CPU",
    "onnxruntime": "ONNX Runtime, CPU execution provider",
    "onnxruntime-cuda": "ONNX Runtime, CUDA execution provider",
    "torchscript-mobile": "TorchScript lite interpreter (PyTorch Mobile) on a CPU",
    "pytorch-cpu": "PyTorch eager on a CPU",
    "pytorch-cuda": "PyTorch eager on a GPU (one host dispatch per op)",
    "pytorch-cuda-sdpa": "PyTorch 2.x eager on a GPU whose model calls scaled_dot_product_attention (one fused "
    "attention kernel)",
    "tensorflow-gpu": "TensorFlow / Keras graph execution on a GPU without XLA (Keras 2)",
    "tensorflow-xla-gpu": "Keras 3 (TensorFlow 2.16 and later) on a GPU: predict compiled with XLA",
    "hf-pipeline": "a Hugging Face transformers pipeline call at batch 1 incl. pre- and post-processing",
    "tensorrt": "NVIDIA TensorRT engine",
    "vllm": "vLLM serving engine",
    "diffusers": "Hugging Face diffusers pipeline",
    "vendor": "an unnamed vendor stack (MLPerf submissions)",
}

#: Numeric precisions a row may declare for the arithmetic that ran.
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "float8", "int8")


@dataclass(frozen=True)
class Column:
    """One column of the measurement table.

    ``kind`` is the value type: ``str``, ``int``, ``float``, ``bool``. ``required`` says whether a training
    table must have a value in every row; ``validation_required`` says the same for validation tables.
    """

    name: str
    kind: Literal["str", "int", "float", "bool"]
    unit: str
    required: bool
    description: str
    validation_required: bool | None = None

    def required_in(self, table: TableKind) -> bool:
        """Whether a table of this kind must have a value for this column in every row."""
        if table == "validation" and self.validation_required is not None:
            return self.validation_required
        return self.required


SCHEMA: tuple[Column, ...] = (
    Column(
        "model_ref",
        "str",
        "-",
        True,
        "The network: an ONNX path relative to the repository, or a generator spec for estimator.zoo, "
        "e.g. 'nb201:<arch_str>;C=16;N=5;classes=100;input=3x32x32', "
        "'getzner:conv2d;in=3;out=64;kernel=11;stride=4;padding=2;image=224', 'torchvision:alexnet'. "
        "Validation rows name reference networks that zoo may not build ('mlperf:bert-large;seq=384').",
    ),
    Column(
        "group",
        "str",
        "-",
        True,
        "Architecture group for grouped cross-validation: 'nb201:<measured representative arch index>', "
        "the model name for whole networks and their layers ('alexnet'), the layer spec for random layers.",
    ),
    Column("family", "str", "-", True, "Architecture family: nb201, AlexNet, VGG, ResNet, BERT, conv2d, ..."),
    Column("task", "str", "-", True, "Task or data set the network is shaped for: cifar100, imagenet, ..."),
    Column(
        "batch",
        "int",
        "samples",
        True,
        "Samples in one forward pass (>= 1). Empty in validation rows whose batch was not reported.",
        validation_required=False,
    ),
    Column(
        "dtype",
        "str",
        "-",
        True,
        "Precision of the arithmetic: " + ", ".join(DTYPES) + ". May be empty in validation rows.",
        validation_required=False,
    ),
    Column("hardware", "str", "-", True, "Hardware profile name: rpi5, xeon-gold-5120, h100, a100-pcie, ..."),
    Column(
        "runtime",
        "str",
        "-",
        True,
        "Inference runtime, one of: " + ", ".join(RUNTIMES) + " (meanings in RUNTIMES).",
    ),
    Column("boundary", "str", "-", True, "What the energy includes, one of: " + ", ".join(BOUNDARIES) + "."),
    Column(
        "joules_per_inference",
        "float",
        "J",
        True,
        "Energy of one forward pass at `batch` samples (> 0). Empty in validation rows with no known batch.",
        validation_required=False,
    ),
    Column(
        "joules_per_sample",
        "float",
        "J",
        False,
        "Energy per sample (> 0): joules_per_inference / batch; for validation rows the energy per sample, "
        "query, request, image or video as the source reports it (see `notes`).",
        validation_required=True,
    ),
    Column(
        "latency_s",
        "float",
        "s",
        False,
        "Latency of one forward pass at `batch` (> 0); the median where the source gives one.",
    ),
    Column("idle_subtracted", "bool", "-", True, "Whether idle power was subtracted from the energy."),
    Column("repeats", "int", "-", True, "Independent energy measurements averaged into this row (>= 1)."),
    Column(
        "spread_rel",
        "float",
        "-",
        False,
        "Relative spread of the energy across repeats: (max - min) / median of the per-repeat energies "
        "(>= 0). Empty where the source gives one energy measurement per row.",
    ),
    Column(
        "latency_spread_rel",
        "float",
        "-",
        False,
        "Relative spread of latency: standard deviation / median over the timed runs (>= 0).",
    ),
    Column("source", "str", "-", True, "Data set id: hwnasbench360, getzner, mlperf_power, mlenergy, ..."),
    Column("citation", "str", "-", True, "Paper or repository to cite for the row."),
    Column("measured_at", "str", "date", False, "When it was measured: YYYY-MM-DD, YYYY-MM or YYYY."),
    Column("notes", "str", "-", False, "Free text caveats for the row."),
    Column(
        "input_shape", "str", "elements", False, "Shape of one sample, e.g. 3x32x32 (batch not included)."
    ),
    Column("num_classes", "int", "-", False, "Output classes of the network head (1 for regression heads)."),
    Column("architecture", "str", "-", False, "Whole network a layer row belongs to (alexnet, vgg11, ...)."),
    Column(
        "layer_idx",
        "int",
        "-",
        False,
        "Index of the layer in `architecture`: leaf modules in forward order, 0 = the whole network.",
    ),
    Column(
        "macs", "float", "MAC", False, "Multiply-accumulates of one forward pass as the source counted them."
    ),
    Column(
        "device_name", "str", "-", False, "The device as the source names it (e.g. 'NVIDIA H100-SXM-80GB')."
    ),
    Column("accelerators", "int", "-", False, "Accelerators that ran the inference together (>= 1)."),
    Column(
        "threads",
        "int",
        "-",
        False,
        "CPU threads the runtime used, when known (a job allocation may cap it).",
    ),
    Column("power_w", "float", "W", False, "Average power inside the boundary during the run (> 0)."),
    Column("throughput", "float", "1/s", False, "Throughput in `throughput_unit` (> 0)."),
    Column("throughput_unit", "str", "-", False, "samples/s, queries/s, tokens/s, images/s, ..."),
    Column(
        "scenario", "str", "-", False, "Benchmark scenario: Offline, Server, SingleStream, MultiStream, ..."
    ),
    Column("submission", "str", "-", False, "Result id inside the source (MLPerf public id, config file)."),
    Column("system_name", "str", "-", False, "The measured system as the source names it."),
    Column("joules_per_token", "float", "J", False, "Energy per output token (LLM serving rows; > 0)."),
    Column("output_tokens", "float", "tokens", False, "Mean output tokens per request (LLM serving rows)."),
    Column(
        "seq_len",
        "int",
        "tokens",
        False,
        "Tokens per sequence fed to a transformer (one sample = one sequence of `seq_len` tokens).",
    ),
    Column(
        "boards",
        "int",
        "-",
        False,
        "GPU boards whose energies are summed in the row (>= 1); with boundary gpu-boards-summed it may "
        "exceed `accelerators`, the boards that worked.",
    ),
    Column(
        "level",
        "str",
        "-",
        False,
        "Granularity of the measured unit: model (a whole forward pass), module (one submodule call, named "
        "in `module`), op (one primitive call, named in `module`). Empty means model.",
    ),
    Column(
        "module",
        "str",
        "-",
        False,
        "The measured submodule or primitive inside `model_ref` for module / op rows, as the source names it "
        "(IrEne: '<scope>:<class>', e.g. 'encoder.layer.3.attention:BertAttention').",
    ),
)
