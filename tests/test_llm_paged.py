"""The in-place (paged) KV-cache layout: same logits as the optimum layout, only the new token's keys and
values written per step, the cache read once; and the `vllm` runtime."""

from __future__ import annotations

import numpy as np
import pytest

from estimator.api import Estimator
from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.runtimes import get_runtime
from estimator.graph.load import load_graph
from estimator.llm import estimate_request
from estimator.llm.steps import bind, read_layout
from estimator.zoo.decoders import DecoderConfig, decoder
from tests.test_zoo_decoders import _with_random_weights


@pytest.mark.parametrize(
    "cfg",
    [DecoderConfig("gpt2", 2, 32, 4, 4, 64, 50, 64, True), DecoderConfig("llama", 2, 32, 4, 2, 48, 50)],
    ids=["gpt2", "llama-gqa"],
)
def test_paged_step_gives_the_logits_of_the_concatenating_layout(cfg):
    ort = pytest.importorskip("onnxruntime")
    optimum = ort.InferenceSession(_with_random_weights(decoder(cfg, dtype="float32")).SerializeToString())
    paged = ort.InferenceSession(
        _with_random_weights(decoder(cfg, paged=True, dtype="float32")).SerializeToString()
    )
    rng = np.random.default_rng(0)
    past = {
        f"past_key_values.{i}.{kv}": rng.standard_normal((2, cfg.kv_heads, 5, cfg.head_dim)).astype(
            np.float32
        )
        for i in range(cfg.layers)
        for kv in ("key", "value")
    }
    feed = {
        "input_ids": np.array([[3], [8]], np.int64),
        "attention_mask": np.ones((2, 6), np.int64),
        "position_ids": np.array([[5], [5]], np.int64),
        **past,
    }
    want = optimum.run(None, feed)
    got = paged.run(None, feed)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)
    # present holds only the new token; appended to the past it is the optimum layout's present
    for i in range(1, len(got)):
        assert got[i].shape == (2, cfg.kv_heads, 1, cfg.head_dim)
        np.testing.assert_allclose(got[i], want[i][:, :, 5:], rtol=1e-5, atol=1e-6)


def test_paged_step_writes_one_token_and_reads_the_cache_once():
    """Traffic added by one more cached token, per block, in closed form. The optimum layout copies K and V
    into ``present`` (reads and writes both) and K into K^T (reads and writes K), then attention reads K^T
    and V; the paged layout reads K and V once where they lie and pays for splitting the scores instead
    (a Concat and a Slice over ``batch x heads`` scores per token, read and written)."""
    cfg = DecoderConfig("llama", 1, 256, 8, 2, 512, 100)
    b, p = 4, 300
    delta = {}
    for paged in (False, True):
        model = decoder(cfg, paged=paged, dtype="float16")
        at = {
            x: count_costs(load_graph(model, shapes=bind(read_layout(model), b, 1, x))).totals
            for x in (p, p + 1)
        }
        delta[paged] = {
            f: getattr(at[p + 1], f) - getattr(at[p], f) for f in ("activation_read_bytes", "write_bytes")
        }
    k_token = b * cfg.kv_heads * cfg.head_dim * 2  # one cached token's keys (or values), fp16 bytes
    score = b * cfg.heads * 2  # one more score per query head, fp16 bytes
    for f in ("activation_read_bytes", "write_bytes"):
        assert delta[False][f] - delta[True][f] == 3 * k_token - 2 * score
    # What is left in the paged layout: K and V read once, scores passed between its unfused kernels.
    assert delta[True]["activation_read_bytes"] >= 2 * k_token


def test_vllm_runtime_and_a_paged_request():
    rt = get_runtime("vllm")
    assert rt.device_kind == "gpu" and rt.fuses and "vLLM" in rt.source
    est = Estimator("h100", runtime="vllm", calibrated=False)
    spec = "zoo:llama-3.1-8b;layers=4"
    kw = dict(prompt=256, generate=128, batch=64, dtype="bf16")
    paged = estimate_request(est, spec + ";cache=paged", **kw)
    optimum = estimate_request(est, spec, **kw)
    assert paged.has_cache and 0 < paged.joules_per_output_token < optimum.joules_per_output_token
    assert paged.kv_cache_bytes == optimum.kv_cache_bytes


def test_a_batched_product_with_a_weight_is_one_gemm():
    """``[b, s, k] x W[k, n]`` runs as one GEMM of ``b * s`` rows (frameworks view A as 2-D), not ``b``
    GEMMs of ``s`` rows; attention's ``[b, h, s, d] x [b, h, d, t]`` stays a batch of ``b * h`` GEMMs."""
    from estimator.energy.gpu_efficiency import gemm_shape

    cfg = DecoderConfig("llama", 1, 256, 8, 2, 512, 100)
    model = decoder(cfg, paged=True)
    report = fuse_kernels(count_costs(load_graph(model, shapes=bind(read_layout(model), 64, 1, 40))))
    shapes = {
        (s.m, s.n, s.k, s.groups)
        for k in report.kernels
        if k.kind == "contraction"
        for s in [gemm_shape(report, k)]
        if s is not None
    }
    assert (64, 512, 256, 1) in shapes  # MLP up/gate projection: M = batch x 1 token
    assert (64, 100, 256, 1) in shapes  # LM head
    assert (4, 1, 32, 64 * 2) in shapes  # new-token scores per KV head: (groups x 1) x 1, batch x kv heads
