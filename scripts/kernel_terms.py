"""Where the v2 prior's energy goes, per kind of kernel and per term, for one graph or for Fischer's RTX 4090 rows.

    python scripts/kernel_terms.py densenet121 --batch 8 16          # per kernel group, RTX 4090, Keras/XLA
    python scripts/kernel_terms.py resnet50 --profile a100 --runtime pytorch-cuda --batch 32
    python scripts/kernel_terms.py --rows                            # every data/fischer_rtx4090 row

Per group of launched kernels (kind, member ops, whether it runs as a tiled GEMM): count, GFLOP, MB moved beyond
L1 and from DRAM (the cache placement), the prior's seconds and joules, their ratio (W: static power, dynamic
energy and the host waits of its slots) and the dynamic energy split into arithmetic (J/FLOP, or a GEMM's
power-limit rule) and data movement (per-level J/B and the streaming on-chip J/B).

``--rows`` splits each row's prior energy into terms: static (busy and waiting), GEMMs' dynamic energy, the
streaming on-chip energy of bytes that the placement finds in L2 (non-GEMM kernels), and the rest of the
non-GEMM data movement. Then a diagnosis that uses the measured run time (never a feature): the power left for
the host, ``(measured J - prior J - P_idle_ctx x (measured s - prior s)) / measured s``, i.e. what CodeCarbon's
total leaves for CPU and RAM when the board draws the prior's energy and waits at its idle-with-context power
for the rest of the call. docs/fischer_rtx4090.md reads these figures.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _terms(model_ref: str, batch: int, profile: str, runtime_name: str):
    from estimator.energy.prior_v2 import assemble, device_terms
    from estimator.energy.runtimes import get_runtime
    from estimator.learn.gpu_set import _kernels, _profile

    runtime, hw = get_runtime(runtime_name), _profile(profile)
    kernels = _kernels(ROOT, model_ref, batch, "float32", "", runtime.fusion)
    terms = device_terms(kernels, hw, runtime, None)
    return kernels, hw, terms, assemble(terms, hw, runtime)


def group_lines(model: str, batch: int, profile: str, runtime: str) -> list[str]:
    """The per-kernel-group table of one graph (``data/graphs/<model>.onnx``) at ``batch``."""
    from estimator.energy.gpu_paths import compute_paths
    from estimator.energy.physics import kernel_arrays
    from estimator.energy.runtimes import get_runtime

    kernels, hw, terms, result = _terms(f"data/graphs/{model}.onnx", batch, profile, runtime)
    gemm = compute_paths(kernels, hw, get_runtime(runtime), kernel_arrays(kernels, None), None).gemm
    dram = terms.placement.bytes_by_level[:, -1]
    groups: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(8))
    for i, k in enumerate(kernels.kernels):
        if not k.launches:
            continue
        ops = "+".join(sorted({kernels.costs.nodes[n].op_type for n in k.nodes}))
        moved = terms.kernel_memory_joules[i]
        groups[(k.kind, ops, "gemm" if gemm[i] else "-")] += [
            1,
            k.flops,
            terms.beyond_l1_bytes[i],
            dram[i],
            result.kernel_seconds[i],
            result.kernel_joules[i],
            terms.dynamic_joules[i] - moved,
            moved,
        ]
    lines = [
        f"{model} batch {batch} on {profile} / {runtime}: {result.joules:.3f} J, {result.seconds * 1e3:.3f} ms, "
        f"{result.joules / result.seconds:.0f} W, {sum(k.launches for k in kernels.kernels)} launches",
        f"{'kind':12s} {'ops':34s} {'path':4s} {'n':>4s} {'GFLOP':>7s} {'MB>L1':>8s} {'MB DRAM':>8s} {'ms':>7s} "
        f"{'J':>7s} {'W':>5s} {'J arith':>7s} {'J data':>7s}",
    ]
    for (kind, ops, path), v in sorted(groups.items(), key=lambda kv: -kv[1][5]):
        lines.append(
            f"{kind:12s} {ops[:34]:34s} {path:4s} {v[0]:4.0f} {v[1] / 1e9:7.2f} {v[2] / 1e6:8.1f} {v[3] / 1e6:8.1f} "
            f"{v[4] * 1e3:7.3f} {v[5]:7.3f} {v[5] / v[4]:5.0f} {v[6]:7.3f} {v[7]:7.3f}"
        )
    return lines


def row_terms() -> pd.DataFrame:
    """The prior's terms and the implied host power of every data/fischer_rtx4090 row (module docstring)."""
    from estimator.energy.prior_v2 import STREAM_ONCHIP_J_PER_BYTE_7NM, node_energy_scale

    table = pd.read_csv(ROOT / "data/fischer_rtx4090.csv.gz")
    out = []
    for r in table.itertuples():
        kernels, hw, terms, result = _terms(r.model_ref, int(r.batch), r.hardware, r.runtime)
        launched = terms.launches > 0
        contraction = np.array([k.kind == "contraction" for k in kernels.kernels])
        other = launched & ~contraction
        l2 = terms.placement.bytes_by_level[:, 1:-1].sum(axis=1)
        onchip_l2 = STREAM_ONCHIP_J_PER_BYTE_7NM * node_energy_scale(hw) * float(l2[other].sum())
        ms, measured_ms = result.seconds * 1e3, r.latency_s * 1e3
        waiting = hw.idle_with_context_w * max(measured_ms - ms, 0.0) / 1e3
        out.append(
            {
                "network": r.architecture,
                "family": r.family,
                "batch": r.batch,
                "measured_j": r.joules_per_inference,
                "measured_ms": measured_ms,
                "prior_j": result.joules,
                "prior_ms": ms,
                "prior_w": result.joules / result.seconds,
                "static_j": result.static_joules,
                "gemm_dynamic_j": float(terms.dynamic_joules[contraction].sum()),
                "l2_onchip_j": onchip_l2,
                "other_data_j": float(terms.kernel_memory_joules[other].sum()) - onchip_l2,
                "host_w": (r.joules_per_inference - result.joules - waiting) / r.latency_s,
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    """Print the per-group table of each batch, or with ``--rows`` the terms of every RTX 4090 row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="densenet121", help="a graph name in data/graphs")
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--profile", default="rtx4090")
    parser.add_argument("--runtime", default="tensorflow-xla-gpu")
    parser.add_argument("--rows", action="store_true", help="the terms of every data/fischer_rtx4090 row")
    args = parser.parse_args()
    if args.rows:
        rows = row_terms()
        with pd.option_context("display.width", 250, "display.max_rows", 100):
            print(rows.sort_values(["family", "network"]).round(3).to_string(index=False))
            print(rows.groupby("family")["host_w"].median().round(0).to_string())
        return
    for batch in args.batch:
        print("\n".join(group_lines(args.model, batch, args.profile, args.runtime)))


if __name__ == "__main__":
    main()
