"""The v2 prior's GEMM terms: the library's tile choice, flattened matrix products, and GEMMs drawing the power
limit - closed forms on the round-number test GPU of test_physics_v2 (10 SMs, FP32 1 TFLOP/s, static 30 W)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx.parser
import pytest
from conftest import parse
from test_physics_v2 import PROFILE, _kernels, _matmul

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.gpu_efficiency import (
    GemmShape,
    gemm_shape,
    library_tile_efficiency,
    tile_wave_efficiency,
)
from estimator.energy.hardware import load_profile
from estimator.energy.prior_v2 import V2Constants, energy_prior_v2, gemm_power_limit_joules
from estimator.energy.runtimes import get_runtime
from estimator.graph.load import load_graph

NO_HOST = V2Constants(host_dispatch_s=0.0, host_call_s=0.0, gpu_kernel_floor_s=0.0, bandwidth_ramp_s=0.0)


@pytest.fixture
def hw(tmp_path):
    def make(tdp=1000):
        path = tmp_path / f"roundium2_{tdp}.toml"
        path.write_text(PROFILE.format(tdp=tdp))
        return load_profile(path)

    return make


# --- the library's tile choice -------------------------------------------------------------------------


def test_library_takes_the_tile_that_fills_the_last_wave():
    shape = GemmShape(1280, 192, 128, 1, "matmul")
    # 128x128: 10 x 2 = 20 tiles in 2 waves, the second column of tiles half empty: 1280*192 / (20*128*128).
    assert math.isclose(tile_wave_efficiency(shape, 10), 1280 * 192 / (2 * 10 * 128 * 128))
    # 128x64: 10 x 3 = 30 tiles, 3 full waves of full tiles.
    assert math.isclose(tile_wave_efficiency(shape, 10, (128, 64)), 1.0)
    assert math.isclose(library_tile_efficiency(shape, 10), 1.0)


def test_library_tile_efficiency_of_eleven_rows_of_tiles():
    shape = GemmShape(128 * 11, 128, 128, 1, "matmul")
    # 128x128: 11 tiles on 10 SMs -> 11/20; 128x64 or 64x128: 22 tiles in 3 waves -> 22/30.
    assert math.isclose(library_tile_efficiency(shape, 10), 22 / 30)


# --- a matrix product with a weight is one GEMM over the flattened leading dimensions ------------------


def test_matmul_with_a_matrix_flattens_its_leading_dimensions_and_a_batched_one_does_not():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 64, 32] X, float[32, 48] W, float[2, 32, 48] V) => (float[2, 64, 48] Y, float[2, 64, 48] Z) {
            Y = MatMul (X, W)
            Z = MatMul (X, V)
        }
        """
    )
    k = _kernels(model)
    weight, batched = (gemm_shape(k, kern) for kern in k.kernels if kern.launches)
    assert weight == GemmShape(128, 48, 32, 1, "matmul")
    assert batched == GemmShape(64, 48, 32, 2, "matmul")


