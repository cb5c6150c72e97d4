"""LLM requests: the step sums against closed forms and against costing every step, prefill extrapolation,
tensor parallelism, and the `estimate llm` command."""

from __future__ import annotations

import json
import math

import pytest

from estimator.api import Estimator
from estimator.cli import run
from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.errors import DataError, GraphStructureError
from estimator.graph.load import load_graph
from estimator.llm import estimate_request, sum_steps, sum_steps_exactly
from estimator.llm.parallel import INTERCONNECT_BYTES_PER_S, all_reduce_cost
from estimator.llm.steps import EAGER_TORCH_RUNTIMES, TORCH_VIEW_OPS, StepKernels, as_views, bind, read_layout
from estimator.zoo.decoders import DecoderConfig, decoder, parse_decoder_spec

TINY = "zoo:gpt2;layers=2"


@pytest.fixture(scope="module")
def h100() -> Estimator:
    return Estimator("h100", calibrated=False)


def test_sum_of_a_linear_function_is_exact_with_three_evaluations():
    got = sum_steps(lambda p: 3.0 + 0.5 * p, 10, 1009)
    assert got.total == pytest.approx(sum(3.0 + 0.5 * p for p in range(10, 1010)), rel=1e-12)
    assert got.evaluations == 3 and got.error_bound == 0.0


def test_convex_kinks_and_jumps_stay_within_the_reported_bound():
    def f(p: int) -> float:  # roofline-like: max of affine pieces, plus a cache-placement jump at 700
        return max(2.0 + 0.001 * p, 0.5 + 0.004 * p) + (0.3 if p >= 700 else 0.0)

    exact = sum_steps_exactly(f, 100, 1099)
    got = sum_steps(f, 100, 1099, rel_tol=1e-4)
    assert abs(got.total - exact) <= got.error_bound + 1e-9 * exact
    assert abs(got.total - exact) <= 1e-4 * exact
    assert got.evaluations < 60
    assert sum_steps(f, 5, 4).total == 0.0 and sum_steps(f, 7, 7).total == f(7)


def test_step_kernels_are_affine_in_the_cache_length():
    model = decoder(DecoderConfig("llama", 2, 64, 4, 2, 96, 100), cache=True)
    steps = StepKernels(model, 2)
    poly = steps.polynomial(lambda p: steps.exact(1, p), (10, 50), 30)
    assert poly is not None
    at = steps.exact(1, 41)
    assert poly(41).arrays["flops"].tolist() == at.arrays["flops"].tolist()
    assert poly(41).arrays["activation_read_bytes"].tolist() == at.arrays["activation_read_bytes"].tolist()
    assert bind(read_layout(model), 2, 1, 7)["past_key_values.1.value"] == (2, 2, 7, 16)


def test_decode_integral_equals_costing_every_step(h100):
    """The request's decode energy against the Estimator run on the graph bound at every cache length (the
    default runtime is eager PyTorch, whose Transpose and Slice the request runs as views: so does the
    reference)."""
    prompt, generate, batch = 16, 48, 4
    r = estimate_request(h100, TINY, prompt=prompt, generate=generate, batch=batch)
    model = parse_decoder_spec(TINY).build()
    layout = read_layout(model)
    assert h100.runtime.name in EAGER_TORCH_RUNTIMES

    def kernels(p: int):
        graph = load_graph(model, shapes=bind(layout, batch, 1, p))
        return as_views(fuse_kernels(count_costs(graph), fuse=h100.runtime.fuses), TORCH_VIEW_OPS)

    per_step = [h100.estimate_kernels(kernels(p)) for p in range(prompt, prompt + generate - 1)]
    exact_j = sum(e.joules for e in per_step)
    exact_s = sum(e.seconds for e in per_step)
    assert r.decode_joules == pytest.approx(exact_j, rel=1e-3)
    assert r.decode_seconds == pytest.approx(exact_s, rel=1e-3)
    assert r.decode_evaluations < generate - 1
    assert r.joules_per_output_token == pytest.approx(r.decode_joules / ((generate - 1) * batch))
    assert r.tpot_s == pytest.approx(r.decode_seconds / (generate - 1))
    # KV cache: 2 (K, V) x layers x heads x head_dim x tokens x batch x 2 bytes (fp16)
    assert r.kv_cache_bytes == 2 * 2 * 12 * 64 * (prompt + generate) * batch * 2
    assert len(r.decode_step_blocks) == 4 and r.decode_step_blocks[1].block == "block 0"


def test_interpolated_steps_price_as_their_own_binding_under_a_fused_runtime():
    """Interpolated kernels carry the GEMM shapes of their own length (the attention products grow with the
    cache), so a fused runtime, whose steps are device-bound and tiled by shape, prices an interpolated step
    as the graph bound at that length: at every cache length, not only at the fitted ones."""
    est = Estimator("h100", runtime="onnxruntime-cuda", calibrated=False)
    # Llama-3.1-8B's block (32 query heads on 8 KV heads of 128: device-bound steps), a small vocabulary
    model = decoder(DecoderConfig("llama", 2, 4096, 32, 8, 14336, 1000))
    kernels, fresh = StepKernels(model, 8, fuse=True), StepKernels(model, 8, fuse=True)
    poly = kernels.polynomial(lambda p: kernels.exact(1, p), (128, 1127), 627)
    assert poly is not None
    for p in (129, 700, 1000):
        got, want = est.estimate_kernels(poly(p)), est.estimate_kernels(fresh.exact(1, p))
        assert got.joules == pytest.approx(want.joules, rel=1e-12)
        assert got.seconds == pytest.approx(want.seconds, rel=1e-12)


