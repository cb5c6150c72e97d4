"""The serving engine's step-host time (vLLM) and eager PyTorch's views in LLM requests."""

from __future__ import annotations

import pytest

from estimator.api import Estimator
from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.graph.load import load_graph
from estimator.llm import estimate_request
from estimator.llm.serving import VLLM_HOST, ServingHost, serving_host
from estimator.llm.steps import TORCH_VIEW_OPS, as_views, bind, read_layout
from estimator.zoo.decoders import parse_decoder_spec

SPEC = "zoo:llama-3.2-1b;layers=2;cache=paged"


def test_step_host_is_affine_in_the_batch():
    host = ServingHost(0.02, 2e-4, "test")
    assert host.seconds(0) == 0.02
    assert host.seconds(100) == pytest.approx(0.02 + 100 * 2e-4, rel=1e-15)
    assert serving_host("vllm") is VLLM_HOST and serving_host("pytorch-cuda") is None
    assert VLLM_HOST.step_s >= 0 and VLLM_HOST.per_sequence_s >= 0 and VLLM_HOST.fitted_on


def test_host_time_is_waited_at_idle_with_context_power():
    """Each engine step (the prefill and every decode step) gains exactly the host time, and its energy
    exactly the idle-with-context power over that time (physics prior: the GPU waits with its context)."""
    est = Estimator("h100", runtime="vllm", calibrated=False)
    kw = dict(prompt=64, generate=33, batch=16, dtype="bf16")
    none = estimate_request(est, SPEC, host=ServingHost(0.0, 0.0, "none"), **kw)
    host = ServingHost(0.01, 5e-4, "test")
    h = host.seconds(16)
    got = estimate_request(est, SPEC, host=host, **kw)
    p_ctx = est.profile.idle_with_context_w
    assert got.host_step_seconds == pytest.approx(h)
    assert got.tpot_s - none.tpot_s == pytest.approx(h, rel=1e-9)
    assert got.prefill_seconds - none.prefill_seconds == pytest.approx(h, rel=1e-9)
    assert got.prefill_joules - none.prefill_joules == pytest.approx(p_ctx * h, rel=1e-6)
    steps = got.decode_steps
    assert got.decode_joules - none.decode_joules == pytest.approx(steps * p_ctx * h, rel=1e-6)


def test_without_a_serving_model_the_runtime_host_time_applies():
    est = Estimator("h100", runtime="onnxruntime-cuda", calibrated=False)
    got = estimate_request(est, SPEC, prompt=16, generate=4, batch=2)
    assert got.host_step_seconds == 0.0


def test_eager_pytorch_runs_transposes_and_slices_as_views():
    """Unfused, every node that computes is a kernel; as views, each Transpose and Slice node launches nothing
    and moves nothing, and every other kernel is unchanged."""
    spec = parse_decoder_spec("zoo:llama-3.2-1b;layers=2")
    model = spec.build(spec.config)
    graph = load_graph(model, shapes=bind(read_layout(model), 1, 1, 8))
    report = fuse_kernels(count_costs(graph), fuse=False)
    viewed = as_views(report, TORCH_VIEW_OPS)
    # each such node that computes (not folded into a constant) is its own kernel when unfused
    n_views = sum(n.op_type in TORCH_VIEW_OPS and n.status == "costed" for n in report.costs.nodes)
    assert n_views > 0
    assert viewed.launches == report.launches - n_views
    nodes = report.costs.nodes
    for before, after in zip(report.kernels, viewed.kernels, strict=True):
        if any(nodes[i].op_type in TORCH_VIEW_OPS for i in before.nodes):
            assert after.launches == 0 and after.activation_read_bytes == after.write_bytes == 0
        else:
            assert after == before


def test_an_eager_request_launches_fewer_kernels_than_the_graph():
    est = Estimator("h100", runtime="pytorch-cuda", calibrated=False)
    got = estimate_request(est, "zoo:llama-3.2-1b;layers=2", prompt=16, generate=4)
    assert any("views" in n for n in got.notes)
    ort = estimate_request(
        Estimator("h100", runtime="onnxruntime-cuda", calibrated=False),
        "zoo:llama-3.2-1b;layers=2",
        prompt=16,
        generate=4,
    )
    assert not any("views" in n for n in ort.notes)


