"""The energy-roofline prior and the cache placement on hand-made graphs with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import parse

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.hardware import load_profile
from estimator.energy.physics import energy_prior, static_power_w
from estimator.energy.placement import CacheLevel, fits, peak_live_bytes
from estimator.graph.load import load_graph

# A device with round numbers: 10 SMs with 1 kB of L1 each, a 1 MB shared L2, 1 TFLOP/s, 100 GB/s.
PROFILE = """
schema_version = 1
name = "roundium"
display_name = "Round-number test GPU"
kind = "gpu"
vendor = "test"
architecture = "test"
process_node = "test"
compute_unit_name = "SM"
dram_type = "test"
default_runtime = "onnxruntime-cuda"
measurement_boundary = "{boundary}"
sockets = 1
notes = "for tests"

[compute]
compute_units = {{ value = 10, source = "t", confidence = "quoted" }}
clock_hz = {{ value = 1e9, source = "t", confidence = "quoted" }}

[peak_flops_per_s]
fp64_vector = {{ value = 1e11, source = "t", confidence = "quoted" }}
fp32_vector = {{ value = 1e12, source = "t", confidence = "quoted" }}
fp32_matrix = {{ value = 1e12, source = "t", confidence = "quoted" }}
fp16_vector = {{ value = 2e12, source = "t", confidence = "quoted" }}
fp16_matrix = {{ value = 4e12, source = "t", confidence = "quoted" }}

[memory]
dram_bytes = {{ value = 1e10, source = "t", confidence = "quoted" }}
dram_bandwidth_bytes_per_s = {{ value = 1e11, source = "t", confidence = "quoted" }}
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
idle_with_context_w = {{ value = 10, source = "t", confidence = "quoted" }}
static_w = {{ value = 10, source = "t", confidence = "quoted" }}

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


@pytest.fixture
def hw(tmp_path):
    def make(boundary="gpu-board-nvml", tdp=100):
        path = tmp_path / f"roundium_{boundary}_{tdp}.toml"
        path.write_text(PROFILE.format(boundary=boundary, tdp=tdp))
        return load_profile(path)

    return make


