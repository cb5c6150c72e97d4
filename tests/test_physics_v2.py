"""The runtime-aware GPU prior (energy-roofline v2), term by term, on a round-number device and tiny graphs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import parse

from estimator.api import Estimator
from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.gpu_efficiency import (
    GemmShape,
    bandwidth_fraction,
    gemm_shape,
    runs_as_gemm,
    tile_wave_efficiency,
    uses_tf32,
)
from estimator.energy.hardware import load_profile
from estimator.energy.physics import PRIOR_NAME, energy_prior
from estimator.energy.prior_v2 import (
    PRIOR_V2_NAME,
    V2Constants,
    canonical_prior_name,
    energy_prior_v2,
    pipeline_end_times,
)
from estimator.energy.runtimes import get_runtime
from estimator.errors import ProfileError
from estimator.graph.load import load_graph

# 10 SMs, FP32 1 TFLOP/s on the vector path and 4 TFLOP/s TF32, 1 TB/s; busy static 30 W, waiting 20 W.
PROFILE = """
schema_version = 1
name = "roundium2"
display_name = "Round-number test GPU with TF32"
kind = "gpu"
vendor = "test"
architecture = "test"
process_node = "test"
compute_unit_name = "SM"
dram_type = "test"
default_runtime = "pytorch-cuda"
measurement_boundary = "gpu-board-nvml"
sockets = 1
notes = "for tests"

[compute]
compute_units = {{ value = 10, source = "t", confidence = "quoted" }}
clock_hz = {{ value = 1e9, source = "t", confidence = "quoted" }}

[peak_flops_per_s]
fp64_vector = {{ value = 1e11, source = "t", confidence = "quoted" }}
fp32_vector = {{ value = 1e12, source = "t", confidence = "quoted" }}
fp32_matrix = {{ value = 4e12, source = "t", confidence = "quoted" }}
fp16_vector = {{ value = 2e12, source = "t", confidence = "quoted" }}
fp16_matrix = {{ value = 8e12, source = "t", confidence = "quoted" }}

[memory]
dram_bytes = {{ value = 1e10, source = "t", confidence = "quoted" }}
dram_bandwidth_bytes_per_s = {{ value = 1e12, source = "t", confidence = "quoted" }}
dram_energy_per_byte_j = {{ value = 1e-10, source = "t", confidence = "quoted" }}

[[cache]]
level = "L1"
scope = "per_unit"
units = 10
size_bytes = {{ value = 1000, source = "t", confidence = "quoted" }}
energy_per_byte_j = {{ value = 1e-12, source = "t", confidence = "quoted" }}

[[cache]]
level = "L2"
scope = "shared"
units = 1
size_bytes = {{ value = 1000000, source = "t", confidence = "quoted" }}
energy_per_byte_j = {{ value = 1e-11, source = "t", confidence = "quoted" }}

[power]
tdp_w = {{ value = {tdp}, source = "t", confidence = "quoted" }}
idle_w = {{ value = 5, source = "t", confidence = "quoted" }}
idle_with_context_w = {{ value = 20, source = "t", confidence = "quoted" }}
static_w = {{ value = 30, source = "t", confidence = "quoted" }}

[energy_per_flop_j]
fp64 = {{ value = 1e-11, source = "t", confidence = "quoted" }}
fp32 = {{ value = 1e-12, source = "t", confidence = "quoted" }}
fp16 = {{ value = 5e-13, source = "t", confidence = "quoted" }}

[efficiency]
achievable_compute_fraction = {{ value = 1.0, source = "t", confidence = "quoted" }}
achievable_bandwidth_fraction = {{ value = 1.0, source = "t", confidence = "quoted" }}
launch_overhead_s = {{ value = 1e-6, source = "t", confidence = "quoted" }}

