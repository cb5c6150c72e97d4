"""The 90% interval of the GPU models, calibrated so that it holds on a held-out unit (a GPU, or a network).

Residuals come from a grouped split of the training rows (``labels``: the device in leave-one-device-out, the
network group inside one device): every residual is log(measured) - log(predicted) with its own label held
out. A pooled quantile of those residuals fails on an unseen GPU for two reasons:

* units are unequal in size (IrEne's two GPUs hold 85% of the rows), so a pooled quantile is the big units'
  spread - here **each unit weighs the same**;
* a unit's residuals share a bias (something about a GPU the features do not explain), so what an unseen unit
  meets is one draw of that bias plus the spread inside a unit - here the interval is the quantiles of
  **unit bias + within-unit spread**: every unit's median residual (equal weights) added to every centred
  residual of the wanted category (equal weights per unit), a random-effects view of the residuals.

Intervals are Mondrian by category (a source that timed its host input pipeline does not set the within-unit
spread of forward-pass intervals), while the unit biases come from every unit: with forward-pass rows from
two GPUs only, the spread of biases between GPUs is learned from all of them.

With a handful of units the empirical quantiles of their biases cannot reach a 90% level (k units leave a new one
outside their range with probability 2/(k+1)). ``predictive=True`` replaces them by the prediction interval of a
new draw from a normal sample of k biases, mean +- t(k-1) x sd x sqrt(1 + 1/k) (the classical predictive
distribution of one more observation of a normal sample; the random-effects prediction interval of Higgins,
Thompson and Spiegelhalter, J. R. Stat. Soc. A 172(1), 2009, in its k-1 degrees-of-freedom form); the cross-device
answer uses it (:mod:`estimator.learn.gpu_cross`).

A widening factor learned by nested leave-one-device-out (each training device held out in turn, the factor
that brings their mean coverage to 90%) was tried on the same data and over-covered every held-out GPU
(100% with intervals up to x2,860 wide), so it is not used (docs/evaluation_gpu.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from estimator.learn.training import INTERVAL_LEVEL


@dataclass(frozen=True)
class Interval:
    """Log-residual quantiles of an interval and how they were calibrated.

    Attributes:
        low, high: log(measured / predicted) at the interval's ends.
        labels: units (devices or groups) whose residuals calibrated it.
        basis: one line on how it was calibrated.
    """

    low: float
    high: float
    labels: int
    basis: str


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Quantiles ``qs`` of ``values`` under ``weights`` (mid-point interpolation of the weighted CDF)."""
    order = np.argsort(values)
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(qs, cdf, v)


#: Points of the t predictive distribution of a new unit's bias (``predictive=True``), as mid-point quantiles.
PREDICTIVE_POINTS = 1000


def predictive_biases(biases: np.ndarray, points: int = PREDICTIVE_POINTS) -> np.ndarray:
    """Equally weighted quantile points of a new unit's bias given the ``biases`` of k >= 2 units: the
    prediction distribution mean + t(k-1) x sd x sqrt(1 + 1/k) of a normal sample (sd with k-1 divisor)."""
    from scipy.stats import t as student_t

    k = len(biases)
    if k < 2:
        raise ValueError("a predictive bias needs at least two units")
    grid = (np.arange(points) + 0.5) / points
    scale = float(np.std(biases, ddof=1)) * np.sqrt(1 + 1 / k)
    return float(np.mean(biases)) + scale * student_t.ppf(grid, k - 1)


def unit_effects_quantiles(
    resid: np.ndarray,
    labels: np.ndarray,
    within: np.ndarray | None = None,
    level: float = INTERVAL_LEVEL,
    predictive: bool = False,
) -> tuple[float, float]:
    """(low, high) quantiles at ``level`` of (a unit's median residual) + (a centred residual of the rows
    ``within``, all rows when None), every unit weighing the same in both terms; with ``predictive`` the first
    term is a new unit's bias under a normal model of the units' biases (:func:`predictive_biases`)."""
    within = np.ones(len(resid), bool) if within is None else within
    units = np.unique(labels)
    bias = {u: float(np.median(resid[labels == u])) for u in units}
    biases = np.array(list(bias.values()))
    if predictive and len(biases) >= 2:
        biases = predictive_biases(biases)
    centred, weights = [], []
    for u in units:
        own = (labels == u) & within
        if own.any():
            centred.append(resid[own] - bias[u])
            weights.append(np.full(own.sum(), 1.0 / own.sum()))
    e, we = np.concatenate(centred), np.concatenate(weights)
    total = (biases[:, None] + e[None, :]).ravel()
    w = np.broadcast_to(we[None, :], (len(biases), len(e))).ravel()
    alpha = (1 - level) / 2
    lo, hi = weighted_quantiles(total, w, (alpha, 1 - alpha))
    return float(lo), float(hi)


