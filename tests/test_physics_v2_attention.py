"""The v2 prior's fused attention kernels: FlashAttention-2's rate per device (``fa2_compute_fraction``) and its
head-size padding, under the runtimes that run it - closed forms on the round-number test GPU of test_physics_v2
(10 SMs, FP16 matrix 8 TFLOP/s, 1 TB/s), here with GEMMs at 0.8 of the peak and FlashAttention-2 at 0.4."""

from __future__ import annotations

import math
import statistics

import pytest
from conftest import parse
from test_physics_v2 import PROFILE, _kernels

from estimator.energy.gpu_efficiency import GemmShape, gemm_shape
from estimator.energy.gpu_paths import fa2_head_efficiency
from estimator.energy.hardware import load_profile
from estimator.energy.prior_v2 import V2Constants, energy_prior_v2
from estimator.energy.runtimes import FLASH_ATTENTION_2, RUNTIMES, get_runtime
from estimator.errors import ProfileError

NO_HOST = V2Constants(host_dispatch_s=0.0, host_call_s=0.0, gpu_kernel_floor_s=0.0, bandwidth_ramp_s=0.0)
FP16_MATRIX = 8e12  # FLOP/s, the test profile's
GEMM_FRACTION = 0.8
FA2_FRACTION = 0.4
SCORE_FLOPS = 6  # per score: scale 1 + softmax 5 (estimator.cost.ops.attention)
_LAUNCH = 'launch_overhead_s = { value = 1e-6, source = "t", confidence = "quoted" }'


def _profile(tmp_path, fa2: float | None = FA2_FRACTION, name: str = "fa2"):
    text = PROFILE.format(tdp=1000).replace(
        'achievable_compute_fraction = { value = 1.0, source = "t", confidence = "quoted" }',
        f'achievable_compute_fraction = {{ value = {GEMM_FRACTION}, source = "t", confidence = "quoted" }}',
    )
    if fa2 is not None:
        text = text.replace(
            _LAUNCH,
            _LAUNCH + f'\nfa2_compute_fraction = {{ value = {fa2}, source = "t", confidence = "quoted" }}',
        )
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_profile(path)


def _attention(batch=1, heads=10, q_len=128, kv_len=128, head=64, dtype="float16"):
    """One ONNX Attention node (opset 23) on 4-D (B, H, L, D) inputs."""
    return parse(
        f"""
        <ir_version: 10, opset_import: ["" : 23]>
        agraph ({dtype}[{batch}, {heads}, {q_len}, {head}] Q, {dtype}[{batch}, {heads}, {kv_len}, {head}] K,
                {dtype}[{batch}, {heads}, {kv_len}, {head}] V) => ({dtype}[{batch}, {heads}, {q_len}, {head}] Y) {{
            Y = Attention (Q, K, V)
        }}
        """
    )


def _attention_flops(batch=1, heads=10, q_len=128, kv_len=128, head=64):
    """Q K^T and P V (2 FLOPs per MAC each) plus scale and softmax per score."""
    scores = batch * heads * q_len * kv_len
    return 2 * scores * 2 * head + SCORE_FLOPS * scores


def _seconds(model, hw, runtime, fuse=False):
    return energy_prior_v2(_kernels(model, fuse=fuse), hw, runtime=get_runtime(runtime), constants=NO_HOST)


# --- the rate ------------------------------------------------------------------------------------------------


def test_attention_kernel_is_timed_at_the_profile_fa2_fraction_under_sdpa(tmp_path):
    # Q K^T of 128 x 128 per head, 10 heads: ten 128x128 tiles on 10 SMs, one full wave (efficiency 1); head 64
    # is a FlashAttention-2 head size (no padding). Compute-bound: ~0.66 MB moved (0.66 us) vs ~13 us of math.
    result = _seconds(_attention(), _profile(tmp_path), "pytorch-cuda-sdpa")
    assert math.isclose(result.seconds, _attention_flops() / (FP16_MATRIX * FA2_FRACTION), rel_tol=1e-9)
    assert list(result.kernel_bound) == ["compute"]