[references]
t = "test values"
"""
# No ramp, a 2 us kernel floor, 10 us host dispatch, no per-call time: each term alone in a test.
PLAIN = V2Constants(host_dispatch_s=10e-6, host_call_s=0.0, gpu_kernel_floor_s=2e-6, bandwidth_ramp_s=0.0)


@pytest.fixture
def hw(tmp_path):
    def make(tdp=1000):
        path = tmp_path / f"roundium2_{tdp}.toml"
        path.write_text(PROFILE.format(tdp=tdp))
        return load_profile(path)

    return make


def _kernels(model, fuse=False):
    return fuse_kernels(count_costs(load_graph(model)), fuse=fuse)


def _matmul(m, k, n, dtype="float"):
    return parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph ({dtype}[{m}, {k}] A, {dtype}[{k}, {n}] B) => ({dtype}[{m}, {n}] C) {{ C = MatMul (A, B) }}
        """
    )


def _relu_chain(n_ops, elements=10):
    body = "\n".join(f"x{i + 1} = Relu (x{i})" if i + 1 < n_ops else f"y = Relu (x{i})" for i in range(n_ops))
    return parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{elements}] x0) => (float[{elements}] y) {{ {body} }}
        """
    )


# --- tile and wave quantisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "n", "k", "groups", "expected"),
    [
        (1280, 1280, 128, 1, 1.0),  # 100 full tiles = 10 full waves on 10 SMs
        (128 * 11, 128, 128, 1, 11 / 20),  # 11 tiles: a second wave with one tile in it
        (1290, 1290, 128, 1, 1290**2 / (13 * 10 * 128**2)),  # 11x11 partly empty tiles in 13 waves
        (256, 256, 256, 1, 0.8),  # 4 tiles < 10 SMs: split-K in 2 -> 8 tiles of depth 128 in one wave
        (128, 128, 128, 10, 1.0),  # 10 batched GEMMs of one full tile each
    ],
)
def test_tile_and_wave_quantisation_closed_forms(m, n, k, groups, expected):
    shape = GemmShape(m, n, k, groups, "matmul")
    assert math.isclose(tile_wave_efficiency(shape, sms=10), expected)


def test_gemm_shape_of_a_grouped_conv_and_depthwise_runs_off_the_tensor_cores():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 64, 8, 8] X, float[32, 16, 3, 3] W, float[64, 1, 3, 3] D)
            => (float[2, 32, 8, 8] Y, float[2, 64, 8, 8] Z) {
            Y = Conv <group = 4, pads = [1, 1, 1, 1]> (X, W)
            Z = Conv <group = 64, pads = [1, 1, 1, 1]> (X, D)
        }
        """
    )
    k = _kernels(model)
    grouped, depthwise = (gemm_shape(k, kern) for kern in k.kernels if kern.launches)
    # Implicit GEMM: M = batch x pixels, N = C_out / group, K = C_in / group x 3 x 3, G = group.
    assert grouped == GemmShape(2 * 64, 8, 16 * 9, 4, "conv")
    assert depthwise == GemmShape(2 * 64, 1, 9, 64, "conv")
    assert not runs_as_gemm(depthwise)


# --- bandwidth fraction --------------------------------------------------------------------------------


def test_bandwidth_fraction_is_half_the_sustained_rate_at_the_half_saturation_size():
    bw, f_max, ramp = 1e12, 0.9, 1e-6
    half = f_max * bw * ramp  # 900 kB
    got = bandwidth_fraction(np.array([half, 1e12, 0.0]), bw, f_max, ramp)
    assert math.isclose(got[0], 0.45)
    assert math.isclose(got[1], 0.9, rel_tol=1e-6)
    assert got[2] == 0.0
    # Equivalently: time = bytes / (f_max * BW) + ramp.
    nbytes = 3e6
    t = nbytes / (bw * bandwidth_fraction(nbytes, bw, f_max, ramp))
    assert math.isclose(t, nbytes / (f_max * bw) + ramp)


