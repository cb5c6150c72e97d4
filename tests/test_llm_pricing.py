"""Pricing a decoder step from one costed block repeated equals the Estimator on the whole graph."""

from __future__ import annotations

from dataclasses import replace

import pytest

from estimator.api import Estimator
from estimator.llm.blocks import block_view
from estimator.llm.pricing import StepPricer
from estimator.llm.steps import StepKernels
from estimator.zoo.decoders import DecoderConfig, decoder

CFG = DecoderConfig("llama", 5, 1024, 16, 4, 2816, 8000)


@pytest.mark.parametrize("calibrated", [False, True])
@pytest.mark.parametrize("hw", ["h100", "a100"])
def test_repeated_block_equals_the_whole_graph(hw, calibrated):
    """2-block stand-in priced for 5 blocks == ``estimate_kernels`` on the 5-block graph (physics and with
    the shipped cross-device correction), for a decode step and a prefill pass."""
    est = Estimator(hw, calibrated=calibrated)
    whole = StepKernels(decoder(CFG), 16, fuse=est.runtime.fuses)
    small = StepKernels(decoder(replace(CFG, layers=2)), 16, fuse=est.runtime.fuses)
    pricer = StepPricer(est, None, CFG.layers)
    assert pricer.fast
    for seq, past in ((1, 300), (64, 7)):
        ref = est.estimate_kernels(whole.exact(seq, past))
        got = pricer.price(small.exact(seq, past))
        assert got.joules == pytest.approx(ref.joules, rel=1e-6)
        assert got.seconds == pytest.approx(ref.seconds, rel=1e-9)
        assert len(got.kernel_joules) == len(whole.exact(seq, past).kernels)
        assert got.kernel_joules.sum() == pytest.approx(ref.joules, rel=1e-6)


def test_block_view_of_a_repeated_stand_in_sums_to_the_step():
    est = Estimator("h100", calibrated=False)
    small = StepKernels(decoder(replace(CFG, layers=2)), 4, fuse=est.runtime.fuses)
    report = small.exact(1, 100)
    price = StepPricer(est, None, CFG.layers).price(report)
    view = block_view(report, price)
    labels = [b.block for b in view]
    assert labels == ["embedding", *(f"block {i}" for i in range(CFG.layers)), "head"]
    assert sum(b.joules for b in view) == pytest.approx(price.joules, rel=1e-9)
    # Blocks 1..4 are copies of one costed block; block 0 may differ only by its neighbours (host pipeline).
    assert len({round(b.joules, 12) for b in view[2:-1]}) == 1
