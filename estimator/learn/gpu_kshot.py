"""Leave-one-device-out with k measurements of the held-out GPU (``../shared/EVALUATION.md``: zero-shot and with
k = 3 and 10 measurements): how far a few measurements of a new GPU take the cross-device answer.

What k measurements buy here is the GPU's bias: the cross-device answer (:mod:`estimator.learn.gpu_cross`) of
every held-out row is multiplied by exp(median of log(measured / answer)) over the k measured rows; nothing else is
refitted (a handful of rows cannot train trees). The measured rows come from half of the held-out unit's networks
(groups) drawn at random, and the answer is judged on the rows of the other half, so no network is seen by both;
a held-out unit is one GPU, one source and one category of row (one forward pass, or an input pipeline timed), as
a user would measure one workload on their GPU. Each k is drawn :data:`DRAWS` times (seeded) and the figures pool
every draw's test rows.

The interval after k measurements is the spread inside a unit plus the error of a k-point bias, both read from
the training GPUs' held-out residuals of the same fold (never from the held-out GPU): for every calibration unit
of the row's category (all units where fewer than three GPUs have that category, as
:func:`~estimator.learn.gpu_interval.category_interval` does), k of its centred residuals are drawn, their median
is the bias error, and every other residual minus it is one draw of a new row's residual; each unit weighs the
same. Only rows at the prior's boundary are judged (where the cross-device answer is the prior itself); the power
floor is not applied to the shifted answer.
"""

from __future__ import annotations

import numpy as np

from estimator.learn.gpu_interval import category_units, weighted_quantiles
from estimator.learn.training import INTERVAL_LEVEL

#: The numbers of measurements of the held-out GPU (EVALUATION.md).
KS = (3, 10)
#: Random draws of the measured networks per held-out unit and k.
DRAWS = 20
#: Draws of k calibration residuals per calibration unit for the interval.
INTERVAL_DRAWS = 50
#: Seed of every draw (the report is reproducible).
SEED = 0