def test_memory_bound_kernel_pays_the_ramp(hw):
    n = 1_000_000  # Add of two float32 vectors: 12 MB through DRAM
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{n}] A, float[{n}] B) => (float[{n}] C) {{ C = Add (A, B) }}
        """
    )
    ramp = 3e-6
    c = V2Constants(host_dispatch_s=0.0, host_call_s=0.0, gpu_kernel_floor_s=0.0, bandwidth_ramp_s=ramp)
    p = energy_prior_v2(_kernels(model), hw(), constants=c)
    assert p.kernel_bound.tolist() == ["memory"]
    assert math.isclose(p.seconds, 12 * n / 1e12 + ramp)


# --- precision as the runtime executes it --------------------------------------------------------------


def test_tf32_table_per_runtime_and_op_class():
    assert not uses_tf32("pytorch-cuda", "matmul") and uses_tf32("pytorch-cuda", "conv")
    assert uses_tf32("tensorflow-gpu", "matmul") and uses_tf32("tensorflow-gpu", "conv")
    assert uses_tf32("tensorrt", "matmul")
    assert not uses_tf32("pytorch-cpu", "conv")


@pytest.mark.parametrize(("runtime", "rate"), [("pytorch-cuda", 1e12), ("tensorflow-gpu", 4e12)])
def test_fp32_matmul_runs_at_the_rate_the_runtime_chooses(hw, runtime, rate):
    m, k, n = 1280, 128, 1280  # full tiles and waves; compute-bound on both paths
    c = V2Constants(host_dispatch_s=0.0, host_call_s=0.0, gpu_kernel_floor_s=0.0, bandwidth_ramp_s=0.0)
    p = energy_prior_v2(_kernels(_matmul(m, k, n)), hw(), runtime=get_runtime(runtime), constants=c)
    assert p.kernel_bound.tolist() == ["compute"]
    assert math.isclose(p.seconds, 2 * m * k * n / rate)


def test_fp32_convolution_uses_tf32_in_pytorch_and_fp16_matmul_the_fp16_tensor_cores(hw):
    # 1x1 convolution as a GEMM of M = 40 x 32 pixels = 1280, N = 128, K = 128: ten full tiles, one wave.
    conv = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 128, 40, 32] X, float[128, 128, 1, 1] W) => (float[1, 128, 40, 32] Y) {
            Y = Conv (X, W)
        }
        """
    )
    c = V2Constants(host_dispatch_s=0.0, host_call_s=0.0, gpu_kernel_floor_s=0.0, bandwidth_ramp_s=0.0)
    p = energy_prior_v2(_kernels(conv), hw(), runtime=get_runtime("pytorch-cuda"), constants=c)
    assert math.isclose(p.seconds, 2 * 1280 * 128 * 128 / 4e12)
    p16 = energy_prior_v2(_kernels(_matmul(1280, 128, 1280, "float16")), hw(), constants=c)
    assert math.isclose(p16.seconds, 2 * 1280 * 128 * 1280 / 8e12)


# --- host dispatch and the host/GPU pipeline -----------------------------------------------------------


def test_pipeline_end_times_closed_forms():
    # Device-bound: every kernel longer than a dispatch -> first issue + sum of GPU times.
    assert np.allclose(pipeline_end_times([3, 3, 3], [1, 2, 3]), [4, 7, 10])
    # Host-bound: every kernel shorter -> N dispatches + the last kernel.
    assert np.allclose(pipeline_end_times([1, 1, 1], [5, 10, 15]), [6, 11, 16])
    # Mixed: a long first kernel lets the host run ahead.
    assert np.allclose(pipeline_end_times([10, 1, 1], [2, 4, 6]), [12, 13, 14])