def test_prefill_extrapolated_to_an_empty_cache_matches_the_plain_graph(h100):
    """Prefill of the cached graph (past 0, extrapolated) costs what the plain graph costs for the prompt,
    apart from the cache it writes (the present outputs)."""
    cached = estimate_request(h100, TINY, prompt=32, generate=1)
    plain = estimate_request(h100, TINY + ";cache=0", prompt=32, generate=1)
    assert cached.decode_steps == 0 and cached.decode_joules == 0.0
    assert cached.prefill_joules == pytest.approx(plain.prefill_joules, rel=0.15)
    assert cached.prefill_joules > plain.prefill_joules  # it also writes the cache


def test_plain_graph_recomputes_the_prefix(h100):
    cached = estimate_request(h100, TINY, prompt=64, generate=32)
    plain = estimate_request(h100, TINY + ";cache=0", prompt=64, generate=32)
    # each of its 31 steps runs the whole sequence, at least the prompt: no cheaper than a prefill each
    assert plain.decode_joules >= 31 * plain.prefill_joules
    assert cached.has_cache and not plain.has_cache
    assert any("recomputes" in n for n in plain.notes) and plain.kv_cache_bytes == 0


def test_all_reduce_closed_form():
    from estimator.energy.hardware import load_profile

    hw = load_profile("h100")
    c = all_reduce_cost(hw, 4, layers=80, tokens=16, hidden=8192, element_bytes=2, static_power_w=100.0)
    sent = 2 * 80 * 2 * 3 / 4 * 16 * 8192 * 2
    assert c.bytes_per_device == pytest.approx(sent)
    # NCCL's ring LL latency over NVLink, 4 GPUs: 6.6 us + 2 x 3 x 0.6 us = 10.2 us, 160 all-reduces
    assert c.count == 160 and c.latency_s == pytest.approx(10.2e-6)
    assert c.seconds == pytest.approx(160 * 10.2e-6 + sent / (INTERCONNECT_BYTES_PER_S["h100"][0] / 2))
    assert c.joules == pytest.approx(100.0 * c.seconds + 2 * sent * hw.dram_energy_per_byte_j)
    assert (
        all_reduce_cost(hw, 1, layers=80, tokens=16, hidden=8192, element_bytes=2, static_power_w=1).joules
        == 0
    )
    # PCIe steps cost 1.0 us: 8 GPUs, 6.6 + 14 x 1.0 = 20.6 us
    pcie = all_reduce_cost(
        load_profile("l4"), 8, layers=1, tokens=1, hidden=8, element_bytes=2, static_power_w=0.0
    )
    assert pcie.latency_s == pytest.approx(20.6e-6)


def test_tensor_parallel_splits_the_work(h100):
    one = estimate_request(h100, "zoo:llama-2-7b;layers=4", prompt=64, generate=8, batch=8)
    four = estimate_request(
        h100, "zoo:llama-2-7b;layers=4", prompt=64, generate=8, batch=8, tensor_parallel=4
    )
    assert four.weight_bytes_per_device == pytest.approx(one.weight_bytes_per_device / 4, rel=0.02)
    assert four.devices == 4 and four.all_reduce_joules > 0
    # 8 all-reduces (4 blocks) per pass of batch x tokens x 4096 activations, each NCCL's 10.2 us ring LL
    # latency on 4 GPUs plus 2 x 3/4 of the message over 450 GB/s
    element = 2 if four.dtype in ("float16", "bfloat16") else 4

    def comm(tokens: int) -> float:
        return 8 * (10.2e-6 + 2 * 3 / 4 * tokens * 4096 * element / 450e9)

    assert four.all_reduce_seconds == pytest.approx(comm(8 * 64) + four.decode_steps * comm(8))
    assert four.tpot_s - comm(8) < one.tpot_s  # the shard's own step is shorter
    with pytest.raises(DataError):
        estimate_request(h100, "zoo:gpt2;layers=2", prompt=8, generate=2, tensor_parallel=5)


def test_a_graph_without_input_ids_is_refused(h100, tmp_path):
    import onnx

    model = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 17]> g (float[1, 4] x) => (float[1, 4] y) { y = Relu(x) }'
    )
    with pytest.raises(GraphStructureError, match="input_ids"):
        estimate_request(h100, model, prompt=4, generate=2)


def test_cli_llm_table_json_and_bad_input(capsys, tmp_path):
    assert run(["llm", TINY, "--hw", "h100", "--prompt", "32", "--generate", "6", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "TTFT" in out and "per output token" in out and "block 0" in out
    assert max(len(line) for line in out.splitlines()) <= 80  # readable on an 80-column terminal
    assert run(["llm", TINY, "--hw", "a100", "--prompt", "32", "--generate", "6", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["schema"] == "estimator.llm/1" and payload["decode"]["steps"] == 5
    assert math.isclose(
        payload["joules_per_request"],
        payload["prefill"]["joules"] + payload["decode"]["joules"],
        rel_tol=1e-12,
    )
    for args, fragment in [
        (["llm", TINY, "--hw", "h100", "--prompt", "0"], "positive"),
        (["llm", "zoo:nope", "--hw", "h100"], "unknown decoder"),
        (["llm", str(tmp_path / "x.onnx"), "--hw", "h100"], "does not exist"),
        (["llm", TINY, "--hw", "rpi4", "--tensor-parallel", "2"], "interconnect"),
    ]:
        assert run(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (args, err)
