"""Fischer's RTX 4090 (CodeCarbon total, Keras CNNs): the noise floor and the leave-one-family-out rows.

    python scripts/fischer_rtx4090.py            # noise floor from the committed tables
    python scripts/fischer_rtx4090.py --rows     # and the model's held-out prediction of every row
    python scripts/fischer_rtx4090.py --campaign # and the pipeline term judged on the other campaign

The noise floor (estimator.learn.noise) reads data/validation_fischer.csv.gz (two runs of 30 networks at batch 4
and 16, CodeCarbon rows) and data/fischer_rtx4090.csv.gz (one run per network, 50,000 images). ``--rows``
repeats the per-source split of ``estimate evaluate --gpu`` for fischer_rtx4090 (leave-one-family-out, only the
device's own rows train, as estimator.learn.gpu_evaluation does) and prints each held-out row: measured and
predicted J per sample, the v2 prior with the input-pipeline term, and the error; then the model's MAPE and the
prior's (with its pipeline term; absolute and signed) per family and per batch. docs/fischer_rtx4090.md reads
these figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def noise_lines() -> list[str]:
    """The noise floor figures as text lines."""
    from estimator.data.measurements import read_measurements
    from estimator.learn.noise import campaign_offsets, repeat_noise

    val = read_measurements(ROOT / "data/validation_fischer.csv.gz", table="validation")
    val = val[val["boundary"] == "codecarbon-total"]
    strep = read_measurements(ROOT / "data/fischer_rtx4090.csv.gz")
    r = repeat_noise(val, ["architecture", "batch"])
    c = campaign_offsets(strep, val, ["architecture", "batch"])
    return [
        f"repeats (validation set, {r.configs} network x batch pairs, two runs each): pooled CV "
        f"{r.pooled_cv:.2%}, (max-min)/mean median {r.median_range:.2%}, P90 {r.p90_range:.2%}, "
        f"max {r.max_range:.2%}; floor under a single-run MAPE {r.floor_ape:.2%}",
        f"campaigns (STREP 2025-03 vs validation 2025-09, {c.configs} network x batch in both): median ratio "
        f"{c.median_ratio:.3f}, mean |ratio - 1| {c.mean_abs_deviation:.2%}, centred "
        f"{c.mean_abs_deviation_centred:.2%}; per-run spread {c.per_run_sd:.2%}",
    ]


def held_out_rows() -> pd.DataFrame:
    """Leave-one-family-out on fischer_rtx4090 (the evaluation's per-source split), one row per network."""
    from estimator.learn.gpu_training import GPU_TABLES, build_gpu_set, load_gpu_table, predict_split

    tables = tuple(t for t in GPU_TABLES if t[0] == "fischer_rtx4090")
    gs = build_gpu_set(load_gpu_table(tables=tables))
    t = gs.table
    families = t["family"].astype(str).to_numpy()
    pred, prior = np.full(len(t), np.nan), np.full(len(t), np.nan)
    for family in sorted(set(families)):
        train, test = families != family, families == family
        out = predict_split(gs, train, test, families)
        pred[test], prior[test] = out["model"], out["prior_v2_fitted"]
    batch = t["batch"].to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "network": t["architecture"],
            "family": families,
            "batch": t["batch"],
            "measured_j_per_sample": gs.measured_j / batch,
            "model_j_per_sample": pred / batch,
            "prior_pipeline_j_per_sample": prior / batch,
            "error_pct": (pred / gs.measured_j - 1) * 100,
        }
    )


def campaign_lines() -> list[str]:
    """The pipeline term fitted on every STREP row (March 2025, TF 2.18), judged with the prior on the other
    campaign's CodeCarbon rows (data/validation_fischer.csv.gz: September 2025, TF 2.20, batch 4 and 16)."""
    from estimator.data.measurements import read_measurements
    from estimator.learn.gpu_features import GPU_FEATURE_NAMES
    from estimator.learn.gpu_pipeline import fit_pipeline_term
    from estimator.learn.gpu_training import build_gpu_set, prior_and_features

    strep = read_measurements(ROOT / "data/fischer_rtx4090.csv.gz")
    val = read_measurements(ROOT / "data/validation_fischer.csv.gz", table="validation")
    val = val[val["boundary"] == "codecarbon-total"]
    gs = build_gpu_set(pd.concat([strep, val], ignore_index=True).assign(judged_only=False))
    log_prior, X = prior_and_features(gs)  # no row at the board: the shipped host constants, as in the split
    prior, seconds = np.exp(log_prior), np.exp(X[:, GPU_FEATURE_NAMES.index("log_prior_seconds")])
    batch, measured = gs.table["batch"].to_numpy(dtype=float), np.asarray(gs.measured_j)
    fit = (gs.table["source"] == "fischer_rtx4090").to_numpy()
    term = fit_pipeline_term(prior[fit], batch[fit], seconds[fit], measured[fit])
    judged = ~fit
    error = (prior + term.joules(batch, seconds))[judged] / measured[judged] * 100 - 100
    return [
        f"term fitted on the {fit.sum()} STREP rows: {term.j_per_sample:.3g} J per sample, {term.host_w:.3g} W x "
        f"prior seconds, {term.j_per_call:.3g} J per call",
        f"prior + term on the {judged.sum()} validation-campaign rows ({gs.table['architecture'][judged].nunique()} "
        f"networks): MAPE {np.abs(error).mean():.1f}%, signed mean {error.mean():+.1f}%; batch 4 "
        f"{np.abs(error[batch[judged] == 4]).mean():.1f}%, batch 16 {np.abs(error[batch[judged] == 16]).mean():.1f}%",
    ]


def main() -> None:
    """Print the noise floor and, with ``--rows``, every held-out row and the per-family and per-batch MAPE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", action="store_true", help="also the leave-one-family-out rows (~1 min)")
    parser.add_argument(
        "--campaign", action="store_true", help="also the pipeline term judged on the validation campaign"
    )
    args = parser.parse_args()
    for line in noise_lines() + (campaign_lines() if args.campaign else []):
        print(line)
    if not args.rows:
        return
    rows = held_out_rows()
    rows["ape"] = rows["error_pct"].abs()
    prior_error = rows["prior_pipeline_j_per_sample"] / rows["measured_j_per_sample"] * 100 - 100
    rows["prior_ape"], rows["prior_signed"] = prior_error.abs(), prior_error
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(
            rows.sort_values(["family", "network"]).to_string(index=False, float_format=lambda x: f"{x:.3f}")
        )
        for key in ("family", "batch"):
            print(rows.groupby(key)[["ape", "prior_ape", "prior_signed"]].agg("mean").round(1).to_string())
    ape = rows["ape"].to_numpy()
    print(f"MAPE {ape.mean():.1f}%, median {np.median(ape):.1f}%, P90 {np.quantile(ape, 0.9):.1f}%")
    print(
        f"prior + pipeline: MAPE {rows['prior_ape'].mean():.1f}%, signed mean {rows['prior_signed'].mean():+.1f}%"
    )


if __name__ == "__main__":
    main()