def test_host_bound_chain_waits_at_idle_with_context_power(hw):
    n_ops = 5
    p = energy_prior_v2(_kernels(_relu_chain(n_ops)), hw(), constants=PLAIN)
    h, floor = 10e-6, 2e-6
    assert math.isclose(p.seconds, n_ops * h + floor)  # host-bound: N h + g_last
    busy = n_ops * floor
    dynamic = p.compute_joules + p.memory_joules.sum()
    assert math.isclose(p.joules, 30 * busy + 20 * (p.seconds - busy) + dynamic)
    assert math.isclose(p.wait_seconds, p.seconds - busy)
    assert p.kernel_bound.tolist() == ["launch"] * n_ops
    assert math.isclose(p.kernel_joules.sum(), p.joules)


def test_device_bound_when_kernels_outlast_dispatch(hw):
    m, k, n = 1280, 128, 1280
    p = energy_prior_v2(_kernels(_matmul(m, k, n)), hw(), constants=PLAIN)
    g = 2 * m * k * n / 1e12  # pytorch-cuda: full FP32
    assert math.isclose(p.seconds, 10e-6 + g)  # h + sum(g)
    assert p.kernel_bound.tolist() == ["compute"]  # it waited 10 us for its dispatch, then ran 419 us
    assert math.isclose(p.joules, 30 * g + 20 * 10e-6 + p.compute_joules + p.memory_joules.sum())


def test_per_call_time_adds_to_latency_at_waiting_power(hw):
    call = 1e-3
    base = energy_prior_v2(_kernels(_relu_chain(3)), hw(), constants=PLAIN)
    c = V2Constants(host_dispatch_s=10e-6, host_call_s=call, gpu_kernel_floor_s=2e-6, bandwidth_ramp_s=0.0)
    p = energy_prior_v2(_kernels(_relu_chain(3)), hw(), constants=c)
    assert math.isclose(p.seconds - base.seconds, call)
    assert math.isclose(p.joules - base.joules, 20 * call)
    # The call's wait is the first kernel's: per-kernel times and joules still add up to the inference's.
    assert math.isclose(p.kernel_seconds[0] - base.kernel_seconds[0], call)
    assert math.isclose(p.kernel_joules.sum(), p.joules) and math.isclose(p.kernel_seconds.sum(), p.seconds)
    assert p.call_seconds == call and math.isclose(p.call_joules, 20 * call)


def test_the_per_layer_view_shows_the_call_wait_as_its_own_row_and_adds_up_to_the_answer():
    from estimator.layers import HOST_CALL_ROW

    est = Estimator("h100", "vllm", calibrated=False)  # the vllm runtime has a per-step host time
    e = est.estimate(_relu_chain(3))
    call = get_runtime("vllm").host_call_s
    assert call > 0
    host = [layer for layer in e.layers if layer.kernel == -1]
    assert [layer.name for layer in host] == [HOST_CALL_ROW] and host[0].nodes == () and host[0].level == "-"
    assert math.isclose(host[0].joules, load_profile("h100").idle_with_context_w * call)
    assert math.isclose(host[0].seconds, call)
    assert math.isclose(sum(layer.joules for layer in e.layers), e.joules)
    assert all(layer.seconds >= 0 and layer.joules >= 0 for layer in e.layers)
    # The roofline's per-kernel view leaves the wait out: the kernels alone take the answer minus the call.
    alone_s, alone_j = e.prior.kernels_alone(e.prior.kernel_joules > 0)
    assert math.isclose(alone_s.sum(), e.prior.seconds - call)
    assert math.isclose(alone_j.sum(), e.prior.joules - host[0].joules)


def test_runtime_dispatch_times_come_from_the_runtime_table(hw):
    k = _kernels(_relu_chain(4))
    c = V2Constants(gpu_kernel_floor_s=2e-6, bandwidth_ramp_s=0.0)
    for name in ("pytorch-cuda", "hf-pipeline", "tensorrt"):
        rt = get_runtime(name)
        p = energy_prior_v2(k, hw(), runtime=rt, constants=c)
        assert math.isclose(p.host_seconds, rt.host_call_s + 4 * rt.host_dispatch_s)
        # Equal kernels: the pipeline ends at max(N h + g, h + N g).
        h, g = rt.host_dispatch_s, 2e-6
        assert math.isclose(p.seconds, rt.host_call_s + max(4 * h + g, h + 4 * g))