def test_the_fit_recovers_known_constants():
    """``scripts/validate_llm.py``'s fit on rows made from known constants gives them back."""
    pytest.importorskip("scipy")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "validate_llm.py"
    spec = importlib.util.spec_from_file_location("validate_llm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    k, step_s, per_sequence_s = 1.5, 0.012, 2.5e-4
    rows = [
        {
            "hardware": "x",
            "batch": b,
            "predicted_tpot_s": g,
            "measured_tpot_s": k * g + step_s + per_sequence_s * b,
        }
        for b, g in [(32, 0.01), (64, 0.02), (128, 0.025), (256, 0.06), (512, 0.07), (300, 0.02)]
    ]
    fit = module.fit_host(rows)
    assert fit.gpu_time_factor == pytest.approx(k, rel=1e-6)
    assert fit.step_s == pytest.approx(step_s, rel=1e-6)
    assert fit.per_sequence_s == pytest.approx(per_sequence_s, rel=1e-6)


def test_memory_bound_gemms_of_a_decode_step_draw_the_streaming_power():
    """Every kernel of the v2 prior costs at least the streaming energy of its bytes beyond L1: min(per-level
    energies + e_chip x node scale x bytes, (TDP - P_static) x bytes / (BW x f)), closed form from the profile;
    on the H100 the cap binds, so a decode step's GEMMs (weight reads at batch 16 are memory-bound) are raised to
    the TDP over their full-rate time, and the serving model prices that energy."""
    import numpy as np

    from estimator.energy.prior_v2 import STREAM_ONCHIP_J_PER_BYTE_7NM, device_terms
    from estimator.llm.pricing import StepPricer
    from estimator.llm.steps import StepKernels

    est = Estimator("h100", runtime="vllm", calibrated=False)
    hw = est.profile
    spec = parse_decoder_spec("zoo:llama-3.2-1b;layers=2;cache=paged;dtype=bfloat16")
    report = StepKernels(spec.build(spec.config), 16, fuse=True).exact(1, 64)
    terms = device_terms(report, hw, est.runtime, "bfloat16")
    plain = device_terms(report, hw, est.runtime, "bfloat16", stream_onchip_j_per_byte=0.0)
    rate = hw.dram_bandwidth_bytes_per_s * hw.achievable_bandwidth_fraction
    node = hw.caches[0].energy_per_byte_j / (8.5e-12 / 8)  # TSMC 4N: about 0.83
    uncapped = plain.kernel_memory_joules + STREAM_ONCHIP_J_PER_BYTE_7NM * node * terms.beyond_l1_bytes
    stream = np.minimum(uncapped, (hw.tdp_w - hw.static_w) * terms.beyond_l1_bytes / rate)
    assert np.all(terms.dynamic_joules >= stream * (1 - 1e-12))
    np.testing.assert_allclose(terms.dynamic_joules, np.maximum(plain.dynamic_joules, stream), rtol=1e-12)
    shortfall = np.maximum(stream - plain.dynamic_joules, 0.0).sum()
    assert shortfall > 0.3 * stream.sum()  # the GEMMs of a batch-16 decode step are memory-bound
    host = ServingHost(0.0, 0.0, "none")
    step = StepPricer(est, "bfloat16", None, serving=host, batch=16).price(report)
    assert step.joules > float(terms.dynamic_joules.sum())
    assert step.joules / step.seconds < hw.tdp_w


def test_the_offset_fit_recovers_a_known_offset_and_power():
    """``scripts/validate_llm.py``'s ``offset_fit`` (benchlab's boundary check) gives back the offset and power
    of energies made as ``a + b x t``, R^2 = 1."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    path = Path(__file__).resolve().parents[1] / "scripts" / "validate_llm.py"
    spec = importlib.util.spec_from_file_location("validate_llm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seconds = np.array([0.12, 0.3, 0.45, 0.61, 0.9])
    offset, power, r2 = module.offset_fit(84.0 + 654.0 * seconds, seconds)
    assert offset == pytest.approx(84.0, rel=1e-9)
    assert power == pytest.approx(654.0, rel=1e-9)
    assert r2 == pytest.approx(1.0, abs=1e-12)


def test_benchlab_summary_judges_each_phase_at_the_sources_boundary():
    """Prefill is judged with the board waiting over the counter's extra seconds added to the prediction;
    decode against the decode steps alone (the importer's figure), never the recorded generate call."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "validate_llm.py"
    spec = importlib.util.spec_from_file_location("validate_llm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [
        {
            # prefill: 300 J predicted + 100 W x 0.5 s = 350 J against 350 J measured
            "measured_prefill_j": 350.0 + i,
            "predicted_prefill_j": 300.0 + i,
            "predicted_prefill_window_j": 350.0 + i,
            "measured_prefill_s": 0.3 + 0.01 * i,
            "predicted_prefill_s": 0.3 + 0.01 * i,
            # decode steps: 400 J predicted against 500 J measured; the recorded figure held a prefill too
            "measured_decode_j": 500.0 + 2 * i,
            "predicted_decode_j": 400.0 + 1.6 * i,
            "recorded_decode_j": 850.0 + 3 * i,
            "measured_decode_s": 1.0 + 0.02 * i,
            "predicted_decode_s": 1.0 + 0.02 * i,
        }
        for i in range(5)
    ]
    summary = module.benchlab_summary(rows)
    assert summary["benchlab prefill, prediction + 0.5 s at idle with context"]["median_ratio"] == 1.0
    assert summary["benchlab decode steps"]["median_ratio"] == pytest.approx(0.8)
    recorded = summary["benchlab decode, against the recorded figure (generate call)"]["median_ratio"]
    assert recorded == pytest.approx((400.0 + 3.2) / (850.0 + 6))
