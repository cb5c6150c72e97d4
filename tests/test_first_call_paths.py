"""The first ``estimate_kernels`` call on a new report: the integer columns taken from what fusion summed equal
the kernel-by-kernel ones (and fall back to them, with their error, when a value may not fit int64); the
per-category sums by ``np.bincount`` equal ``np.add.at``'s. (Dead nodes against their definition, static
columns against the kernel-by-kernel form: ``test_load_speed_paths.py``, ``test_estimate_fast_paths.py``.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from estimator.cost import kernels as K
from estimator.cost.nodes import count_costs, int_columns
from estimator.errors import InvalidDimensionError
from estimator.graph.load import load_graph
from estimator.zoo.nasbench201 import nasbench201
from estimator.zoo.transformers import bert_encoder

CELLS = (
    "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
    "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|",
)


@pytest.fixture(scope="module")
def reports():
    costs = [
        count_costs(load_graph(m))
        for m in (nasbench201(CELLS[0]), nasbench201(CELLS[1]), bert_encoder(batch=2, seq=16, layers=2))
    ]
    return [K.fuse_kernels(c, fuse=f) for c in costs for f in (True, False)]


def test_fused_columns_equal_the_kernel_by_kernel_columns(reports):
    for report in reports:
        assert report._derived.get(K._FUSION_TRACE) is not None  # the fast path is taken
        fast, slow = report.arrays, int_columns(report.kernels, K._ARRAY_FIELDS)
        assert list(fast) == list(slow)
        for field in slow:
            assert fast[field].dtype == np.int64
            assert np.array_equal(fast[field], slow[field])
        # A report with other kernels (dataclasses.replace) reads its own kernels, never fusion's sums.
        fewer = dataclasses.replace(report, kernels=report.kernels[:1])
        assert fewer.arrays["flops"].tolist() == [report.kernels[0].flops]


def test_values_or_totals_beyond_int64_take_the_checking_path():
    fields = len(K._ARRAY_FIELDS)
    assert K._int_columns_of_rows([1 << 63] + [0] * (fields - 1)) is None  # a value beyond int64
    assert K._int_columns_of_rows([-(1 << 63) - 1] + [0] * (fields - 1)) is None
    big = [1 << 61] + [0] * (fields - 1)
    assert K._int_columns_of_rows(big * 2) is None  # a total at 2**62: may round to 2**63
    ok = K._int_columns_of_rows(big + [3] * fields)
    assert ok["macs"].tolist() == [1 << 61, 3] and ok["launches"].tolist() == [0, 3]
    assert K._int_columns_of_rows([]) is None

    @dataclasses.dataclass
    class Row:
        macs: int

    # What the checking path then says: the same error as before.
    with pytest.raises(InvalidDimensionError, match="macs add up to"):
        int_columns([Row(1 << 62), Row(1 << 62)], ("macs",))


def test_category_sums_by_bincount_equal_add_at():
    rng = np.random.default_rng(0)
    owner = np.sort(rng.integers(0, 7, 200))
    codes = rng.integers(0, 5, 200)
    weights = rng.random(200) * 10.0 ** rng.integers(-8, 12, 200)
    expected = np.zeros((7, 5))
    np.add.at(expected, (owner, codes), weights)
    got = np.bincount(owner * 5 + codes, weights=weights, minlength=35).reshape(7, 5)
    assert got.tobytes() == expected.tobytes()


def test_columns_fusion_kept_equal_those_read_from_the_kernels(reports):
    """Kinds, dtypes, member columns and live ranges from fusion's trace equal those read back from the kernel
    and node records (a copy of the report without the trace: ``dataclasses.replace``)."""
    for report in reports:
        assert report._trace is not None
        plain = dataclasses.replace(report)  # the same kernels, no trace: every column read from the records
        assert plain._trace is None
        assert report.kinds == plain.kinds == tuple(k.kind for k in report.kernels)
        assert report.dtypes == plain.dtypes == tuple(k.dtype for k in report.kernels)
        assert report.dominant_dtype == plain.dominant_dtype
        fast, slow = report.members, plain.members
        assert fast.op_types == slow.op_types
        for name in ("nodes", "kernel", "flops"):
            a, b = getattr(fast, name), getattr(slow, name)
            assert a.dtype == b.dtype and np.array_equal(a, b)
        # Each member is a node of its kernel, in the kernel's order.
        assert fast.nodes.tolist() == [i for k in report.kernels for i in k.nodes]
        assert fast.flops.tolist() == [report.costs.nodes[i].flops for i in fast.nodes.tolist()]
        live, plain_live = report.live_ranges, plain.live_ranges
        assert live.steps == plain_live.steps == max(len(report.kernels), 1)
        # The same (bytes, first, last) ranges: fusion lists tensors kernel after kernel, the records node after
        # node (the peak does not depend on the order).
        fast_ranges = sorted(zip(live.nbytes.tolist(), live.first.tolist(), live.last.tolist(), strict=True))
        slow_ranges = sorted(
            zip(plain_live.nbytes.tolist(), plain_live.first.tolist(), plain_live.last.tolist(), strict=True)
        )
        assert fast_ranges == slow_ranges
        assert (live.last >= live.first).all()