# --- TDP clamp -----------------------------------------------------------------------------------------


def test_tdp_clamp_holds_busy_power_at_tdp(hw):
    # A memory-bound Add (a GEMM's energy is already set by the power limit, test_physics_v2_gemm.py):
    # 30 W static + 1e-10 J/B x 1e12 B/s = 130 W busy; a 40 W TDP does not hold it.
    n = 1_000_000
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{n}] A, float[{n}] B) => (float[{n}] C) {{ C = Add (A, B) }}
        """
    )
    profile = hw(tdp=40)
    c = V2Constants(host_dispatch_s=0.0, host_call_s=0.0, gpu_kernel_floor_s=0.0, bandwidth_ramp_s=0.0)
    free = energy_prior_v2(_kernels(model), hw(), constants=c)
    p = energy_prior_v2(_kernels(model), profile, constants=c)
    assert p.throttled and not free.throttled
    dynamic = p.compute_joules + p.memory_joules.sum()
    assert math.isclose(p.seconds, dynamic / (40 - 30))
    assert math.isclose(p.joules / p.seconds, 40)


# --- naming, defaults, and v1 unchanged ----------------------------------------------------------------


def test_cpu_profiles_get_v1_unchanged():
    rpi = load_profile("rpi5")
    k = _kernels(_matmul(64, 64, 64), fuse=True)
    v1 = energy_prior(k, rpi, runtime=get_runtime("tflite"))
    v2 = energy_prior_v2(k, rpi, runtime=get_runtime("tflite"))
    assert v2.name == v1.name == PRIOR_NAME
    assert v2.joules == v1.joules and v2.seconds == v1.seconds


def test_prior_names_and_defaults():
    assert canonical_prior_name("v2") == canonical_prior_name("energy-roofline-v2") == PRIOR_V2_NAME
    assert canonical_prior_name("V1") == PRIOR_NAME
    with pytest.raises(ProfileError, match="unknown prior"):
        canonical_prior_name("v3")
    assert Estimator("a100", calibrated=False).prior_name == PRIOR_V2_NAME
    assert Estimator("a100", calibrated=False, prior="v1").prior_name == PRIOR_NAME
    assert Estimator("rpi5", runtime="tflite", calibrated=False, prior="v2").prior_name == PRIOR_NAME


def test_estimate_reports_the_prior_it_used():
    model = _matmul(64, 64, 64)
    v2 = Estimator("a100", calibrated=False).estimate(model)
    v1 = Estimator("a100", calibrated=False, prior="v1").estimate(model)
    assert v2.to_json()["prior"]["name"] == PRIOR_V2_NAME and PRIOR_V2_NAME in v2.method
    assert v1.to_json()["prior"]["name"] == PRIOR_NAME
    # Eager PyTorch at batch 1: the host dispatch makes v2 slower than v1's roofline.
    assert v2.seconds > v1.seconds


# --- fitting the estimated constants on given rows only ------------------------------------------------


def _synthetic_rows(dispatch_s, sizes=(3, 10, 40)):
    """Rows 'measured' by the v2 prior itself with a known dispatch time, on the shipped a100 profile."""
    from estimator.energy.prior_v2 import assemble, device_terms

    a100, rt = load_profile("a100"), get_runtime("pytorch-cuda")
    truth = V2Constants(host_dispatch_s=dispatch_s, host_call_s=0.0)
    rows = []
    for n in sizes:
        result = assemble(device_terms(_kernels(_relu_chain(n)), a100, rt), a100, rt, truth)
        rows.append(
            {
                "model_ref": f"relu:{n}",
                "batch": 1,
                "dtype": "float32",
                "hardware": "a100",
                "runtime": "pytorch-cuda",
                "boundary": "gpu-board-nvml",
                "joules_per_inference": result.joules,
                "latency_s": result.seconds,
            }
        )
    return rows


def _relu_loader(model_ref, batch, fuse):
    return _kernels(_relu_chain(int(model_ref.split(":")[1])), fuse=fuse)


def test_fit_recovers_the_dispatch_time_from_the_rows_it_is_given():
    from estimator.energy.prior_fit import fit_constants, prepare_cases

    rows_a, rows_b = _synthetic_rows(7e-6), _synthetic_rows(40e-6)
    other = dict(rows_a[0], boundary="wall-system")  # not at the prior's boundary: skipped
    cases_a, skipped = prepare_cases([*rows_a, other], load_kernels=_relu_loader)
    assert skipped == 1 and len(cases_a) == 3
    cases_b, _ = prepare_cases(rows_b, load_kernels=_relu_loader)
    fit_a = fit_constants(cases_a, ("host_dispatch_s",), start=V2Constants(host_call_s=0.0))
    fit_b = fit_constants(cases_b, ("host_dispatch_s",), start=V2Constants(host_call_s=0.0))
    assert math.isclose(fit_a.constants.host_dispatch_s, 7e-6, rel_tol=1e-3)
    assert math.isclose(fit_b.constants.host_dispatch_s, 40e-6, rel_tol=1e-3)
    assert fit_a.loss_after < 1e-8 < fit_a.loss_before
    assert "3 rows" in fit_a.constants.fitted_on


def test_fit_rejects_unknown_constants_and_empty_tables():
    from estimator.energy.prior_fit import fit_constants

    with pytest.raises(ProfileError, match="cannot fit"):
        fit_constants([], ("tdp_w",))
    with pytest.raises(ProfileError, match="no measurement rows"):
        fit_constants([], ("host_dispatch_s",))


def test_cli_prior_option(tmp_path, capsys):
    from estimator.cli import run

    path = tmp_path / "mm.onnx"
    path.write_bytes(_matmul(64, 64, 64).SerializeToString())
    assert run([str(path), "--hw", "a100", "--prior", "v1", "--layers", "0"]) == 0
    assert "energy-roofline v1" in capsys.readouterr().out
    assert run([str(path), "--hw", "a100", "--layers", "0"]) == 0
    out = capsys.readouterr().out
    assert "energy-roofline v2" in out and "idle-with-context" in out
    assert run([str(path), "--hw", "a100", "--prior", "v3"]) == 2
    assert "unknown prior 'v3'" in capsys.readouterr().err


def test_resnet50_batch1_eager_on_a100_takes_several_milliseconds():
    # Published order of magnitude: eager PyTorch ResNet-50 at batch 1 on an A100 takes several ms, host-bound;
    # v1 (no host) predicts under 1 ms.
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    v2 = Estimator("a100", calibrated=False).estimate(model)
    v1 = Estimator("a100", calibrated=False, prior="v1").estimate(model)
    assert 2e-3 < v2.seconds < 10e-3 and v1.seconds < 1e-3
    assert v2.prior.wait_seconds > 0.5 * v2.seconds  # the board mostly waits for the host
    hw = load_profile("a100")  # near idle-with-context, far below TDP
    assert hw.idle_with_context_w < v2.avg_power_w < 1.5 * hw.idle_with_context_w < 0.5 * hw.tdp_w


def test_golden_section_min_closes_on_a_parabola_minimum_with_one_evaluation_per_step():
    """(x - 0.3)^2 on [0, 1]: after n steps the bracket is 0.618^(n+1) wide around 0.3 (closed form)."""
    from estimator.energy.prior_fit import golden_section_min

    calls = []

    def f(x: float) -> float:
        calls.append(x)
        return (x - 0.3) ** 2

    steps = 30
    x = golden_section_min(f, 0.0, 1.0, steps)
    assert abs(x - 0.3) <= ((5**0.5 - 1) / 2) ** (steps + 1)
    assert len(calls) == steps + 2
