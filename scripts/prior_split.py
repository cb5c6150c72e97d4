"""Split the v2 prior's error on the committed GPU rows into a time ratio and a power ratio.

    python scripts/prior_split.py [--source irene] [--by model|batch|seq_len]

For every whole-network row at the prior's own boundary (``gpu-board-nvml``) that has a latency, the v2 prior
with its shipped constants (nothing fitted) predicts joules and seconds; the script prints, per device (and per
``--by`` column), the medians of

* predicted / measured joules (the figure of the x1.5 target),
* predicted / measured latency (is the time right?),
* predicted / measured average power = (joules / seconds) (is the power right?),

so that ``joules ratio = time ratio x power ratio`` row by row. docs/prior.md quotes its output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimator.energy.hardware import load_profile
from estimator.energy.prior_v2 import assemble
from estimator.energy.runtimes import get_runtime
from estimator.learn.gpu_training import PRIOR_BOUNDARY, build_gpu_set, load_gpu_table


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


def main(argv: list[str] | None = None) -> int:
    """Print the medians per device (and per ``--by``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--source", default="irene", help="source in the committed GPU tables (default irene)"
    )
    parser.add_argument("--by", default=None, help="also group by this column: model, batch or seq_len")
    args = parser.parse_args(argv)
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
