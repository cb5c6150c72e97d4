"""The noise floor (estimator.learn.noise) on hand-made tables, against the closed forms."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from estimator.learn.noise import campaign_offsets, repeat_noise


def _table(rows):
    return pd.DataFrame(rows, columns=["architecture", "batch", "joules_per_sample"])


def test_repeat_noise_of_two_pairs_and_a_single_run():
    # pair A: 1.0 and 1.1 (mean 1.05, sample sd 0.1 / sqrt 2); pair B: 2.0 and 2.0 (no spread); C measured once
    t = _table([("A", 4, 1.0), ("A", 4, 1.1), ("B", 16, 2.0), ("B", 16, 2.0), ("C", 8, 5.0)])
    r = repeat_noise(t, ["architecture", "batch"])
    cv_a = (0.1 / math.sqrt(2)) / 1.05
    assert r.configs == 2
    assert r.pooled_cv == pytest.approx(math.sqrt(cv_a**2 / 2))
    assert r.max_range == pytest.approx(0.1 / 1.05)
    assert r.median_range == pytest.approx(0.1 / 1.05 / 2)
    # numpy's linear quantile between 0 and 0.1/1.05 at 0.9
    assert r.p90_range == pytest.approx(0.9 * 0.1 / 1.05)
    assert r.floor_ape == pytest.approx(r.pooled_cv * math.sqrt(2 / math.pi))


def test_repeat_noise_keys_by_batch_too():
    # the same network at two batches is two configurations, each measured once: no repeats
    t = _table([("A", 4, 1.0), ("A", 16, 0.5)])
    with pytest.raises(ValueError, match="two or more repeats"):
        repeat_noise(t, ["architecture", "batch"])


def test_campaign_offsets_closed_form():
    first = _table([("A", 4, 1.10), ("B", 4, 2.0 * 1.10 * 1.05), ("C", 4, 9.0)])
    # the second campaign measured A twice (mean 1.0), B once; C is not in it and drops out
    second = _table([("A", 4, 0.9), ("A", 4, 1.1), ("B", 4, 2.0)])
    c = campaign_offsets(first, second, ["architecture", "batch"])
    ratios = [1.10, 1.10 * 1.05]
    median = sum(ratios) / 2
    assert c.configs == 2
    assert c.median_ratio == pytest.approx(median)
    assert c.mean_abs_deviation == pytest.approx((0.10 + (1.155 - 1)) / 2)
    centred = (abs(ratios[0] / median - 1) + abs(ratios[1] / median - 1)) / 2
    assert c.mean_abs_deviation_centred == pytest.approx(centred)
    assert c.per_run_sd == pytest.approx(centred * math.sqrt(math.pi) / 2)


def test_campaign_offsets_without_a_shared_configuration():
    with pytest.raises(ValueError, match="share no configuration"):
        campaign_offsets(_table([("A", 4, 1.0)]), _table([("A", 8, 1.0)]), ["architecture", "batch"])