def test_profile_without_the_figure_falls_back_to_the_achievable_fraction(tmp_path):
    result = _seconds(_attention(), _profile(tmp_path, fa2=None), "pytorch-cuda-sdpa")
    assert math.isclose(result.seconds, _attention_flops() / (FP16_MATRIX * GEMM_FRACTION), rel_tol=1e-9)


@pytest.mark.parametrize("runtime", ["onnxruntime-cuda", "tensorrt", "pytorch-cuda", "vllm"])
def test_runtimes_that_do_not_run_flash_attention_2_are_unchanged(tmp_path, runtime):
    assert RUNTIMES[runtime].attention_kernel is None
    result = _seconds(_attention(), _profile(tmp_path), runtime)
    assert math.isclose(result.seconds, _attention_flops() / (FP16_MATRIX * GEMM_FRACTION), rel_tol=1e-9)


def test_sdpa_names_flash_attention_2_with_a_source():
    sdpa = get_runtime("pytorch-cuda-sdpa")
    assert sdpa.attention_kernel == FLASH_ATTENTION_2
    assert "sdp_utils.cpp" in sdpa.attention_source and "165801" in sdpa.attention_source


def test_float32_attention_is_not_flash_attention_2(tmp_path):
    # FlashAttention-2 takes 16-bit inputs only; PyTorch runs float32 matmuls in full FP32 (1 TFLOP/s here).
    result = _seconds(_attention(dtype="float"), _profile(tmp_path), "pytorch-cuda-sdpa")
    assert math.isclose(result.seconds, _attention_flops() / (1e12 * GEMM_FRACTION), rel_tol=1e-9)


