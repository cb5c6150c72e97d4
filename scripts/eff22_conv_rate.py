"""Where the v2 prior over-prices ImageNetEff22's TensorFlow rows: the 3x3 stride-1 convolutions, per device.

    python scripts/eff22_conv_rate.py                       # both devices
    python scripts/eff22_conv_rate.py --device quadro-rtx5000

Per ``tensorflow-gpu`` row of ``data/fischer_eff22``: the prior's error with its host constants fitted on the
device's other families (leave-one-family-out, as ``docs/evaluation_gpu.md``'s per-device split), the prior's
seconds, the part of them its 3x3 stride-1 dense convolutions take (Conv, kernel 3x3, strides 1, group 1; the
larq QuickNets' binary convolutions are such convolutions of +-1 values) and their FLOPs. Diagnosis only (the
measured run time is read, nothing is fitted or shipped): the rate those convolutions would have run at if every
other term of the prior were right, ``FLOP_3x3 / (measured s - (prior s - prior s_3x3))``, shown where the
remainder is at least a tenth of the priced 3x3 time (otherwise the row is at its input pipeline's floor).

Why 3x3 stride 1: TensorFlow times every cuDNN forward algorithm for each convolution shape and keeps the fastest
(``CudnnUseAutotune``, ``TF_CUDNN_USE_AUTOTUNE`` default true: tensorflow/tensorflow @ 22a7115,
``tensorflow/core/util/use_cudnn.cc``), and cuDNN's Winograd algorithms, for 3x3 filters at stride 1, need
``(m + 2)^2 / (9 m^2)`` of the multiplications for an output tile of m x m (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016, arXiv:1509.09308): 1 / 2.25 for F(2x2, 3x3), 1 / 4 for F(4x4, 3x3).
The prior prices every convolution by its direct-convolution FLOPs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
SOURCE = "fischer_eff22"
RUNTIME = "tensorflow-gpu"


def winograd_multiply_share(tile: int, kernel: int = 3) -> float:
    """Multiplications of Winograd's F(tile x tile, kernel x kernel) per multiplication of the direct
    convolution (dimensionless): ``(tile + kernel - 1)^2 / (tile^2 kernel^2)`` (Lavin and Gray 2016)."""
    return (tile + kernel - 1) ** 2 / (tile**2 * kernel**2)


def conv3x3_seconds(model_ref: str, batch: int, profile: str) -> tuple[float, float]:
    """(prior seconds, FLOP) of the kernels that a 3x3 stride-1 dense convolution opens, of one graph at
    ``batch`` on ``profile`` under ``tensorflow-gpu``, shipped constants; the FLOPs include what the kernel
    fuses (a ``_FusedConv2D``'s bias and Relu: 2 FLOP per output)."""
    from kernel_terms import _terms

    kernels, _hw, _device_terms, result = _terms(model_ref, batch, profile, RUNTIME)
    nodes = onnx.load(str(ROOT / model_ref), load_external_data=False).graph.node
    seconds = flops = 0.0
    for i, k in enumerate(kernels.kernels):
        if not k.launches:
            continue
        first = kernels.costs.nodes[k.nodes[0]]
        node = nodes[first.index]
        if node.op_type != first.op_type:
            raise RuntimeError(
                f"{model_ref}: node {first.index} is {node.op_type}, the cost report says {first.op_type}"
            )
        if node.op_type != "Conv":
            continue
        a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        if (
            list(a.get("kernel_shape", ())) == [3, 3]
            and list(a.get("strides", [1, 1])) == [1, 1]
            and a.get("group", 1) == 1
        ):
            seconds += float(result.kernel_seconds[i])
            flops += float(k.flops)
    return seconds, flops


def rows(devices: list[str]) -> list[dict]:
    """One dict per ``tensorflow-gpu`` row of the devices (module docstring)."""
    from estimator.learn.gpu_evaluation import GROUP_COLUMN
    from estimator.learn.gpu_training import build_gpu_set, load_gpu_table, predict_split

    table = load_gpu_table(judged=True)
    gs = build_gpu_set(table[table["source"] == SOURCE])
    t = gs.table
    family = t[GROUP_COLUMN.get(SOURCE, "group")].astype(str).to_numpy()
    device = t["hardware"].astype(str).to_numpy()
    runtime = t["runtime"].astype(str).to_numpy()
    out = []
    for d in devices:
        for f in sorted(set(family[device == d])):
            test = (device == d) & (family == f)
            res = predict_split(gs, (device == d) & (family != f), test, family)
            for j, i in enumerate(np.flatnonzero(test)):
                if runtime[i] != RUNTIME:
                    continue
                r = t.iloc[i]
                s33, f33 = conv3x3_seconds(str(r["model_ref"]), int(r["batch"]), d)
                prior_s, measured_s = float(res["seconds"][j]), float(r["latency_s"])
                left = measured_s - (prior_s - s33)
                out.append(
                    {
                        "device": d,
                        "network": str(r["architecture"]),
                        "prior_error": float(res["prior_v2_fitted"][j] / gs.measured_j[i] - 1.0),
                        "prior_ms": prior_s * 1e3,
                        "measured_ms": measured_s * 1e3,
                        "conv3x3_ms": s33 * 1e3,
                        "conv3x3_gflop": f33 / 1e9,
                        "implied_tflops": f33 / left / 1e12 if f33 and left >= 0.1 * s33 else float("nan"),
                    }
                )
    return out


def main() -> None:
    """Print the table of :func:`rows`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", nargs="+", default=["quadro-rtx5000", "a100-40gb"])
    args = parser.parse_args()
    print(
        f"{'device':15s} {'network':18s} {'prior err':>9s} {'prior ms':>9s} {'meas ms':>8s} {'3x3 ms':>7s} "
        f"{'3x3 GFLOP':>9s} {'priced TF/s':>11s} {'implied TF/s':>12s}"
    )
    for r in sorted(
        rows(args.device), key=lambda r: (r["device"], r["conv3x3_gflop"] / max(r["prior_ms"], 1e-9))
    ):
        priced = r["conv3x3_gflop"] / r["conv3x3_ms"] if r["conv3x3_ms"] else float("nan")
        print(
            f"{r['device']:15s} {r['network']:18s} {r['prior_error']:+9.1%} {r['prior_ms']:9.1f} {r['measured_ms']:8.1f} "
            f"{r['conv3x3_ms']:7.2f} {r['conv3x3_gflop']:9.1f} {priced:11.2f} {r['implied_tflops']:12.2f}"
        )
    print(
        f"Winograd multiplications per direct one: F(2x2,3x3) {winograd_multiply_share(2):.3f}, "
        f"F(4x4,3x3) {winograd_multiply_share(4):.3f}"
    )


if __name__ == "__main__":
    main()
