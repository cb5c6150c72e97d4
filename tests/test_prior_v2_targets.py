"""The "v2 prior alone" lines of the GPU target table: shipped and per-fold fitted medians, each judged against
x1.5 (the rest of the report is tested with the GPU evaluation)."""

from __future__ import annotations

import numpy as np

from estimator.learn.gpu_priors import median_ratio
from estimator.learn.gpu_report import _targets


def _report(medians: dict) -> dict:
    return {"per_source": {}, "leave_one_device_out": {}, "prior_medians": medians}


def test_median_ratio_uses_only_rows_with_a_prediction():
    predicted = np.array([2.0, np.nan, 6.0, 4.0])
    measured = np.array([1.0, 100.0, 3.0, 2.0])
    # rows 0, 2, 3: median 4 / median 2
    assert median_ratio(predicted, measured) == 2.0
    assert median_ratio(np.full(2, np.nan), np.ones(2)) is None


def test_v2_alone_lines_shipped_and_fitted_each_against_x1_5():
    medians = {
        "src/gpu-board-nvml": {
            "prior_boundary": True,
            "input_pipeline_timed": True,
            "v2_over_measured": 0.13,
            "v2_fitted_calibrated_over_measured": 0.92,
            "v2_fitted_other_devices_over_measured": 1.6,
        },
        "src/codecarbon-total": {"prior_boundary": False, "v2_over_measured": 1.0},
        "other/gpu-board-nvml": {"prior_boundary": True, "v2_over_measured": 0.7},
    }
    lines = [line for line in _targets(_report(medians)) if "v2 prior alone" in line]
    assert len(lines) == 4  # three for src at the prior's boundary, one (shipped only) for other
    shipped, calibrated, other_devices, other = lines
    assert "src/gpu-board-nvml (input pipeline timed), shipped constants | x0.13 | NOT met" in shipped
    assert "other groups of its source and device | x0.92 | met" in calibrated
    assert "fitted on the other devices | x1.60 | NOT met" in other_devices
    assert "other/gpu-board-nvml, shipped constants | x0.70 | met" in other