def _matmul(m, k, n, batch=None):
    dims = f"{batch}, " if batch else ""
    return parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{dims}{m}, {k}] A, float[{k}, {n}] B) => (float[{dims}{m}, {n}] C) {{ C = MatMul (A, B) }}
        """
    )


def _prior(model, hw, **kw):
    return energy_prior(fuse_kernels(count_costs(load_graph(model))), hw, **kw)


def test_compute_bound_matmul_by_hand(hw):
    m = k = n = 256  # 33.6 MFLOP, 786 kB moved: L2-resident
    p = _prior(_matmul(m, k, n), hw())
    flops = 2 * m * k * n
    nbytes = 4 * (m * k + k * n + m * n)
    assert nbytes <= 1_000_000  # fits the shared L2
    t = max(flops / 1e12, nbytes / 1e11, 1e-6)
    assert p.kernel_bound.tolist() == ["compute"]
    assert math.isclose(p.seconds, t)
    assert math.isclose(p.joules, 10 * t + flops * 1e-12 + nbytes * 1e-11)
    assert not p.throttled


def test_working_set_just_below_and_above_l2(hw):
    # Vector add of two float32 inputs into one output: 12 bytes per element. 83,000 elements = 996 kB
    # (inside the 1 MB L2), 84,000 = 1,008 kB (beyond it, served by DRAM).
    def vadd(n):
        return parse(
            f"""
            <ir_version: 8, opset_import: ["" : 17]>
            agraph (float[{n}] A, float[{n}] B) => (float[{n}] C) {{ C = Add (A, B) }}
            """
        )

    below, above = _prior(vadd(83_000), hw()), _prior(vadd(84_000), hw())
    assert below.placement.kernel_level.tolist() == [1]
    assert above.placement.kernel_level.tolist() == [2]
    assert math.isclose(below.memory_joules[1], 12 * 83_000 * 1e-11)
    assert math.isclose(above.memory_joules[2], 12 * 84_000 * 1e-10)
    # Energy per byte jumps by the L2 -> DRAM ratio (BUTTER-E's step).
    per_byte = [
        (p.joules - p.static_joules - p.compute_joules) / (12 * n)
        for p, n in ((below, 83_000), (above, 84_000))
    ]
    assert math.isclose(per_byte[1] / per_byte[0], 10.0)


def test_per_unit_level_holds_replicated_plus_split_share():
    levels = [CacheLevel("L1", 1000, True, 10), CacheLevel("L2", 1e6, False, 1)]
    # 500 B every unit needs + 5,000 B split across 10 units = 1,000 B per unit: fits L1 exactly.
    assert fits(levels, [500], [5000], 10).tolist() == [0]
    assert fits(levels, [501], [5000], 10).tolist() == [1]
    # Using one unit, the split part is not divided.
    assert fits(levels, [500], [5000], 1).tolist() == [1]
    assert fits(levels, [1e6], [1], 10).tolist() == [2]


def test_doubling_batch_doubles_flops_and_lowers_energy_per_sample_when_launch_bound(hw):
    profile = hw()
    one = fuse_kernels(count_costs(load_graph(_matmul(4, 16, 16, batch="b"), batch=1)))
    two = fuse_kernels(count_costs(load_graph(_matmul(4, 16, 16, batch="b"), batch=2)))
    assert two.costs.totals.flops == 2 * one.costs.totals.flops
    p1, p2 = energy_prior(one, profile), energy_prior(two, profile)
    assert p1.kernel_bound.tolist() == ["launch"] == p2.kernel_bound.tolist()
    assert p2.joules / 2 < p1.joules


def test_fp16_halves_bytes_and_uses_fp16_rates(hw):
    profile = hw()
    k = fuse_kernels(count_costs(load_graph(_matmul(256, 256, 256))))
    p32, p16 = energy_prior(k, profile), energy_prior(k, profile, dtype="float16")
    flops = 2 * 256**3
    assert math.isclose(p16.compute_joules, flops * 5e-13)
    assert math.isclose(p16.memory_joules.sum(), p32.memory_joules.sum() / 2)
    assert math.isclose(p16.seconds, max(flops / 4e12, 1e-6))


def test_tdp_clamp_stretches_time_instead_of_exceeding_tdp(hw):
    profile = hw(tdp=20)  # dynamic power of this matmul would be ~1 TFLOP/s x 1 pJ = 1 W + memory ...
    p = _prior(_matmul(1024, 1024, 1024), profile)
    flops = 2 * 1024**3
    unclamped_t = flops / 1e12
    dynamic = flops * 1e-12 + p.memory_joules.sum()
    if (10 * unclamped_t + dynamic) / unclamped_t > 20:
        assert p.throttled
        assert math.isclose(p.avg_power_w, 20)
        assert math.isclose(p.seconds, dynamic / (20 - 10))
    profile = hw(tdp=10.5)
    p = _prior(_matmul(1024, 1024, 1024), profile)
    assert p.throttled and math.isclose(p.avg_power_w, 10.5)


def test_static_power_follows_the_boundary(hw):
    assert static_power_w(hw("gpu-board-nvml"), 10) == 10
    assert static_power_w(hw("soc-core-rail-dynamic"), 10) == 5  # static - idle


def test_peak_live_bytes():
    # a: 10 B live steps 0-2, b: 20 B steps 1-1, c: 5 B steps 2-3 -> peak 30 at step 1.
    assert peak_live_bytes([10, 20, 5], [0, 1, 2], [2, 1, 3], 4) == 30


def test_every_profile_gives_finite_positive_joules_on_the_light_models(light_dir):
    from estimator.api import Estimator
    from estimator.energy.hardware import list_profiles

    models = sorted(light_dir.glob("*.onnx"))
    reports = [fuse_kernels(count_costs(load_graph(m))) for m in models]
    for name in list_profiles():
        est = Estimator(name)
        for kernels in reports:
            result = est.estimate_kernels(kernels)
            assert math.isfinite(result.joules) and result.joules > 0, (name, kernels.costs.graph.name)
            low, high = result.interval
            assert 0 < low < high and math.isfinite(high)


def test_a_network_of_views_costs_one_dispatch(hw):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[4, 8] X) => (float[32] Y) { s = Constant <value = int64[1] {32}> ()
        Y = Reshape (X, s) }
        """
    )
    p = _prior(model, hw())
    assert math.isclose(p.seconds, 1e-6) and math.isclose(p.joules, 10 * 1e-6)


def test_a_kernel_row_describes_the_kernel_as_a_network_of_its_own():
    """Kernel-level models are trained on single layers and applied to each kernel of a network: the row of
    a VGG11 convolution inside the network must match the row of that layer built alone."""
    from estimator.energy.runtimes import get_runtime
    from estimator.learn.features import FEATURE_NAMES, build_features
    from estimator.zoo import build_from_spec

    hw, rt = load_profile("xeon-gold-5120"), get_runtime("pytorch-cpu")
    whole = build_features(
        fuse_kernels(count_costs(load_graph(build_from_spec("torchvision:vgg11", batch=2))), fuse=False),
        hw,
        rt,
    )
    alone = build_features(
        fuse_kernels(
            count_costs(load_graph(build_from_spec("torchvision:vgg11;layer=3", batch=2))), fuse=False
        ),
        hw,
        rt,
    )
    same = [
        "log_flops",
        "log_weight_bytes",
        "log_activation_read_bytes",
        "log_write_bytes",
        "log_batch",
        "log_input_elements_per_sample",
        "log_conv_flops",
        "dtype_bits",
    ]
    idx = [FEATURE_NAMES.index(f) for f in same]
    target = alone.graph[idx]
    assert any(np.allclose(row[idx], target) for row in whole.kernels)
