"""The cross-device GPU answer: on a GPU without measurements, the v2 prior with host constants fitted on the
GPUs that have them, at the prior's own boundary; the learned residual only where a boundary must be converted.

Why: in leave-one-device-out on the committed GPU sets (docs/evaluation_gpu.md, 2026-12-02) the learned residual
lost to the v2 prior alone at ``gpu-board-nvml``: pooled over the held-out GPUs, median APE 18.3% against 13.9%
and P90 43.9% against 29.8%, and its interval had to be x10 wide to cover. Trees trained on four or five GPUs learn
those GPUs; the prior's physics (peaks, bandwidths, idle power of the profile) is what carries to a new one. At
another boundary (the whole machine, CodeCarbon's total) the prior says nothing about what lies outside the board,
and the residual, which has the boundary as a feature, converts it.

The interval of the prior's answer comes from log residuals of the prior on each device with that device out of
the constant fit (:mod:`estimator.learn.gpu_interval`): a new device's bias plus the spread inside a device, each
device weighing the same, the spread from the rows that timed one forward pass (the product answers one). With
four GPUs at the board, the empirical quantiles of their biases covered 79.7% of the held-out rows pooled (GTX
1080 Ti 66%, A100 63%), so the bias of a new GPU is read through a normal model of the GPUs' biases
(``predictive=True``: Student's t with k-1 degrees of freedom), which is wide with k = 3 or 4 GPUs, as it should be.

Why the interval is x8-x11 wide on IrEne's GPUs while their errors are 3-15% (2026-12-02, 825 rows): the spread
inside a GPU is not counted twice (a GPU's bias is its median residual, the spread is each residual minus its own
GPU's median). The width is the between-GPU term: with the GTX 1070 held out, the training GPUs' biases at the
board are A100 +0.61, Quadro 0.00 (input-pipeline rows, host constants carried from the other machine) and GTX
1080 Ti +0.01 (log), and t(2) over their spread gives x10; forward-pass biases alone would come from one GPU (the
other IrEne GPU), which gives no between-GPU spread at all. Tried on the same folds and not used: (a) calibrating
only on residuals whose inner fit had the same kind of host constants (fitted or shipped) as the answer removes
the Quadro's x3,899 (the A100's residuals under shipped pipeline constants, bias +2.14) but leaves two GPUs for
IrEne, t with one degree of freedom: x185-x199; (b) biases of a category's own GPUs where it has two or more:
never the case here. A narrower forward-pass interval needs forward-pass rows of more GPUs.
"""

from __future__ import annotations

import numpy as np

from estimator.learn.gpu_interval import Interval, calibrate, mondrian
from estimator.learn.gpu_training import (
    PRIOR_BOUNDARY,
    GpuSet,
    fitted_prior,
    input_pipeline,
)

#: What the cross-device answer is, in one line (reports and the estimate's method say it).
CROSS_DEVICE_ANSWER = (
    f"energy-roofline v2 with host constants fitted on the other GPUs at `{PRIOR_BOUNDARY}`; the learned "
    "residual at other boundaries"
)


def at_prior_boundary(gs: GpuSet) -> np.ndarray:
    """Per row: whether it was measured at the boundary the v2 prior predicts."""
    return gs.table["boundary"].astype(str).to_numpy() == PRIOR_BOUNDARY


def prior_residuals(gs: GpuSet, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log(measured) - log(v2 prior) of every row of ``rows`` at the prior's boundary, the prior's host constants
    fitted on ``rows`` without the row's own ``labels`` value; NaN elsewhere."""
    out = np.full(len(gs.table), np.nan)
    board = rows & at_prior_boundary(gs)
    y = np.log(gs.measured_j)
    for label in np.unique(labels[board]):
        own = board & (labels == label)
        log_prior = fitted_prior(gs, rows & (labels != label))[0]
        out[own] = y[own] - log_prior[own]
    return out


def cross_device_split(gs: GpuSet, train: np.ndarray, test: np.ndarray, inner: np.ndarray, out: dict) -> dict:
    """The cross-device answer of the ``test`` rows from :func:`~estimator.learn.gpu_training.predict_split`'s
    ``out`` on the same split: the fitted prior at the prior's boundary, the model elsewhere.

    Returns ``pred`` (J, per test row), ``interval`` (log offsets of the ends from ``pred``; at the prior's
    boundary from :func:`prior_residuals` of the training rows with ``inner`` labels held out) and ``floored``.
    Predictions and interval ends of rows that time one forward pass are raised to the power floor, as for the
    model (``out['floor']``).
    """
    board = at_prior_boundary(gs)[test]
    floor = out["floor"]
    point = np.where(board, np.maximum(np.log(out["prior_v2_fitted"]), floor), np.log(out["model"]))
    lo_m, hi_m = out["interval"]
    resid = prior_residuals(gs, train, inner)
    lo_p, hi_p = mondrian(
        resid, inner, input_pipeline(gs), train & at_prior_boundary(gs), test, predictive=True
    )
    lo = np.where(board, np.maximum(point + lo_p, floor) - point, lo_m)
    hi = np.where(board, np.maximum(point + hi_p, floor) - point, hi_m)
    floored = np.where(board, np.log(out["prior_v2_fitted"]) < floor, out["floored"])
    return {"pred": np.exp(point), "interval": (lo, hi), "floored": floored}


def prior_interval(
    gs: GpuSet, rows: np.ndarray, devices: np.ndarray, resid: np.ndarray | None = None
) -> Interval:
    """The interval of the prior's cross-device answer from every device in ``rows`` held out in turn (``resid``:
    their :func:`prior_residuals` when already computed); the spread inside a device from forward-pass rows (all
    rows at the prior's boundary when fewer than 10)."""
    resid = prior_residuals(gs, rows, devices) if resid is None else resid
    board = rows & at_prior_boundary(gs)
    forward = ~input_pipeline(gs)[board]
    return calibrate(resid[board], devices[board], forward if forward.sum() >= 10 else None, predictive=True)


__all__ = [
    "CROSS_DEVICE_ANSWER",
    "at_prior_boundary",
    "cross_device_split",
    "prior_interval",
    "prior_residuals",
]
