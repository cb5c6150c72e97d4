"""The evaluation protocol of EVALUATION.md on the committed measurement tables, and its report.

``estimate evaluate`` runs, for every (hardware, runtime) with data: a random split (reference only), grouped
k-fold by architecture (the headline), leave-one-task-out (leave-one-input-shape-out), and for layer-level data
the whole-network check with the network's own layers held out. Every split reports the trained model beside
the baselines (physics prior, FLOPs-linear, Desislavov et al., TDP x roofline time) and the interval coverage.
Writes Markdown, JSON and a predicted-vs-measured SVG plot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.measurements import read_measurements
from estimator.errors import DataError
from estimator.learn.features import FEATURE_NAMES, OP_CATEGORIES
from estimator.learn.training import (
    REPO_ROOT,
    TrainingSet,
    evaluate_split,
    featurize_cached,
    fit,
    grouped_folds,
    metrics,
    predict_log,
)


@dataclass(frozen=True)
class EvalSet:
    """A committed training table and how it is learned."""

    hardware: str
    table: str
    granularity: str
    description: str


#: The tables evaluated by ``estimate evaluate``.
EVAL_SETS: tuple[EvalSet, ...] = (
    EvalSet(
        "rpi5",
        "data/hwnasbench360.csv.gz",
        "graph",
        "HW-NAS-Bench-360: NAS-Bench-201 networks on one Raspberry Pi 5 core",
    ),
    EvalSet(
        "xeon-gold-5120",
        "data/getzner.csv.gz",
        "kernel",
        "Getzner et al.: single PyTorch layers (and AlexNet/VGG11/VGG13) on 2x Xeon Gold 5120",
    ),
)
_SYSTEMS = ("model", "prior", "flops_linear", "desislavov", "tdp_roofline")


def single_kernel_mask(ts: TrainingSet) -> np.ndarray:
    """Rows whose network launches at most one kernel (the training rows of a kernel-granularity model)."""
    return (
        np.array([len(k) <= 1 for k in ts.kernel_X])
        if ts.kernel_X is not None
        else np.ones(len(ts.y_log), bool)
    )


def _cross_validate(ts: TrainingSet, granularity: str, folds: list[np.ndarray]) -> tuple[dict, np.ndarray]:
    """Fit and predict each fold; metrics of the model and every baseline pooled over all predicted rows."""
    results = []
    predicted = {system: np.full(len(ts.y_log), np.nan) for system in _SYSTEMS}
    tested = np.zeros(len(ts.y_log), dtype=bool)
    for mask in folds:
        r = evaluate_split(ts.subset(~mask), ts.subset(mask), granularity)
        results.append((r["result"], int(mask.sum())))
        for system in _SYSTEMS:
            predicted[system][mask] = r["predictions"][system]
        tested |= mask
    measured, tasks = ts.measured_j[tested], ts.table["task"].to_numpy()[tested]
    out = {system: metrics(measured, predicted[system][tested], tasks) for system in _SYSTEMS}
    out["interval"] = {
        "level": results[0][0]["interval"]["level"],
        "coverage": float(
            np.average([r["interval"]["coverage"] for r, _ in results], weights=[n for _, n in results])
        ),
        "mean_width_factor": float(np.mean([r["interval"]["mean_width_factor"] for r, _ in results])),
    }
    return out, predicted["model"]


#: Features that identify a layer whatever the batch (weights, per-sample input, op categories).
_LAYER_IDENTITY = (
    "log_weight_bytes",
    "log_input_elements_per_sample",
    "log_conv_kernel_elems_flop_weighted",
    *(f"log_{c}_nodes" for c in OP_CATEGORIES),
)


def layer_signatures(ts: TrainingSet) -> np.ndarray:
    """A key per row that is equal for the same layer at any batch (identity features and FLOPs per sample):
    identical layers of different networks (VGG11's and VGG13's first convolution) share it."""
    cols = [FEATURE_NAMES.index(f) for f in _LAYER_IDENTITY]
    flops_per_sample = np.expm1(ts.X[:, FEATURE_NAMES.index("log_flops")]) / np.exp(
        ts.X[:, FEATURE_NAMES.index("log_batch")]
    )
    keys = np.column_stack([ts.X[:, cols], np.log1p(flops_per_sample)]).round(6)
    return np.array([hashlib.sha1(row.tobytes()).hexdigest()[:16] for row in keys])


def evaluate_runtime(ts: TrainingSet, granularity: str, seed: int = 0) -> dict:
    """Every split of EVALUATION.md that the data allows, for one (hardware, runtime).

    Layer-level data (kernel granularity) is grouped by layer signature, so that a layer that occurs in
    several networks, or as a random configuration too, never falls on both sides of a split.
    """
    train_rows = single_kernel_mask(ts) if granularity == "kernel" else np.ones(len(ts.y_log), bool)
    if granularity == "kernel":
        ts = dataclasses.replace(ts, table=ts.table.assign(group=layer_signatures(ts)))
    report: dict = {"rows": len(ts.y_log), "groups": len(np.unique(ts.groups))}
    base = ts.subset(train_rows)
    rng = np.random.default_rng(seed)
    random_mask = rng.random(len(base.y_log)) < 0.2
    report["random_split_reference_only"], _ = _cross_validate(base, granularity, [random_mask])
    report["grouped_5fold"], predicted = _cross_validate(
        base, granularity, grouped_folds(base.groups, 5, seed)
    )
    families = base.table["family"].astype(str).to_numpy()
    if len(set(families)) > 1:
        ape = np.abs(predicted - base.measured_j) / base.measured_j
        report["grouped_5fold_by_family"] = {
            f: {
                "n": int((families == f).sum()),
                "mape": float(ape[families == f].mean()),
                "median_ape": float(np.median(ape[families == f])),
            }
            for f in sorted(set(families))
        }
    tasks = sorted(set(base.table["task"]))
    if len(tasks) > 1:
        report["leave_one_task_out"] = {
            t: _cross_validate(base, granularity, [base.table["task"].to_numpy() == t])[0] for t in tasks
        }
    if granularity == "kernel":
        report["whole_network_leave_architecture_out"] = _whole_networks(ts, train_rows)
    spread = ts.table["spread_rel"].dropna() if "spread_rel" in ts.table else pd.Series(dtype=float)
    report["noise_floor"] = {
        "median_spread_rel": float(spread.median()) if len(spread) else None,
        "p90_spread_rel": float(spread.quantile(0.9)) if len(spread) else None,
    }
    report["_plot"] = (base.measured_j, predicted)
    return report


def _whole_networks(ts: TrainingSet, train_rows: np.ndarray) -> dict:
    out = {}
    archs = ts.table.get("architecture")
    if archs is None:
        return out
    for arch in sorted(set(archs.dropna())):
        test = ~train_rows & (archs.to_numpy() == arch)
        if not test.any():
            continue
        # Hold out every layer of the network, and any layer identical to one of them (by signature).
        held_out = set(ts.groups[train_rows & (archs.to_numpy() == arch)])
        train = train_rows & ~np.isin(ts.groups, list(held_out)) & (archs.to_numpy() != arch)
        reg = fit(ts.subset(train))
        sub = ts.subset(test)
        pred = np.exp(predict_log(reg, sub, "kernel"))
        m = metrics(sub.measured_j, pred)
        out[arch] = {
            "n": m["n"],
            "mape": m["mape"],
            "median_ape": m["median_ape"],
            "prior_mape": metrics(sub.measured_j, np.exp(sub.prior_log))["mape"],
        }
    return out


def run_evaluation(
    hardware: str | None = None,
    runtime: str | None = None,
    *,
    root: Path = REPO_ROOT,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Evaluate every committed set (or the one for ``hardware``/``runtime``); returns the report dict."""
    sets = [s for s in EVAL_SETS if hardware in (None, s.hardware)]
    if not sets:
        known = ", ".join(s.hardware for s in EVAL_SETS)
        raise DataError(f"no committed measurements for hardware '{hardware}'; evaluated hardware: {known}")
    report: dict = {}
    for s in sets:
        table = read_measurements(root / s.table)
        if runtime is not None:
            table = table[table["runtime"] == runtime]
            if table.empty:
                raise DataError(f"{s.table} has no rows of runtime '{runtime}'")
        if progress:
            progress(f"featurising {len(table)} rows of {s.table}")
        ts = featurize_cached(table, s.hardware, kernel_rows=s.granularity == "kernel")
        for rt in sorted(set(table["runtime"])):
            if progress:
                progress(f"evaluating {s.hardware} / {rt}")
            sub = ts.subset(ts.table["runtime"].to_numpy() == rt)
            report[f"{s.hardware}/{rt}"] = {
                "description": s.description,
                "granularity": s.granularity,
                **evaluate_runtime(sub, s.granularity),
            }
    return report


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """Write evaluation.md, evaluation.json and evaluation_pred_vs_measured.svg into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {k: v.pop("_plot") for k, v in report.items() if "_plot" in v}
    paths = [
        out_dir / "evaluation.json",
        out_dir / "evaluation.md",
        out_dir / "evaluation_pred_vs_measured.svg",
    ]
    paths[0].write_text(json.dumps(report, indent=2, sort_keys=True, default=_json_default) + "\n")
    paths[1].write_text(_markdown(report))
    paths[2].write_text(_svg(plots))
    return paths


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value))


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _markdown(report: dict) -> str:
    lines = [
        "# Evaluation (generated by `estimate evaluate`)",
        "",
        "Protocol: `../shared/EVALUATION.md`. Headline: grouped 5-fold by architecture. Errors are absolute",
        "percentage errors of joules per inference; baselines are computed on the same folds.",
        "",
    ]
    for key, r in report.items():
        g = r["grouped_5fold"]
        m = g["model"]
        lines += [
            f"## {key}",
            "",
            f"{r['description']}; {r['rows']} rows, {r['groups']} architecture groups, "
            f"granularity `{r['granularity']}`.",
            "",
        ]
        lines += [
            "| split | system | MAPE | median APE | P90 APE | P95 APE | hit +-10% | hit +-20% | Kendall tau (min over tasks) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for split in ("grouped_5fold", "random_split_reference_only"):
            mm = r[split]["model"]
            lines.append(
                f"| {split} | trained model | {_pct(mm['mape'])} | {_pct(mm['median_ape'])} | "
                f"{_pct(mm['p90_ape'])} | {_pct(mm['p95_ape'])} | {_pct(mm['hit_10'])} | "
                f"{_pct(mm['hit_20'])} | {mm['kendall_tau_min']:.3f} |"
            )
        for system in _SYSTEMS[1:]:
            b = g[system]
            lines.append(
                f"| grouped_5fold | {system} | {_pct(b['mape'])} | {_pct(b['median_ape'])} | | | "
                f"{_pct(b['hit_10'])} | | |"
            )
        taus = ", ".join(f"{t}: {v:.3f}" for t, v in m["kendall_tau_by_task"].items())
        lines += [
            "",
            f"Kendall tau within task (grouped 5-fold): {taus}. R^2 (log): {m['r2_log']:.4f}.",
            f"90% interval coverage on held-out groups: {_pct(g['interval']['coverage'])} "
            f"(mean width x{g['interval']['mean_width_factor']:.3f}).",
            "",
        ]
        if "grouped_5fold_by_family" in r:
            by_family = ", ".join(
                f"{f} {_pct(v['mape'])} (median {_pct(v['median_ape'])}, n={v['n']})"
                for f, v in r["grouped_5fold_by_family"].items()
            )
            lines += [f"By family (grouped 5-fold): {by_family}.", ""]
        if "leave_one_task_out" in r:
            lines += ["Leave-one-task-out (train on the other tasks):", ""]
            for t, v in r["leave_one_task_out"].items():
                lines.append(
                    f"- held out {t}: MAPE {_pct(v['model']['mape'])}, hit +-10% "
                    f"{_pct(v['model']['hit_10'])}, prior MAPE {_pct(v['prior']['mape'])}, "
                    f"coverage {_pct(v['interval']['coverage'])}"
                )
            lines.append("")
        if r.get("whole_network_leave_architecture_out"):
            lines += [
                "Whole networks predicted as the sum of their kernels, the network's own layers held out:",
                "",
            ]
            for arch, v in r["whole_network_leave_architecture_out"].items():
                lines.append(
                    f"- {arch}: MAPE {_pct(v['mape'])} over {v['n']} batch sizes "
                    f"(physics prior alone {_pct(v['prior_mape'])})"
                )
            lines.append("")
        nf = r["noise_floor"]
        if nf["median_spread_rel"] is not None:
            lines += [
                f"Measurement noise (repeat spread (max-min)/median): median {_pct(nf['median_spread_rel'])}, "
                f"P90 {_pct(nf['p90_spread_rel'])}.",
                "",
            ]
        else:
            lines += [
                "Measurement noise: the source gives one energy value per row (no repeats), so the noise "
                "floor is unknown.",
                "",
            ]
    lines += ["![predicted vs measured](evaluation_pred_vs_measured.svg)", ""]
    return "\n".join(lines)


def _svg(plots: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """Log-log predicted-vs-measured scatter, one panel per (hardware, runtime), grouped-CV predictions."""
    w, h, pad = 300, 300, 40
    cols = max(1, min(3, len(plots)))
    rows = max(1, math.ceil(len(plots) / cols))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{cols * w}" height="{rows * h}" '
        f'font-family="sans-serif" font-size="11">'
    ]
    colors = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
    for i, (name, (meas, pred)) in enumerate(plots.items()):
        ok = np.isfinite(pred) & (pred > 0) & (meas > 0)
        lm, lp = np.log10(meas[ok]), np.log10(pred[ok])
        lo, hi = float(min(lm.min(), lp.min())), float(max(lm.max(), lp.max()))
        span = hi - lo or 1.0
        ox, oy = (i % cols) * w, (i // cols) * h

        def sx(v, ox=ox, lo=lo, span=span):
            return ox + pad + (v - lo) / span * (w - 2 * pad)

        def sy(v, oy=oy, lo=lo, span=span):
            return oy + h - pad - (v - lo) / span * (h - 2 * pad)

        parts.append(
            f'<rect x="{ox + pad}" y="{oy + pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" '
            f'fill="none" stroke="#999"/>'
        )
        parts.append(
            f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" '
            f'stroke="#555" stroke-dasharray="4"/>'
        )
        idx = np.random.default_rng(0).permutation(len(lm))[:1500]
        for j in idx:
            parts.append(
                f'<circle cx="{sx(lm[j]):.1f}" cy="{sy(lp[j]):.1f}" r="1.5" '
                f'fill="{colors[i % len(colors)]}" fill-opacity="0.5"/>'
            )
        parts.append(f'<text x="{ox + pad}" y="{oy + pad - 8}">{name} (log10 J)</text>')
        parts.append(f'<text x="{ox + w / 2 - 30}" y="{oy + h - 8}">measured</text>')
        parts.append(
            f'<text x="{ox + 8}" y="{oy + h / 2}" transform="rotate(-90 {ox + 8} {oy + h / 2})">predicted</text>'
        )
        parts.append(f'<text x="{ox + pad + 2}" y="{oy + h - pad - 4}">{lo:.2f}</text>')
        parts.append(f'<text x="{ox + w - pad - 30}" y="{oy + h - pad - 4}">{hi:.2f}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
