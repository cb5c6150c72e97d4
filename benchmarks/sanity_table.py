"""The physics prior against public measurements it was not fitted to; writes docs/sanity.md and the
physics-only interval (estimator/prior_interval.json).

    python benchmarks/sanity_table.py [--shared ../shared] [--nb201-archs 150]

Nothing here tunes a constant: the prior is run as shipped and its ratio predicted / measured is reported.
Sources: MLPerf Inference Power (ResNet-50 v1.5, BERT-Large; whole system at the wall, TensorRT, batch not
reported), HW-NAS-Bench-360 (Raspberry Pi 5 core rail, idle subtracted, one thread), Getzner et al.
(2x Xeon Gold 5120 RAPL packages, PyTorch eager, AlexNet/VGG11/VGG13 whole models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimator.api import Estimator  # noqa: E402
from estimator.cost.kernels import fuse_kernels  # noqa: E402
from estimator.cost.nodes import count_costs  # noqa: E402
from estimator.graph.load import load_graph  # noqa: E402
from estimator.zoo import build_from_spec  # noqa: E402
from estimator.zoo.transformers import bert_encoder  # noqa: E402

MLPERF_BATCH = 64  # MLPerf Offline batch is not reported; 64 is a typical TensorRT choice for ResNet/BERT
# codecarbon's cpu_count is 2 in every Getzner record: under Slurm it reports the CPUs the job was given, so
# PyTorch ran on 2 threads while RAPL measured both whole packages.
GETZNER_THREADS = 2
MLPERF_GPUS = (
    "a100",
    "a100-pcie",
    "a100-pcie-80gb",
    "h100",
    "h100-pcie",
    "h200",
    "l4",
    "t4",
    "a10",
    "l40s",
    "rtx4090",
    "jetson-orin",
)


def resnet50(batch: int) -> onnx.ModelProto:
    """The shipped ResNet-50 with its baked-in batch-1 Reshape made batch-agnostic ([0, -1])."""
    model = onnx.load(ROOT / "examples" / "resnet50.onnx")
    for i, t in enumerate(model.graph.initializer):
        if t.name == "OC2_DUMMY_1":
            model.graph.initializer[i].CopyFrom(
                onnx.numpy_helper.from_array(np.array([0, -1], np.int64), t.name)
            )
    for vi in model.graph.input:
        if vi.name == "gpu_0/data_0":
            vi.type.tensor_type.shape.dim[0].dim_value = batch
    return model


def mlperf_rows(table: pd.DataFrame) -> list[dict]:
    rows = []
    bert = {
        b: fuse_kernels(count_costs(load_graph(bert_encoder(24, 1024, 16, 4096, batch=b, seq=384))))
        for b in (1, MLPERF_BATCH)
    }
    resnet = {b: fuse_kernels(count_costs(load_graph(resnet50(b)))) for b in (1, MLPERF_BATCH)}
    for (ref, hw, scenario), group in table.groupby(["model_ref", "hardware", "scenario"]):
        if hw not in MLPERF_GPUS or scenario not in ("Offline", "SingleStream"):
            continue
        if ref.startswith("torchvision:resnet50"):
            name, kernels = "ResNet-50", resnet
        elif ref.startswith("mlperf:bert-large"):
            name, kernels = "BERT-Large s384", bert
        else:
            continue
        batch = MLPERF_BATCH if scenario == "Offline" else 1
        est = Estimator(hw, runtime="tensorrt", calibrated=False).estimate_kernels(
            kernels[batch], dtype="int8"
        )
        measured = group["joules_per_sample"].dropna().to_numpy()
        rows.append(
            _row(
                "MLPerf Power (wall, TensorRT)",
                hw,
                f"{name} {scenario} (bs {batch}, int8)",
                np.full(len(measured), est.joules_per_sample),
                measured,
            )
        )
    return rows


def hwnas_rows(table: pd.DataFrame, n_archs: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for task, tdf in table.groupby("task"):
        groups = tdf["group"].unique()
        chosen = set(rng.choice(groups, size=min(n_archs, len(groups)), replace=False))
        sub = tdf[tdf["group"].isin(chosen)]
        kernels = {
            ref: fuse_kernels(count_costs(load_graph(build_from_spec(ref, batch=1))))
            for ref in sub["model_ref"].unique()
        }
        for runtime, rdf in sub.groupby("runtime"):
            est = Estimator("rpi5", runtime=runtime, calibrated=False)
            pred = np.array([est.estimate_kernels(kernels[r]).joules for r in rdf["model_ref"]])
            rows.append(
                _row(
                    "HW-NAS-Bench-360 (core rail, idle subtracted)",
                    "rpi5",
                    f"NB201 {task}, {runtime} ({len(chosen)} archs)",
                    pred,
                    rdf["joules_per_inference"].to_numpy(),
                )
            )
    return rows


def getzner_rows(table: pd.DataFrame) -> list[dict]:
    whole = table[table["model_ref"].str.match(r"^torchvision:[a-z0-9]+$")]
    rows = []
    est = Estimator("xeon-gold-5120", runtime="pytorch-cpu", calibrated=False)
    for ref, mdf in whole.groupby("model_ref"):
        pred = np.array(
            [
                est.estimate_kernels(
                    fuse_kernels(count_costs(load_graph(build_from_spec(ref, batch=int(b)))), fuse=False),
                    threads=GETZNER_THREADS,
                ).joules
                for b in mdf["batch"]
            ]
        )
        rows.append(
            _row(
                "Getzner et al. (RAPL packages, PyTorch eager)",
                "xeon-gold-5120",
                f"{ref.split(':')[1]} whole model, batch 1-256, {GETZNER_THREADS} threads",
                pred,
                mdf["joules_per_inference"].to_numpy(),
            )
        )
    return rows


def mlenergy_lines(table: pd.DataFrame) -> list[str]:
    """Order-of-magnitude check against ML.ENERGY (GPU-only NVML joules, vLLM serving Llama-3.1-8B).

    Energy per output token of a continuous-batching server at an unreported average batch cannot be compared
    point for point with one forward pass; the prior's energy per token of one decode step of a decoder with
    Llama-3.1-8B's sizes (32 x 4096, 32 heads, vocabulary 128,256; a GPT-2-style 2-matrix MLP of 16,384 instead
    of SwiGLU's 3 x 14,336, so ~7.0B instead of 8.0B parameters; no KV-cache reads) is shown at batch 8, 32, 64.
    """
    from estimator.zoo.transformers import gpt2_decoder

    rows = table[
        table["model_ref"].str.contains("Llama-3.1-8B", case=False) & table["joules_per_token"].notna()
    ]
    lines = [
        "## ML.ENERGY: an order-of-magnitude check (not in the interval)",
        "",
        "GPU-only NVML energy per output token of vLLM serving Llama-3.1-8B (continuous batching, average",
        "batch not reported in the flattened data) against the prior's energy per token of one bf16 decode",
        "step of an 8B-sized decoder (no KV-cache reads, GPT-2-style MLP: ~7.0B parameters).",
        "",
        "| hardware | measured J/token (median, n) | prior J/token at batch 8 / 32 / 64 |",
        "|---|---:|---:|",
    ]
    kernels = {
        b: fuse_kernels(
            count_costs(
                load_graph(gpt2_decoder(32, 4096, 32, vocab=128256, max_positions=8192, batch=b, seq=1))
            )
        )
        for b in (8, 32, 64)
    }
    for hw, group in rows.groupby("hardware"):
        if hw not in ("a100-40gb", "h100"):
            continue
        est = Estimator(hw, runtime="pytorch-cuda", calibrated=False)
        per_token = [est.estimate_kernels(kernels[b], dtype="bf16").joules / b for b in (8, 32, 64)]
        lines.append(
            f"| {hw} | {group['joules_per_token'].median():.3g} J ({len(group)}) | "
            + " / ".join(f"{x:.3g}" for x in per_token)
            + " J |"
        )
    lines += [
        "",
        "The measured energy per token falls between the prior's values at batch 8 and batch 32, which is",
        "consistent with an average decode batch of roughly 8-16; the flattened data carries no batch, so",
        "this checks the order of magnitude only.",
        "",
    ]
    return lines


def _row(source: str, hw: str, what: str, pred: np.ndarray, measured: np.ndarray) -> dict:
    ratio = pred / measured
    return {
        "source": source,
        "hardware": hw,
        "what": what,
        "n": len(measured),
        "measured_median_j": float(np.median(measured)),
        "predicted_median_j": float(np.median(pred)),
        "ratio_median": float(np.median(ratio)),
        "ratio_p10": float(np.quantile(ratio, 0.1)),
        "ratio_p90": float(np.quantile(ratio, 0.9)),
        "_log_ratios": np.log(ratio),
    }


def interval(rows: list[dict], level: float = 0.9) -> dict:
    """Quantiles of measured / predicted over the points measured at the boundary the prior predicts (not the
    wall-power MLPerf rows), each group (source x device x workload) weighted equally."""
    rows = [r for r in rows if not r["source"].startswith("MLPerf")]
    values = np.concatenate([-r["_log_ratios"] for r in rows])
    weights = np.concatenate([np.full(r["n"], 1.0 / r["n"]) for r in rows])
    order = np.argsort(values)
    cum = np.cumsum(weights[order]) / weights.sum()
    lo = float(np.exp(values[order][np.searchsorted(cum, (1 - level) / 2)]))
    hi = float(np.exp(values[order][np.searchsorted(cum, 1 - (1 - level) / 2)]))
    return {
        "level": level,
        "low_factor": lo,
        "high_factor": hi,
        "basis": f"spread of measured/predicted of the physics prior on {len(rows)} public groups measured "
        f"at the profile's own boundary (docs/sanity.md; CPU/SoC only: no public GPU-board data)",
    }


EXPLANATION = """## Reading the gaps

