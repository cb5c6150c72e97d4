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


def unit_effects_quantiles(
    resid: np.ndarray,
    labels: np.ndarray,
    within: np.ndarray | None = None,
    level: float = INTERVAL_LEVEL,
) -> tuple[float, float]:
    """(low, high) quantiles at ``level`` of (a unit's median residual) + (a centred residual of the rows
    ``within``, all rows when None), every unit weighing the same in both terms."""
    within = np.ones(len(resid), bool) if within is None else within
    units = np.unique(labels)
    bias = {u: float(np.median(resid[labels == u])) for u in units}
    biases = np.array(list(bias.values()))
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
    resid: np.ndarray, labels: np.ndarray, within: np.ndarray | None = None, level: float = INTERVAL_LEVEL
) -> Interval:
    """The interval of a held-out unit from residuals ``resid`` of units ``labels``, its within-unit spread
    from the rows ``within`` (see the module)."""
    keep = ~np.isnan(resid)
    within = np.ones(len(resid), bool) if within is None else within
    resid, labels, within = resid[keep], labels[keep], within[keep]
    if not within.any():
        return Interval(float("nan"), float("nan"), 0, "no calibration residuals")
    lo, hi = unit_effects_quantiles(resid, labels, within, level)
    n = len(np.unique(labels))
    return Interval(lo, hi, n, f"bias of {n} held-out units + spread inside them, each unit weighted equally")


def mondrian(
    resid: np.ndarray,
    labels: np.ndarray,
    category: np.ndarray,
    calibration: np.ndarray,
    test: np.ndarray,
    min_rows: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Per ``test`` row, the (low, high) log quantiles calibrated on the ``calibration`` rows: unit biases
    from all of them, the within-unit spread from those of the row's own ``category`` (all of them where the
    category has fewer than ``min_rows``); NaN without residuals."""
    have = calibration & ~np.isnan(resid)
    lo, hi = np.full(test.sum(), np.nan), np.full(test.sum(), np.nan)
    if not have.any():
        return lo, hi
    for value in np.unique(category[test]):
        own = category[have] == value
        iv = calibrate(resid[have], labels[have], own if own.sum() >= min_rows else None)
        rows = category[test] == value
        lo[rows], hi[rows] = iv.low, iv.high
    return lo, hi


__all__ = ["Interval", "calibrate", "mondrian", "unit_effects_quantiles", "weighted_quantiles"]
