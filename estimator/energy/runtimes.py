"""Runtimes an estimate can be asked for, and the facts of each that the physics needs.

A runtime fixes how many units (CPU threads) a kernel runs on. Values come from how the runtime is used
by default or by the measured datasets this project learns from, cited per entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.errors import ProfileError, did_you_mean


@dataclass(frozen=True)
class Runtime:
    """One inference runtime.

    Attributes:
        name: runtime name used in measurement tables and ``--runtime``.
        device_kind: ``gpu`` or ``cpu``: the kind of profile it runs on.
        threads: CPU threads a kernel uses; ``None`` means every core of the profile.
        fuses: whether the runtime fuses nodes into kernels (graph runtimes do; eager PyTorch launches one
            kernel per op, apart from what a single library call does).
        source: where the thread count and the fusion behaviour come from.
    """

    name: str
    device_kind: str
    threads: int | None
    fuses: bool
    source: str


_HWNAS360 = (
    "HW-NAS-Bench-360 scripts/pi/bench_energy.py: 1 thread pinned to core 0 "
    "(see ../shared/datasets/hwnasbench360/PROVENANCE.md)"
)

#: Known runtimes by name.
RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("tflite", "cpu", 1, True, _HWNAS360 + "; TFLite fuses activations into convolutions"),
        Runtime(
            "onnxruntime", "cpu", 1, True, _HWNAS360 + "; ORT's graph optimizer fuses Conv+BN+activation"
        ),
        Runtime("torchscript-mobile", "cpu", 1, True, _HWNAS360 + "; optimize_for_mobile folds Conv+BN"),
        Runtime("pytorch-cpu", "cpu", None, False, "PyTorch eager: one thread per physical core, op by op"),
        Runtime(
            "onnxruntime-cpu", "cpu", None, True, "ONNX Runtime's default intra-op pool: a thread per core"
        ),
        Runtime("pytorch-cuda", "gpu", None, False, "eager PyTorch on CUDA: one launch per op, whole GPU"),
        Runtime("onnxruntime-cuda", "gpu", None, True, "ONNX Runtime CUDA execution provider, fused graph"),
        Runtime("tensorrt", "gpu", None, True, "TensorRT engine: layer and tensor fusion"),
    )
}


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; ProfileError listing the known ones otherwise."""
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ProfileError(
            f"unknown runtime '{name}'{did_you_mean(name, RUNTIMES)}; known runtimes: {', '.join(sorted(RUNTIMES))}"
        ) from None