def calibrate(
    resid: np.ndarray,
    labels: np.ndarray,
    within: np.ndarray | None = None,
    level: float = INTERVAL_LEVEL,
    predictive: bool = False,
) -> Interval:
    """The interval of a held-out unit from residuals ``resid`` of units ``labels``, its within-unit spread
    from the rows ``within``; ``predictive``: the units' biases read through a normal model (see the module)."""
    keep = ~np.isnan(resid)
    within = np.ones(len(resid), bool) if within is None else within
    resid, labels, within = resid[keep], labels[keep], within[keep]
    if not within.any():
        return Interval(float("nan"), float("nan"), 0, "no calibration residuals")
    lo, hi = unit_effects_quantiles(resid, labels, within, level, predictive)
    n = len(np.unique(labels))
    how = (
        f"a new unit's bias predicted from {n} held-out units' biases (normal model, Student's t with {n - 1} "
        "degrees of freedom)"
        if predictive and n >= 2
        else f"bias of {n} held-out units"
    )
    return Interval(lo, hi, n, f"{how} + spread inside them, each unit weighted equally")


def category_interval(
    resid: np.ndarray,
    labels: np.ndarray,
    category: np.ndarray,
    value: object,
    min_rows: int = 10,
    predictive: bool = False,
    min_units: int = 3,
) -> Interval:
    """The interval of a held-out row of category ``value`` from residuals ``resid`` (no NaN) of units, a unit
    being one label in one category (a GPU's forward-pass rows and its input-pipeline rows are two units, each
    with its own bias). Where ``min_units`` or more labels have rows of that category, the interval is theirs
    alone (biases and spread); otherwise the biases come from every unit and the within-unit spread from the
    category's rows (all rows where it has fewer than ``min_rows``)."""
    units, use = category_units(labels, category, value, min_units)
    own = category == value
    if not use.all():
        return calibrate(resid[use], units[use], predictive=predictive)
    return calibrate(resid, units, own if own.sum() >= min_rows else None, predictive=predictive)


def category_units(
    labels: np.ndarray, category: np.ndarray, value: object, min_units: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """(unit index per row, rows whose units set a ``value`` row's interval): a unit is one label in one
    category; the rows of ``value`` alone where ``min_units`` or more labels have that category, else every
    row."""
    pairs = np.stack([np.asarray(labels, str), np.asarray(category, str)], axis=1)
    units = np.unique(pairs, axis=0, return_inverse=True)[1].ravel()
    own = category == value
    if len(np.unique(np.asarray(labels)[own])) >= min_units:
        return units, own
    return units, np.ones(len(units), bool)


def mondrian(
    resid: np.ndarray,
    labels: np.ndarray,
    category: np.ndarray,
    calibration: np.ndarray,
    test: np.ndarray,
    min_rows: int = 10,
    predictive: bool = False,
    min_units: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Per ``test`` row, the (low, high) log quantiles of :func:`category_interval` for the row's own category,
    calibrated on the ``calibration`` rows; NaN without residuals."""
    have = calibration & ~np.isnan(resid)
    lo, hi = np.full(test.sum(), np.nan), np.full(test.sum(), np.nan)
    if not have.any():
        return lo, hi
    for value in np.unique(category[test]):
        iv = category_interval(
            resid[have], np.asarray(labels)[have], category[have], value, min_rows, predictive, min_units
        )
        rows = category[test] == value
        lo[rows], hi[rows] = iv.low, iv.high
    return lo, hi


__all__ = [
    "Interval",
    "calibrate",
    "category_interval",
    "category_units",
    "mondrian",
    "predictive_biases",
    "unit_effects_quantiles",
    "weighted_quantiles",
]