def kshot_interval(
    resid: np.ndarray,
    labels: np.ndarray,
    category: np.ndarray,
    value: object,
    k: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """(low, high) log quantiles at :data:`INTERVAL_LEVEL` of a new row's residual after its GPU's bias was
    estimated from k rows: per calibration unit (a label in one category), a residual minus the median of k
    other residuals of the same unit, centred on the unit's median; units of the ``value`` category when three
    or more labels have it, else every unit; each unit weighs the same. ``resid`` has no NaN."""
    units, use = category_units(labels, category, value)
    draws, weights = [], []
    for u in np.unique(units[use]):
        e = resid[use & (units == u)]
        e = e - np.median(e)
        if len(e) <= k:
            continue
        unit_draws = []
        for _ in range(INTERVAL_DRAWS):
            pick = np.zeros(len(e), bool)
            pick[rng.choice(len(e), k, replace=False)] = True
            unit_draws.append(e[~pick] - np.median(e[pick]))
        d = np.concatenate(unit_draws)
        draws.append(d)
        weights.append(np.full(len(d), 1.0 / len(d)))
    if not draws:
        return float("nan"), float("nan")
    alpha = (1 - INTERVAL_LEVEL) / 2
    lo, hi = weighted_quantiles(np.concatenate(draws), np.concatenate(weights), (alpha, 1 - alpha))
    return float(lo), float(hi)


def kshot_unit(
    measured: np.ndarray,
    answer: np.ndarray,
    groups: np.ndarray,
    k: int,
    interval: tuple[float, float],
    rng: np.random.Generator,
) -> dict | None:
    """Pooled figures of :data:`DRAWS` k-shot draws on one held-out unit's rows (``measured`` and the zero-shot
    ``answer``, J; ``groups``: the network of each row): the k measured rows from a random half of the networks,
    the test rows the other half's. None where the measured half has fewer than k rows."""
    uniq = np.unique(groups)
    if len(uniq) < 2:
        return None
    ape_k, ape_0, covered, widths = [], [], [], []
    for _ in range(DRAWS):
        seen = rng.choice(uniq, len(uniq) // 2, replace=False)
        pool = np.flatnonzero(np.isin(groups, seen))
        if len(pool) < k:
            return None
        pick = rng.choice(pool, k, replace=False)
        test = ~np.isin(groups, seen)
        shift = float(np.median(np.log(measured[pick] / answer[pick])))
        pred = answer[test] * np.exp(shift)
        y = measured[test]
        ape_k.append(np.abs(pred - y) / y)
        ape_0.append(np.abs(answer[test] - y) / y)
        lo, hi = np.log(pred) + interval[0], np.log(pred) + interval[1]
        covered.append((np.log(y) >= lo) & (np.log(y) <= hi))
        widths.append(np.full(test.sum(), np.exp(interval[1] - interval[0])))
    ape_k, ape_0 = np.concatenate(ape_k), np.concatenate(ape_0)
    return {
        "k": k,
        "draws": DRAWS,
        "test_rows": len(ape_k),
        "zero_shot_median_ape": float(np.median(ape_0)),
        "median_ape": float(np.median(ape_k)),
        "p90_ape": float(np.quantile(ape_k, 0.9)),
        "coverage": float(np.concatenate(covered).mean()),
        "mean_width_factor": float(np.concatenate(widths).mean()),
    }


def kshot_report(gs, devices: np.ndarray, answer: np.ndarray, calibrations: dict) -> dict:
    """k-shot figures per held-out unit at the prior's boundary. ``answer``: the zero-shot cross-device answer
    of every row (J, its device held out); ``calibrations``: per held-out device, (log residuals, unit labels,
    calibration mask) of its fold's interval (:func:`~estimator.learn.gpu_cross.cross_device_split`)."""
    from estimator.learn.gpu_cross import at_prior_boundary
    from estimator.learn.gpu_training import input_pipeline

    t = gs.table
    sources = t["source"].astype(str).to_numpy()
    groups = t["group"].astype(str).to_numpy()
    pipeline = input_pipeline(gs)
    board = at_prior_boundary(gs) & ~np.isnan(answer)
    rng = np.random.default_rng(SEED)
    out: dict = {}
    for device in sorted(set(devices[board])):
        resid, labels, calibration = calibrations[device]
        have = calibration & ~np.isnan(resid)
        for source in sorted(set(sources[board & (devices == device)])):
            for value in (False, True):
                rows = board & (devices == device) & (sources == source) & (pipeline == value)
                if not rows.any():
                    continue
                name = f"{device}, {source}, {'input pipeline' if value else 'forward pass'}"
                entries = []
                for k in KS:
                    iv = kshot_interval(resid[have], labels[have], pipeline[have], value, k, rng)
                    e = kshot_unit(gs.measured_j[rows], answer[rows], groups[rows], k, iv, rng)
                    if e is not None:
                        entries.append(e)
                out[name] = entries
    return out


def kshot_markdown(report: dict | None) -> list[str]:
    """The report's k-shot section (empty without figures)."""
    if not report:
        return []
    lines = [
        "## Leave-one-device-out with k measurements of the held-out GPU",
        "",
        "The cross-device answer times exp(median log error of k measured rows of the held-out GPU); the k rows "
        f"come from a random half of its networks and the other half is judged, {DRAWS} seeded draws pooled "
        "(`estimator/learn/gpu_kshot.py`). The interval: the spread inside a GPU plus the error of a k-point "
        "bias, both from the training GPUs' residuals. Only rows at the prior's boundary; a unit with too few "
        "networks for a k has no line.",
        "",
        "| held-out GPU, source, rows | k | test rows | zero-shot median APE | median APE | P90 APE | 90% coverage | mean width |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entries in report.items():
        for e in entries:
            lines.append(
                f"| {name} | {e['k']} | {e['test_rows']} | {100 * e['zero_shot_median_ape']:.1f}% | "
                f"{100 * e['median_ape']:.1f}% | {100 * e['p90_ape']:.1f}% | {100 * e['coverage']:.1f}% | "
                f"x{e['mean_width_factor']:.2f} |"
            )
    return [*lines, ""]


__all__ = ["DRAWS", "KS", "kshot_interval", "kshot_markdown", "kshot_report", "kshot_unit"]
