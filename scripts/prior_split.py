"""Split the v2 prior's error on the committed GPU rows into a time ratio and a power ratio.

    python scripts/prior_split.py [--source irene] [--by model|batch|seq_len]
    python scripts/prior_split.py --linear-ops
    python scripts/prior_split.py --memory-ops [--onchip-j-per-byte E]
    python scripts/prior_split.py --fit-memory-power

For every whole-network row at the prior's own boundary (``gpu-board-nvml``) that has a latency, the v2 prior
with its shipped constants (nothing fitted) predicts joules and seconds; the script prints, per device (and per
``--by`` column), the medians of

* predicted / measured joules (the figure of the x1.5 target),
* predicted / measured latency (is the time right?),
* predicted / measured average power = (joules / seconds) (is the power right?),

so that ``joules ratio = time ratio x power ratio`` row by row. ``--linear-ops`` instead checks the v2 GEMM time
(tile choice, flattened leading dimensions; 128x128 tiles over ``batch`` GEMMs of ``seq`` rows for comparison)
against IrEne's op-level ``Linear`` rows of the BERT-family models (their latency includes the bias add), with
the power those rows measured. ``--memory-ops`` prices IrEne's op-level LayerNorm and Softmax rows (mapped to
their kernels by :mod:`estimator.learn.gpu_modules`) and prints predicted / measured joules, time and power per
device; ``--fit-memory-power`` fits :data:`estimator.energy.prior_v2.STREAM_ONCHIP_J_PER_BYTE_7NM` (the on-chip
energy per byte of a streaming kernel, J/B at 7 nm) on the GTX 1080 Ti rows of that set only (golden section on the
mean squared log error of average power). docs/prior.md quotes its output.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimator.energy.gpu_efficiency import GemmShape, library_tile_efficiency, tile_wave_efficiency
from estimator.energy.hardware import load_profile
from estimator.energy.physics import static_power_w
from estimator.energy.prior_fit import golden_section_min
from estimator.energy.prior_v2 import assemble, node_energy_scale
from estimator.energy.runtimes import get_runtime
from estimator.learn.gpu_modules import build_module_set, load_module_rows
from estimator.learn.gpu_training import PRIOR_BOUNDARY, build_gpu_set, load_gpu_table

#: IrEne's memory-bound op classes, and the device whose rows fit the on-chip streaming energy per byte.
MEMORY_OPS = ("LayerNorm", "Softmax")
FIT_DEVICE = "gtx1080ti"
#: Only rows at least this long fit the energy (s): the kernel, not the host's dispatch, fills their time.
FIT_MIN_LATENCY_S = 1.2e-4


def split_table(source: str) -> pd.DataFrame:
    """One row per measured configuration: measured and predicted joules, seconds and watts, and the ratios."""
    table = load_gpu_table()
    table = table[(table["source"] == source) & (table["boundary"] == PRIOR_BOUNDARY)]
    table = table[table["latency_s"].astype(float) > 0]
    gs = build_gpu_set(table)
    rows = []
    for row in gs.table.to_dict("records"):
        key = row["config"]
        prior = assemble(gs.configs[key].terms, load_profile(key[3]), get_runtime(key[4]))
        rows.append(
            {
                "hardware": key[3],
                "model": row["group"],
                "batch": row["batch"],
                "seq_len": row.get("seq_len"),
                "joules": prior.joules / row["joules_per_inference"],
                "time": prior.seconds / row["latency_s"],
                "power": (prior.joules / prior.seconds) / (row["joules_per_inference"] / row["latency_s"]),
                "measured_w": row["joules_per_inference"] / row["latency_s"],
                "predicted_w": prior.joules / prior.seconds,
            }
        )
    return pd.DataFrame(rows)


#: (in, out) features of the BERT-family Linear layers by module name; the pooler is left out.
_BERT_LINEARS = (
    (re.compile(r"intermediate\.dense|ffn\.lin1"), (768, 3072)),
    (re.compile(r"layer\.\d+\.output\.dense|ffn\.lin2"), (3072, 768)),
    (re.compile(r"attention"), (768, 768)),
)


def linear_ops_table(root: Path | None = None) -> pd.DataFrame:
    """IrEne's op-level Linear rows of the BERT-family models at ``gpu-board-nvml``: predicted / measured time of
    the GEMM (now, and with 128x128 tiles over ``batch`` GEMMs as before), and the measured power."""
    root = root or Path(__file__).resolve().parents[1]
    t = pd.read_csv(root / "data" / "irene_modules.csv.gz")
    t = t[(t["boundary"] == PRIOR_BOUNDARY) & (t["level"] == "op") & t["module"].str.endswith(":Linear")]
    t = t[t["group"].isin(["bert-base-uncased", "roberta-base", "distilbert-base-uncased"])]
    rows = []
    for r in t.itertuples():
        shape = next((kn for pattern, kn in _BERT_LINEARS if pattern.search(r.module)), None)
        if shape is None:
            continue
        (k, n), m = shape, int(r.batch) * int(r.seq_len)
        hw = load_profile(r.hardware)
        work = 2 * m * k * n / (hw.peak_flops_per_s("float32", matrix=False) * hw.achievable_compute_fraction)
        now = work / library_tile_efficiency(GemmShape(m, n, k, 1, "matmul"), hw.compute_units)
        before = work / tile_wave_efficiency(
            GemmShape(int(r.seq_len), n, k, int(r.batch), "matmul"), hw.compute_units
        )
        rows.append(
            {
                "hardware": r.hardware,
                "in": k,
                "out": n,
                "time_now": now / r.latency_s,
                "time_before": before / r.latency_s,
                "measured_w": r.joules_per_inference / r.latency_s,
            }
        )
    return pd.DataFrame(rows)


def memory_ops_table(
    onchip_j_per_byte: float | None = None,
    graphs: dict | None = None,
    device: str | None = None,
    min_latency_s: float = 0.0,
):
    """IrEne's op-level LayerNorm / Softmax rows at the NVML sensor, priced by v2 (``onchip_j_per_byte`` = the
    on-chip streaming energy, J/B at 7 nm, the shipped one when None): one row per distinct measurement with its
    ``weight``."""
    rows = load_module_rows(level="op")
    cls = rows["module"].astype(str).str.rpartition(":")[2]
    rows = rows[cls.isin(MEMORY_OPS).to_numpy() & (rows["boundary"] == PRIOR_BOUNDARY).to_numpy()]
    if device:
        rows = rows[rows["hardware"] == device]
    rows = rows[rows["latency_s"].astype(float) >= min_latency_s]
    kw = {} if onchip_j_per_byte is None else {"stream_onchip_j_per_byte": onchip_j_per_byte}
    ms = build_module_set(rows.reset_index(drop=True), graphs=graphs, **kw)
    t = ms.table
    measured_w = t["joules_per_inference"] / t["latency_s"]
    predicted = np.exp(ms.log_prior)
    return pd.DataFrame(
        {
            "hardware": t["hardware"],
            "op": t["pattern"].str.rpartition(":")[2],
            "weight": t["weight"],
            "latency_s": t["latency_s"],
            "joules": predicted / t["joules_per_inference"],
            "time": ms.prior_seconds / t["latency_s"],
            "power": predicted / ms.prior_seconds / measured_w,
            "measured_w": measured_w,
            "predicted_w": predicted / ms.prior_seconds,
        }
    )


def fit_memory_power(steps: int = 12) -> float:
    """The on-chip streaming energy per byte (J/B at 7 nm) minimising the weighted mean squared log ratio of
    average power (joules / seconds, predicted over measured) on the :data:`FIT_DEVICE` LayerNorm / Softmax op
    rows that ran at least :data:`FIT_MIN_LATENCY_S` (golden section from 0 to the value at which the device's
    TDP cap binds for DRAM bytes, above which the loss is flat). Power,
    not joules: the energy per byte sets power; fitted on joules it would also absorb v2's error in the time of
    these eager ops (PyTorch's LayerNorm of 2021 took about twice v2's time). Long rows only: in shorter ones the
    host's dispatch fills the time and the power measured is that of the gaps between kernels, which the energy
    per byte does not describe."""
    graphs: dict = {}

    def loss(e: float) -> float:
        d = memory_ops_table(e, graphs, FIT_DEVICE, FIT_MIN_LATENCY_S)
        value = float(np.average(np.log(d["power"]) ** 2, weights=d["weight"]))
        print(f"on-chip {e * 1e12:.1f} pJ/B at 7 nm: mean squared log power ratio {value:.5f}", flush=True)
        return value

    hw = load_profile(FIT_DEVICE)
    headroom = hw.tdp_w - static_power_w(hw, hw.compute_units)
    cap = headroom / (hw.dram_bandwidth_bytes_per_s * hw.achievable_bandwidth_fraction)
    return golden_section_min(loss, 0.0, (cap - hw.dram_energy_per_byte_j) / node_energy_scale(hw), steps)


def _weighted_medians(d: pd.DataFrame, keys: list[str], cols: list[str]) -> pd.DataFrame:
    out = {}
    for key, g in d.groupby(keys):
        rep = g.loc[g.index.repeat(g["weight"].astype(int))]
        out[key] = {"rows": len(rep), **{c: float(rep[c].median()) for c in cols}}
    return pd.DataFrame(out).T


def main(argv: list[str] | None = None) -> int:
    """Print the medians per device (and per ``--by``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--source", default="irene", help="source in the committed GPU tables (default irene)"
    )
    parser.add_argument("--by", default=None, help="also group by this column: model, batch or seq_len")
    parser.add_argument(
        "--linear-ops", action="store_true", help="check GEMM times on IrEne's Linear op rows"
    )
    parser.add_argument("--memory-ops", action="store_true", help="v2 on IrEne's LayerNorm / Softmax op rows")
    parser.add_argument(
        "--onchip-j-per-byte",
        type=float,
        default=None,
        help="on-chip streaming energy, J/B at 7 nm (--memory-ops; default the shipped one)",
    )
    parser.add_argument(
        "--fit-memory-power", action="store_true", help="fit the on-chip streaming energy per byte"
    )
    args = parser.parse_args(argv)
    if args.fit_memory_power:
        fitted = fit_memory_power()
        print(f"fitted on {FIT_DEVICE} LayerNorm/Softmax op rows: {fitted * 1e12:.1f} pJ/B at 7 nm")
        return 0
    if args.memory_ops:
        d = memory_ops_table(args.onchip_j_per_byte)
        cols = ["joules", "time", "power", "measured_w", "predicted_w"]
        print(_weighted_medians(d, ["hardware", "op"], cols).round(3).to_string())
        return 0
    if args.linear_ops:
        d = linear_ops_table()
        print(d.groupby(["hardware", "in", "out"]).median().round(3).to_string())
        print(
            d.groupby("hardware")
            .agg(
                rows=("time_now", "size"),
                time_now=("time_now", "median"),
                time_before=("time_before", "median"),
            )
            .round(3)
            .to_string()
        )
        return 0
    d = split_table(args.source)
    if d.empty:
        print(
            f"no {PRIOR_BOUNDARY} rows with a latency and a graph for source '{args.source}'", file=sys.stderr
        )
        return 2
    keys = ["hardware"] + ([args.by] if args.by else [])
    cols = ["joules", "time", "power", "measured_w", "predicted_w"]
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(d.groupby(keys)[cols].median().round(3).to_string())
        print(f"\nall rows: median joules ratio {np.median(d['joules']):.3f} over {len(d)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
