"""The measurement noise floor of EVALUATION.md: how far two measurements of one configuration fall apart.

EVALUATION.md forbids claiming an error below the repeat-to-repeat noise. Two figures describe it:

* :func:`repeat_noise`: repeats of one configuration in one table (same session, same code), e.g. the two
  runs of each network and batch in Fischer's CodeCarbon validation set;
* :func:`campaign_offsets`: one configuration measured by two campaigns (another date, library version or
  run length), e.g. Fischer's STREP runs of March 2025 against his validation runs of September 2025.

Both work on energies per sample, J. A relative deviation ``e`` of one measurement from the configuration's
true value with standard deviation ``s`` (normal) gives a perfect predictor an expected absolute percentage
error of ``s * sqrt(2 / pi)`` on that measurement: that is the floor under any MAPE on single runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RepeatNoise:
    """Spread of repeated measurements of the same configurations (energies per sample).

    Attributes:
        configs: configurations with two or more repeats.
        pooled_cv: root mean square over configurations of the sample coefficient of variation (standard
            deviation with ddof 1 over the mean), a fraction.
        median_range: median over configurations of (max - min) / mean, a fraction.
        p90_range: 90th percentile of (max - min) / mean, a fraction.
        max_range: largest (max - min) / mean, a fraction.
        floor_ape: expected absolute percentage error of a perfect predictor on one run,
            ``pooled_cv * sqrt(2 / pi)``, a fraction.
    """

    configs: int
    pooled_cv: float
    median_range: float
    p90_range: float
    max_range: float
    floor_ape: float


def repeat_noise(table: pd.DataFrame, by: Sequence[str], value: str = "joules_per_sample") -> RepeatNoise:
    """The :class:`RepeatNoise` of ``table``'s ``value`` column (J per sample) over the configurations keyed by
    the columns ``by``; configurations measured once are left out. ValueError when none has two repeats."""
    grouped = table.groupby(list(by))[value].agg(["count", "mean", "std", "min", "max"])
    grouped = grouped[grouped["count"] >= 2]
    if grouped.empty:
        raise ValueError(f"no configuration keyed by {list(by)} has two or more repeats")
    cv = (grouped["std"] / grouped["mean"]).to_numpy(dtype=float)
    spread = ((grouped["max"] - grouped["min"]) / grouped["mean"]).to_numpy(dtype=float)
    pooled = float(np.sqrt(np.mean(cv**2)))
    return RepeatNoise(
        configs=len(grouped),
        pooled_cv=pooled,
        median_range=float(np.median(spread)),
        p90_range=float(np.quantile(spread, 0.9)),
        max_range=float(spread.max()),
        floor_ape=pooled * math.sqrt(2 / math.pi),
    )


@dataclass(frozen=True)
class CampaignOffsets:
    """One campaign's energies per sample against another's on the configurations both measured.

    Attributes:
        configs: configurations in both.
        median_ratio: median of first / second (the campaigns' systematic offset).
        mean_abs_deviation: mean of |first / second - 1|, a fraction.
        mean_abs_deviation_centred: the same after dividing out ``median_ratio``, a fraction (what is left
            once the offset between the campaigns is removed).
        per_run_sd: standard deviation of one run's relative deviation implied by the centred figure,
            ``mean_abs_deviation_centred * sqrt(pi) / 2`` (the difference of two independent normal
            deviations of equal spread has mean absolute value ``2 s / sqrt(pi)``), a fraction.
    """

    configs: int
    median_ratio: float
    mean_abs_deviation: float
    mean_abs_deviation_centred: float
    per_run_sd: float


def campaign_offsets(
    first: pd.DataFrame, second: pd.DataFrame, on: Sequence[str], value: str = "joules_per_sample"
) -> CampaignOffsets:
    """The :class:`CampaignOffsets` of ``first`` against ``second`` (each averaged over its own repeats of a
    configuration keyed by ``on``). ValueError when the two share no configuration."""
    a = first.groupby(list(on))[value].mean()
    b = second.groupby(list(on))[value].mean()
    both = a.index.intersection(b.index)
    if both.empty:
        raise ValueError(f"the two tables share no configuration keyed by {list(on)}")
    ratio = (a[both] / b[both]).to_numpy(dtype=float)
    median = float(np.median(ratio))
    centred = float(np.mean(np.abs(ratio / median - 1)))
    return CampaignOffsets(
        configs=len(both),
        median_ratio=median,
        mean_abs_deviation=float(np.mean(np.abs(ratio - 1))),
        mean_abs_deviation_centred=centred,
        per_run_sd=centred * math.sqrt(math.pi) / 2,
    )


__all__ = ["CampaignOffsets", "RepeatNoise", "campaign_offsets", "repeat_noise"]