def test_packed_quantised_weight_is_one_matrix_too():
    m, k, n, block = 16, 64, 32, 32
    model = onnx.parser.parse_model(
        f"""
        <ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
        g (float[4,{m},{k}] A) => (float[4,{m},{n}] Y) {{
            Y = com.microsoft.MatMulNBits <K = {k}, N = {n}, bits = 4, block_size = {block}> (A, Bq, S)
        }}
        """
    )
    for name, value in {
        "Bq": np.ones((n, k // block, block // 2), np.uint8),
        "S": np.ones(n * (k // block), np.float32),
    }.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    kernels = fuse_kernels(count_costs(load_graph(model)), fuse=False)
    (kernel,) = [kern for kern in kernels.kernels if kern.launches]
    # The packed weight is rank 3 ([N, blocks, blob]) but one matrix: M = 4 x 16 rows, one GEMM.
    assert gemm_shape(kernels, kernel) == GemmShape(4 * m, n, k, 1, "matmul")


# --- GEMMs draw the power limit --------------------------------------------------------------------------


def test_gemm_power_limit_joules_closed_form(hw):
    # (TDP - static) x FLOPs / rate: (100 - 30) W x 2e9 FLOP / 1e12 FLOP/s = 0.14 J.
    got = gemm_power_limit_joules([2e9, 0.0], [1e12, 1e12], hw(tdp=100))
    assert math.isclose(got[0], 0.14) and got[1] == 0.0


def test_full_efficiency_fp32_gemm_draws_the_power_limit(hw):
    m, k, n = 1280, 128, 1280  # 100 full tiles in 10 full waves on the FP32 vector path (pytorch-cuda)
    p = energy_prior_v2(
        _kernels(_matmul(m, k, n)), hw(tdp=100), runtime=get_runtime("pytorch-cuda"), constants=NO_HOST
    )
    assert math.isclose(p.seconds, 2 * m * k * n / 1e12)
    assert math.isclose(p.joules / p.seconds, 100.0)


def test_quantised_gemm_draws_static_plus_its_efficiency_times_the_headroom(hw):
    m, k, n = 128 * 11, 128, 128  # library tile efficiency 22/30 (above)
    p = energy_prior_v2(
        _kernels(_matmul(m, k, n)), hw(tdp=100), runtime=get_runtime("pytorch-cuda"), constants=NO_HOST
    )
    e = 22 / 30
    assert math.isclose(p.seconds, 2 * m * k * n / (1e12 * e))
    assert math.isclose(p.joules / p.seconds, 30 + e * (100 - 30))
    assert not p.throttled


def test_profile_energy_per_flop_stays_when_it_is_above_the_limit(hw):
    # TDP 30.5 W: the headroom allows 0.5 pJ/FLOP, the profile says 1 pJ/FLOP -> the profile's value.
    m, k, n = 1280, 128, 1280
    p = energy_prior_v2(
        _kernels(_matmul(m, k, n)), hw(tdp=30.5), runtime=get_runtime("pytorch-cuda"), constants=NO_HOST
    )
    assert math.isclose(p.compute_joules, 2 * m * k * n * 1e-12)


def test_elementwise_kernels_keep_the_profile_energies(hw):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1000000] A, float[1000000] B) => (float[1000000] C) { C = Add (A, B) }
        """
    )
    p = energy_prior_v2(_kernels(model), hw(tdp=100), constants=NO_HOST)
    assert math.isclose(p.compute_joules, 1e6 * 1e-12)  # one FLOP per element at the profile's 1 pJ/FLOP


def test_a_one_operand_einsum_is_a_copy_not_an_unshaped_contraction(hw):
    """A permutation written as a one-operand Einsum (a DiT's unpatchify 'nhwpqc->nchpwq') has no
    multiply-adds: it takes the memory path like the Transpose it is, with no note about an unknown GEMM."""
    dims = "2, 4, 4, 2, 2, 8"
    einsum = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{dims}] X) => (float[2, 8, 4, 2, 4, 2] Y) {{
            Y = Einsum <equation = "nhwpqc->nchpwq"> (X)
        }}
        """
    )
    transpose = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[{dims}] X) => (float[2, 8, 4, 2, 4, 2] Y) {{
            Y = Transpose <perm = [0, 5, 1, 3, 2, 4]> (X)
        }}
        """
    )
    gpu = hw()
    runtime = get_runtime("pytorch-cuda")
    a = energy_prior_v2(_kernels(einsum), gpu, runtime=runtime, constants=NO_HOST)
    b = energy_prior_v2(_kernels(transpose), gpu, runtime=runtime, constants=NO_HOST)
    assert not any("without a known output shape" in note for note in a.notes)
    assert _kernels(einsum).kernels[0].kind == "contraction" and _kernels(einsum).kernels[0].macs == 0
    assert math.isclose(a.seconds, b.seconds) and math.isclose(a.joules, b.joules)
