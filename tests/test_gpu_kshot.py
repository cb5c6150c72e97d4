"""k-shot leave-one-device-out (estimator/learn/gpu_kshot.py): closed forms of the bias shift and its interval."""

import numpy as np
import pytest

from estimator.learn import gpu_kshot


def test_a_gpus_constant_bias_is_removed_by_k_measurements_and_judged_on_unseen_networks():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.array(["n1", "n2", "n3", "n4"]), 5)
    measured = np.linspace(1.0, 3.0, 20)
    answer = measured / 1.6  # the cross-device answer is 1.6x low on every row
    e = gpu_kshot.kshot_unit(measured, answer, groups, 3, (-0.1, 0.1), rng)
    assert e["zero_shot_median_ape"] == pytest.approx(1 - 1 / 1.6)
    assert e["median_ape"] == pytest.approx(0, abs=1e-12) and e["p90_ape"] == pytest.approx(0, abs=1e-12)
    assert e["coverage"] == 1.0 and e["mean_width_factor"] == pytest.approx(np.exp(0.2))
    # half of the four networks are judged in each draw: 10 rows x 20 draws
    assert e["test_rows"] == 10 * gpu_kshot.DRAWS
    # one network cannot be split into measured and judged halves; two networks of 2 rows cannot give k = 3
    assert gpu_kshot.kshot_unit(measured, answer, np.full(20, "n1"), 3, (-0.1, 0.1), rng) is None
    assert gpu_kshot.kshot_unit(measured[:4], answer[:4], groups[[0, 1, 5, 6]], 3, (-0.1, 0.1), rng) is None


def test_kshot_interval_is_a_residual_minus_the_median_of_k_others_in_closed_form():
    rng = np.random.default_rng(0)
    # one unit, residuals -1, 0, 1 around its median 0; with k = 1 the draws are (others - picked):
    # pick -1 -> 1, 2; pick 0 -> -1, 1; pick 1 -> -2, -1: the 90% ends are -2 and 2
    resid = np.array([-1.0, 0.0, 1.0]) + 5.0  # the unit's bias (5) is centred away
    lo, hi = gpu_kshot.kshot_interval(resid, np.array(["a"] * 3), np.zeros(3, bool), False, 1, rng)
    assert (lo, hi) == (-2.0, 2.0)
    # a unit with no more rows than k has nothing to draw from
    lo, hi = gpu_kshot.kshot_interval(resid, np.array(["a"] * 3), np.zeros(3, bool), False, 3, rng)
    assert np.isnan(lo) and np.isnan(hi)
    # three GPUs of the row's category: a fourth unit of another category (spread +-10) is not used
    resid = np.concatenate([np.tile([-0.1, 0.0, 0.1], 3), [-10.0, 0.0, 10.0]])
    labels = np.repeat(np.array(["a", "b", "c", "d"]), 3)
    category = np.repeat(np.array([False, False, False, True]), 3)
    lo, hi = gpu_kshot.kshot_interval(resid, labels, category, False, 1, rng)
    assert (lo, hi) == pytest.approx((-0.2, 0.2))
