"""Where the v2 prior's time and energy go on the ML.ENERGY v3 diffusion-transformer rows, per kernel class, with
diffusers' float32 islands priced (analysis only: nothing here changes an estimate).

    PYTHONPATH=. python scripts/dit_breakdown.py [--rows GRAPH:HW:BATCH ...] [--classes]

**Breakdown.** Each row of ``data/mlenergy_diffusion.csv.gz`` (a v3 ``dit-*`` graph on H100 or B200, one
denoiser pass at the row's batch, bfloat16, runtime ``pytorch-cuda-sdpa``) is priced by the v2 prior with the
shipped constants; each launched kernel falls in one class: ``gemm`` (a tiled GEMM), ``attention`` (a fused
attention kernel FlashAttention-2 runs), ``float32`` (a kernel of a float32 island, below), ``norm/elementwise``
(everything else), and the time the GPU waits for
the host is the ``host wait`` class. The measured latency column divides the energy ratio into a time ratio and
a power ratio (energy = time x power). ``attention left / priced`` and ``attention left W`` are a diagnostic,
not a fit: the time and energy the measurement leaves once the GEMMs, the other kernels and the upcasts below
take what the prior gives them, against the attention kernels' priced time, and its average power.

**diffusers' float32 islands.** ML.ENERGY ran the pipelines in bfloat16, and diffusers 0.35.2 (the version
ML.ENERGY v3 pinned: github.com/ml-energy/benchmark @ c1d6557, uv.lock) upcasts in places (``RMSNorm``'s variance
and product, ``apply_rotary_emb``, ``FP32LayerNorm``, the timestep embeddings: docs/diffusion_v3.md). The graphs
are exported in bfloat16 (``scripts/dit_graphs.py``), so these upcasts are ``Cast`` nodes and float32 kernels in
the graph, which the bfloat16 re-typing keeps (:func:`~estimator.energy.physics.kept_dtypes`): the breakdown
prices them, and the ``float32`` class below is their time. A graph exported in float32 (the graphs before,
kept for comparison) shows none of them; for such a graph only, the what-if below adds the bytes and launches
of the three upcasts the eager run makes (``T+up``, ``E+up``); on a bfloat16 export these columns equal ``T``
and ``E``:

* ``RMSNorm.forward`` (src/diffusers/models/normalization.py, ``variance = hidden_states.to(torch.float32)
  .pow(2).mean(-1, keepdim=True)``; ``hidden_states * torch.rsqrt(variance + eps)`` is float32, then
  ``.to(weight.dtype)`` and ``* weight``): SD3.5's query/key norms (``qk_norm="rms_norm"``,
  attention_processor.py). Eager: cast (2 B read + 4 B written per element), pow (4 + 4), mean (4), multiply
  (2 + 4), cast back (4 + 2), weight multiply (2 + 2) = 34 B per element; the exported graph keeps the
  decomposition (``Pow``, ``ReduceMean``, ``Add``, ``Sqrt``, ``Reciprocal``, ``Mul``, ``Mul``), priced in bfloat16
  at 4 + 2 + 4 + 4 = 14 B: **20 B and 2 launches more per element**.
* ``apply_rotary_emb`` with ``use_real=True`` (src/diffusers/models/embeddings.py:
  ``out = (x.float() * cos + x_rotated.float() * sin).to(x.dtype)``): FLUX.1's and HunyuanDiT's query and key.
  Eager per element of ``x``: neg of half (2), stack (4), two upcasts (6 each), two float32 multiplies (8 each),
  the float32 add (12), the cast back (6) = 52 B; the graph's ``Neg``, ``Concat``, ``Mul``, ``Mul``, ``Add`` in
  bfloat16: 2 + 4 + 4 + 4 + 6 = 20 B: **32 B and 3 launches more per element** (elements: twice the ``Neg``'s).
* ``FP32LayerNorm`` (normalization.py: ``F.layer_norm(inputs.float(), ...).to(origin_dtype)``): HunyuanDiT's
  ``norm1.norm``, ``norm2``, ``norm3`` and ``skip_norm`` (transformers/hunyuan_transformer_2d.py). Eager: cast up
  (2 + 4), the norm in float32 (4 + 4), cast down (4 + 2) = 20 B against the graph's 4 B: **16 B and 2 launches
  more per element**.

FLUX.1's query/key norms are ``torch.nn.RMSNorm`` (transformers/transformer_flux.py), exported as one
``RMSNormalization``; whether torch 2.9.1's eager CUDA ``rms_norm`` is one fused kernel or its float32 composite
is not settled here, so they are left as priced (``--flux-rmsnorm-composite`` prices them as diffusers' RMSNorm,
34 - 4 = 30 B and 7 launches more per element, an upper bound).

The extra bytes are timed at the profile's sustained bandwidth (``achievable_bandwidth_fraction`` x DRAM
bandwidth: the tensors are tens to hundreds of MB) and charged the power the v2 prior gives a kernel that streams
DRAM (busy static power + :func:`~estimator.energy.prior_v2.memory_stream_joules` of the bytes, the TDP at most);
extra launches add nothing while the GPU is the bottleneck (every row here is GPU-bound). These rows are judged,
never fitted: no constant is taken from them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimator.api import Estimator  # noqa: E402
from estimator.energy.gpu_paths import _fa2_kernels, _gemm_paths, _routes, compute_paths  # noqa: E402
from estimator.energy.physics import kept_dtypes, kernel_arrays, static_power_w  # noqa: E402
from estimator.energy.prior_v2 import assemble, device_terms, memory_stream_joules  # noqa: E402

RUNTIME = "pytorch-cuda-sdpa"
DTYPE = "bfloat16"
#: Extra bytes per element (bfloat16 run) and extra launches of each eager upcast (module docstring).
DIFFUSERS_RMSNORM = (20.0, 2)
ROTARY_FLOAT32 = (32.0, 3)
FP32_LAYERNORM = (16.0, 2)
TORCH_RMSNORM_COMPOSITE = (30.0, 7)
#: Module-path pieces of HunyuanDiT's FP32LayerNorm instances (diffusers 0.35.2 hunyuan_transformer_2d.py).
_HUNYUAN_FP32_NORMS = re.compile(r"^/blocks\.\d+/(norm1/norm|norm2|norm3|skip_norm)/")
_QK_NORM = re.compile(r"/norm_(added_)?[qk]/")


@dataclass(frozen=True)
class Upcasts:
    """Bytes and launches the priced graph lacks (module docstring), for one graph at one batch."""

    extra_bytes: float
    extra_launches: int
    elements: dict


def _elements(graph, name: str) -> int:
    tensor = graph.tensor(name)
    return int(np.prod(tensor.shape)) if tensor is not None and tensor.shape is not None else 0


def eager_upcasts(
    graph, stem: str, flux_rmsnorm_composite: bool = False, *, exported_as_run: bool = False
) -> Upcasts:
    """The float32 upcasts diffusers makes that the exported graph of ``stem`` does not show: the three of the
    module docstring for a float32 export; none for a graph ``exported_as_run`` in bfloat16, whose islands are
    in it (only the unfused ``torch.nn.RMSNorm`` of ``flux_rmsnorm_composite`` is then added)."""
    total, launches, elements = 0.0, 0, defaultdict(int)

    def add(kind: str, count: int, cost: tuple[float, int]) -> None:
        nonlocal total, launches
        elements[kind] += count
        total += count * cost[0]
        launches += cost[1]

    for node in graph.nodes:
        name = node.name
        if exported_as_run and node.op_type != "RMSNormalization":
            continue
        if node.op_type == "Pow" and _QK_NORM.search(name):
            add("diffusers RMSNorm", _elements(graph, node.inputs[0]), DIFFUSERS_RMSNORM)
        elif node.op_type == "Neg" and "/attn" in name and ("flux" in stem or "hunyuan" in stem):
            add("rotary (float32)", 2 * _elements(graph, node.inputs[0]), ROTARY_FLOAT32)
        elif node.op_type == "LayerNormalization" and "hunyuan" in stem and _HUNYUAN_FP32_NORMS.search(name):
            add("FP32LayerNorm", _elements(graph, node.inputs[0]), FP32_LAYERNORM)
        elif node.op_type == "RMSNormalization" and flux_rmsnorm_composite:
            add("torch RMSNorm composite", _elements(graph, node.inputs[0]), TORCH_RMSNORM_COMPOSITE)
    return Upcasts(total, launches, dict(elements))


def kernel_classes(kernels, hw, runtime, dtype: str) -> np.ndarray:
    """``gemm``, ``attention``, ``float32`` (an island kept in float32), ``norm/elementwise`` or ``view`` per
    kernel (see the module docstring)."""
    ka = kernel_arrays(kernels, dtype)
    paths = compute_paths(kernels, hw, runtime, ka, dtype)
    fa2 = _fa2_kernels(kernels, _gemm_paths(kernels, ka.matrix), _routes(kernels, ka, dtype), dtype)
    out = np.array(["norm/elementwise"] * len(kernels.kernels), dtype=object)
    for i, k in enumerate(kernels.kernels):
        if not k.launches:
            out[i] = "view"
        elif i in fa2:
            out[i] = "attention"
        elif paths.gemm[i]:
            out[i] = "gemm"
        elif ka.dtypes[i] in ("float32", "float64"):
            out[i] = "float32"
    return out


def study(row, flux_rmsnorm_composite: bool, show_classes: bool) -> dict:
    """Breakdown and upcast what-if of one measured row."""
    stem = Path(row.model_ref).stem
    est = Estimator(row.hardware, RUNTIME, calibrated=False, prior="v2")
    hw, runtime = est.profile, est.runtime
    kernels = est.kernels(ROOT / row.model_ref, batch=int(row.batch))
    terms = device_terms(kernels, hw, runtime, DTYPE)
    res = assemble(terms, hw, runtime)
    classes = kernel_classes(kernels, hw, runtime, DTYPE)
    # Busy GPU time per kernel (its slot minus the wait for the host) and energy per kernel.
    slot, joules = res.kernel_seconds, res.kernel_joules
    wait_total = res.wait_seconds
    exported_as_run = bool(kept_dtypes(kernels))
    up = eager_upcasts(kernels.costs.graph, stem, flux_rmsnorm_composite, exported_as_run=exported_as_run)
    rate = hw.dram_bandwidth_bytes_per_s * hw.achievable_bandwidth_fraction
    p_static = static_power_w(hw, hw.compute_units)
    extra_s = up.extra_bytes / rate
    dram_j = hw.dram_energy_per_byte_j * up.extra_bytes  # the upcasts' bytes come from and go to DRAM
    extra_j = extra_s * p_static + float(memory_stream_joules(up.extra_bytes, dram_j, hw))
    out = {
        "graph": stem.removeprefix("dit-"),
        "hw": row.hardware,
        "batch": int(row.batch),
        "measured_ms": row.latency_s * 1e3,
        "measured_W": row.joules_per_inference / row.latency_s,
        "T": res.seconds / row.latency_s,
        "E": res.joules / row.joules_per_inference,
        "P": (res.joules / res.seconds) / (row.joules_per_inference / row.latency_s),
        "upcast_GB": up.extra_bytes / 1e9,
        "T+up": (res.seconds + extra_s) / row.latency_s,
        "E+up": (res.joules + extra_j) / row.joules_per_inference,
    }
    for c in ("gemm", "attention", "float32", "norm/elementwise"):
        mask = classes == c
        out[f"{c} ms"] = float(slot[mask].sum()) * 1e3
        out[f"{c} W"] = float(joules[mask].sum() / max(slot[mask].sum(), 1e-12))
    out["host wait ms"] = wait_total * 1e3
    # What the measurement leaves for the attention kernels if the GEMMs, the other kernels and the upcasts take
    # what the prior gives them: its time against the prior's attention time, and its average power.
    rest = classes != "attention"
    left_s = row.latency_s - float(slot[rest].sum()) - extra_s
    left_j = row.joules_per_inference - float(joules[rest].sum()) - extra_j
    out["attention left / priced"] = left_s / max(float(slot[classes == "attention"].sum()), 1e-12)
    out["attention left W"] = left_j / left_s if left_s > 0 else float("nan")
    if show_classes:
        print(
            f"\n{stem} on {row.hardware}, batch {int(row.batch)}: measured {row.latency_s * 1e3:.1f} ms, "
            f"{row.joules_per_inference:.1f} J; predicted {res.seconds * 1e3:.1f} ms, {res.joules:.1f} J"
        )
        for c in ("gemm", "attention", "float32", "norm/elementwise"):
            mask = classes == c
            t, j = float(slot[mask].sum()), float(joules[mask].sum())
            print(
                f"  {c:17s} {int(mask.sum()):5d} kernels {t * 1e3:9.1f} ms ({t / res.seconds:5.1%}) "
                f"{j:8.1f} J ({j / res.joules:5.1%}) {j / max(t, 1e-12):5.0f} W"
            )
        print(f"  {'host wait':17s} {wait_total * 1e3:23.1f} ms")
        for kind, n in up.elements.items():
            print(f"  not in the graph: {kind}, {n / 1e9:.2f} G elements")
        print(
            f"  upcasts: +{up.extra_bytes / 1e9:.0f} GB, +{extra_s * 1e3:.0f} ms, +{extra_j:.0f} J "
            f"(+{up.extra_launches} launches)"
        )
        print(
            f"  left for attention by the measurement: x{out['attention left / priced']:.2f} its priced time, "
            f"at {out['attention left W']:.0f} W"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the breakdown of the chosen rows (default: every v3 transformer row) and the upcast what-if."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="*", help="GRAPH_STEM:HW:BATCH, e.g. dit-flux.1-dev:h100:16")
    parser.add_argument("--classes", action="store_true", help="print the per-class breakdown of each row")
    parser.add_argument(
        "--flux-rmsnorm-composite", action="store_true", help="price torch.nn.RMSNorm unfused"
    )
    args = parser.parse_args(argv)
    table = pd.read_csv(ROOT / "data" / "mlenergy_diffusion.csv.gz")
    table = table[table.model_ref.str.contains("/dit-")]
    if args.rows:
        keep = set()
        for spec in args.rows:
            stem, hw, batch = spec.split(":")
            keep.add((f"data/graphs/{stem}.onnx", hw, int(batch)))
        table = table[
            [
                (m, h, int(b)) in keep
                for m, h, b in zip(table.model_ref, table.hardware, table.batch, strict=True)
            ]
        ]
    rows = [study(r, args.flux_rmsnorm_composite, args.classes) for r in table.itertuples(index=False)]
    frame = pd.DataFrame(rows).sort_values(["hw", "graph", "batch"])
    pd.set_option("display.width", 250)
    print()
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}"))
    for hw, part in frame.groupby("hw"):
        ape = (part["E"] - 1).abs() * 100
        ape_up = (part["E+up"] - 1).abs() * 100
        print(
            f"{hw}: energy ratio {part['E'].min():.2f}-{part['E'].max():.2f} (median APE {ape.median():.1f}%), "
            f"time {part['T'].min():.2f}-{part['T'].max():.2f}; with the upcasts: energy "
            f"{part['E+up'].min():.2f}-{part['E+up'].max():.2f} (median APE {ape_up.median():.1f}%), time "
            f"{part['T+up'].min():.2f}-{part['T+up'].max():.2f}"
        )


if __name__ == "__main__":
    main()