def test_unfused_chain_fused_by_sdpa_is_flash_attention_2_too(tmp_path):
    q_len, head, heads = 128, 64, 10
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float16[{heads}, {q_len}, {head}] Q, float16[{heads}, {head}, {q_len}] KT,
                float16[{heads}, {q_len}, {head}] V) => (float16[{heads}, {q_len}, {head}] Y) {{
            S = MatMul (Q, KT)
            P = Softmax <axis = -1> (S)
            Y = MatMul (P, V)
        }}
        """
    )
    kernels = _kernels(model, fuse="attention")
    (attention,) = [k for k in kernels.kernels if k.launches]
    assert attention.kind == "attention"
    assert gemm_shape(kernels, attention) == GemmShape(q_len, q_len, head, heads, "matmul")
    fast = energy_prior_v2(
        kernels, _profile(tmp_path), runtime=get_runtime("pytorch-cuda-sdpa"), constants=NO_HOST
    )
    slow = energy_prior_v2(
        kernels,
        _profile(tmp_path, fa2=None, name="gemm"),
        runtime=get_runtime("pytorch-cuda-sdpa"),
        constants=NO_HOST,
    )
    assert math.isclose(fast.seconds, attention.flops / (FP16_MATRIX * FA2_FRACTION), rel_tol=1e-9)
    assert math.isclose(slow.seconds, attention.flops / (FP16_MATRIX * GEMM_FRACTION), rel_tol=1e-9)
    # The arithmetic's energy is the same: a slower kernel draws less than the power limit, for longer.
    assert math.isclose(fast.compute_joules, slow.compute_joules, rel_tol=1e-12)


# --- head-size padding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [(64, 1.0), (128, 1.0), (40, 40 / 64), (72, 72 / 96), (88, 88 / 96), (200, 200 / 256)],
)
def test_fa2_head_efficiency_rounds_to_its_kernels(head, expected):
    assert math.isclose(fa2_head_efficiency(head), expected)


def test_head_of_72_runs_in_the_kernel_of_96(tmp_path):
    result = _seconds(_attention(head=72), _profile(tmp_path), "pytorch-cuda-sdpa")
    expected = _attention_flops(head=72) / (FP16_MATRIX * FA2_FRACTION * 72 / 96)
    assert math.isclose(result.seconds, expected, rel_tol=1e-9)
    # Without the figure the kernel is not taken for FlashAttention-2's, padding included.
    plain = _seconds(_attention(head=72), _profile(tmp_path, fa2=None), "pytorch-cuda-sdpa")
    assert math.isclose(
        plain.seconds, _attention_flops(head=72) / (FP16_MATRIX * GEMM_FRACTION), rel_tol=1e-9
    )


def test_heads_above_256_are_not_flash_attention_2(tmp_path):
    result = _seconds(
        _attention(head=320, heads=1, q_len=1280, kv_len=128), _profile(tmp_path), "pytorch-cuda-sdpa"
    )
    flops = _attention_flops(head=320, heads=1, q_len=1280, kv_len=128)
    assert math.isclose(result.seconds, flops / (FP16_MATRIX * GEMM_FRACTION), rel_tol=1e-9)


# --- the GEMM an Attention node tiles ------------------------------------------------------------------------


def test_attention_node_gemm_is_its_scores_with_a_past_and_3d_inputs():
    batch, heads, q_len, past, new, head = 2, 4, 16, 48, 16, 32
    model = parse(
        f"""
        <ir_version: 10, opset_import: ["" : 23]>
        agraph (float16[{batch}, {q_len}, {heads * head}] Q, float16[{batch}, {new}, {heads * head}] K,
                float16[{batch}, {new}, {heads * head}] V, float16[{batch}, {heads}, {past}, {head}] PK,
                float16[{batch}, {heads}, {past}, {head}] PV) => (float16[{batch}, {q_len}, {heads * head}] Y) {{
            Y, PKo, PVo = Attention <q_num_heads = {heads}, kv_num_heads = {heads}> (Q, K, V, , PK, PV)
        }}
        """
    )
    kernels = _kernels(model)
    (node,) = [k for k in kernels.kernels if k.launches]
    assert gemm_shape(kernels, node) == GemmShape(q_len, past + new, head, batch * heads, "matmul")


# --- profiles --------------------------------------------------------------------------------------------------


def test_fraction_above_one_and_unknown_efficiency_keys_are_rejected(tmp_path):
    with pytest.raises(ProfileError, match="fa2_compute_fraction"):
        _profile(tmp_path, fa2=1.5, name="over")
    text = PROFILE.format(tdp=1000).replace(
        _LAUNCH, _LAUNCH + '\nfa2_compute_fractoin = { value = 0.3, source = "t", confidence = "quoted" }'
    )
    path = tmp_path / "typo.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match="fa2_compute_fractoin"):
        load_profile(path)


def test_shipped_fractions_are_the_medians_of_the_cited_figures():
    # FlashAttention-3 paper (arXiv:2407.08608v2) Fig. 5: FlashAttention-2 forward, no causal mask, H100 SXM5,
    # seqlen 1k-16k, head sizes 64, 128, 256 (TFLOP/s); peak 989.4 TFLOP/s dense BF16/FP16.
    h100 = [306, 318, 321, 322, 324, 350, 362, 368, 370, 370, 313, 321, 323, 324, 326]
    assert load_profile("h100").fa2_compute_fraction == round(statistics.median(h100) / 989.4, 2)
    assert load_profile("h200").fa2_compute_fraction == load_profile("h100").fa2_compute_fraction
    # flash-attention issue 1589 (head 64) and tritonbench pull request 171 (head 128) on B200; peak 2250.
    b200 = [359, 381, 307, 343, 379, 315, 352, 354, 362]
    assert load_profile("b200").fa2_compute_fraction == round(statistics.median(b200) / 2250, 2)
    # FlashAttention-2 paper: 50-73 % of the A100 peak; the middle taken (estimated).
    for name in ("a100", "a100-40gb"):
        assert math.isclose(load_profile(name).fa2_compute_fraction, (0.50 + 0.73) / 2)
    # Profiles without a cited figure keep their GEMM fraction for attention.
    assert load_profile("h100-pcie").fa2_compute_fraction is None
    assert load_profile("l4").fa2_compute_fraction is None