- **MLPerf Power is whole-system wall power** (host CPUs, DRAM, fans, PSU losses, NICs, and idle
  accelerators), while GPU profiles predict GPU-board energy (`gpu-board-nvml`). The ratios of 0.2-0.5 at
  large batch (Offline) say the board is roughly a third of the wall; at batch 1 (SingleStream) the host's
  idle power dominates each latency-bound query and the ratio falls to about 0.1. These rows check the
  direction and the scaling across devices, not the boundary, and are not used for the interval.
- **MLPerf runs vendor-tuned TensorRT INT8 engines at an unreported batch**; the prior is run at batch 64 and
  int8. A100/H100/H200 Offline rows fall within a factor 1.5-2 of each other, as the measurements do.
- **Raspberry Pi 5 (HW-NAS-Bench-360)**: the core rail with idle subtracted, one pinned thread. The prior
  is 0.85-0.9 of TFLite's energy and 0.5-0.7 of ONNX Runtime's and TorchScript-mobile's: the runtimes differ
  by their dispatch overhead and kernel efficiency, which the prior does not model per runtime - the
  learned correction does.
- **Xeon Gold 5120 (Getzner et al.)**: RAPL package energy of both sockets, idle included, PyTorch eager on the 2
  threads the Slurm job was given (codecarbon's `cpu_count` is 2 in every record), while RAPL counts
  both whole packages; codecarbon recorded nearly constant package power (~75 W), so energy follows run time
  and the prior's gap is a gap in its time: PyTorch eager reaches far less than the achievable fraction of
  AVX-512 peak on two threads."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nb201-archs", type=int, default=150)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "sanity.md")
    args = ap.parse_args()
    rows = mlperf_rows(pd.read_csv(ROOT / "data" / "validation_mlperf.csv.gz"))
    rows += hwnas_rows(pd.read_csv(ROOT / "data" / "hwnasbench360.csv.gz"), args.nb201_archs)
    rows += getzner_rows(pd.read_csv(ROOT / "data" / "getzner.csv.gz", low_memory=False))
    iv = interval(rows)
    lines = [
        "# The physics prior against public measurements (sanity table)",
        "",
        "Generated by `python benchmarks/sanity_table.py`; the prior (energy-roofline v1) runs as shipped,",
        "with no constant tuned to these numbers. Ratio = predicted / measured (1.0 is perfect; P10-P90 over",
        "the rows of the group). Measured energies are per sample (MLPerf) or per inference (the others).",
        "",
        "| source | hardware | workload | n | measured (median) | predicted (median) | ratio median | ratio P10-P90 |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['source']} | {r['hardware']} | {r['what']} | {r['n']} | {r['measured_median_j']:.4g} J | "
            f"{r['predicted_median_j']:.4g} J | {r['ratio_median']:.2f} | {r['ratio_p10']:.2f}-{r['ratio_p90']:.2f} |"
        )
    lines += ["", *mlenergy_lines(pd.read_csv(ROOT / "data" / "validation_mlenergy.csv.gz"))]
    lines += [
        "",
        EXPLANATION,
        "",
        f"Physics-only {iv['level']:.0%} interval (shipped in `estimator/prior_interval.json`): "
        f"measured / predicted between {iv['low_factor']:.3g} and {iv['high_factor']:.3g}.",
        "",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    tmp = ROOT / "estimator" / "energy" / "prior_interval.json.tmp"
    shipped = json.loads((ROOT / "estimator" / "energy" / "prior_interval.json").read_text())
    if "gpu" in shipped:  # the GPU interval is written by `estimate evaluate --gpu`; keep it
        iv = {**iv, "gpu": shipped["gpu"]}
    tmp.write_text(json.dumps(iv, indent=2) + "\n")
    os.replace(tmp, ROOT / "estimator" / "energy" / "prior_interval.json")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
