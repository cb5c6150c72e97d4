"""Which path each kernel's arithmetic takes on a GPU, and at what rate, for the v2 prior (:mod:`prior_v2`).

A launched contraction runs on the matrix units as a tiled GEMM when its shape is known and at least one MMA wide
(with the tile and wave efficiency of :func:`~estimator.energy.gpu_efficiency.library_tile_efficiency`), on the
vector units when it is narrower; a float32 one takes the matrix path only where the runtime runs its op class in
TF32 (:func:`~estimator.energy.gpu_efficiency.uses_tf32`). What depends on the report alone (GEMM shapes, tile
efficiencies per SM count, each kernel's route per dtype) is kept with the report; per estimate, the rates are a
few table look-ups.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from estimator.cost.kernels import KernelReport
from estimator.energy.gpu_efficiency import gemm_shape, library_tile_efficiency, runs_as_gemm, uses_tf32
from estimator.energy.hardware import HardwareProfile
from estimator.energy.physics import KernelArrays
from estimator.energy.profile import compute_dtype_class
from estimator.energy.runtimes import FLASH_ATTENTION_2, Runtime
from estimator.graph.contrib_shapes import ONNX_DOMAIN

#: :func:`library_tile_efficiency` remembered per (GEMM shape, SM count): a pure function of both, and the
#: contractions of a search's candidates (or a network's repeated blocks) repeat a few shapes.
_library_tile_efficiency = lru_cache(maxsize=4096)(library_tile_efficiency)


@dataclass(frozen=True)
class Compute:
    """Per kernel: the FLOP/s its arithmetic runs at before efficiency, the fraction of it its kind of kernel
    sustains, its tile and wave efficiency, its J/FLOP, whether it runs as a tiled GEMM; and the number of
    contraction kernels without a known GEMM shape."""

    peak: np.ndarray  # FLOP/s each kernel's arithmetic runs at, before efficiency
    efficiency: np.ndarray  # tile and wave quantisation (and a fused attention kernel's head padding), (0, 1]
    e_flop: np.ndarray  # J/FLOP
    gemm: np.ndarray  # whether the kernel runs as a tiled GEMM (known shape, at least one MMA wide)
    unshaped: int  # contraction kernels without a known GEMM shape (timed at efficiency 1)
    fraction: np.ndarray  # fraction of ``peak`` sustained at full tile efficiency (see :func:`compute_paths`)


@dataclass(frozen=True)
class _GemmPaths:
    """How each kernel's arithmetic can run, from the report alone (kept with it, read-only bool masks).

    ``candidate``: a launched contraction or attention kernel (the matrix path, tiled when its GEMM runs as
    one); ``unshaped``: a candidate without a known GEMM shape (timed as a matmul at efficiency 1);
    ``vector``: a candidate whose GEMM is too narrow to tile (the vector path); ``gemm``: a candidate that
    runs as a tiled GEMM; ``conv``: a candidate whose op class is ``conv`` (TF32 policy per class).
    """

    candidate: np.ndarray
    unshaped: np.ndarray
    vector: np.ndarray
    gemm: np.ndarray
    conv: np.ndarray
    shapes: dict  # kernel index -> GemmShape, for the kernels in ``gemm``


def _gemm_paths(kernels: KernelReport, matrix: np.ndarray) -> _GemmPaths:
    """:class:`_GemmPaths` of a report (``matrix``: its contraction and attention kernels)."""

    def compute() -> _GemmPaths:
        n = len(kernels.kernels)
        masks = {
            name: np.zeros(n, dtype=bool) for name in ("candidate", "unshaped", "vector", "gemm", "conv")
        }
        shapes = {}
        # GEMM shapes are read through the report's "gemm_shapes" (filled as asked): a caller may have put
        # shapes there that the report's graph does not give (an LLM step interpolated between two lengths).
        known = kernels.derived("gemm_shapes", dict)
        for i, k in enumerate(kernels.kernels):
            # A matrix-kind kernel without multiply-adds (a one-operand Einsum: a permutation) runs nothing on
            # the matrix units; it takes the memory path like any copy.
            if not (matrix[i] and k.launches and k.macs):
                continue
            masks["candidate"][i] = True
            if i not in known:
                known[i] = gemm_shape(kernels, k)
            shape = known[i]
            if shape is None:
                masks["unshaped"][i] = True
                continue
            masks["conv"][i] = shape.op_class == "conv"
            if runs_as_gemm(shape):
                masks["gemm"][i] = True
                shapes[i] = shape
            else:
                masks["vector"][i] = True
        for mask in masks.values():
            mask.setflags(write=False)
        return _GemmPaths(**masks, shapes=shapes)

    return kernels.derived("gemm_paths", compute)


def _tile_efficiency(kernels: KernelReport, paths: _GemmPaths, sms: int) -> np.ndarray:
    """Per-kernel tile and wave efficiency on ``sms`` SMs (1 for kernels that do not run as a tiled GEMM);
    a function of the report and the SM count, kept with the report (read-only)."""

    def compute() -> np.ndarray:
        eff = np.ones(len(kernels.kernels))
        for i, shape in paths.shapes.items():
            eff[i] = _library_tile_efficiency(shape, sms)
        eff.setflags(write=False)
        return eff

    return kernels.derived(("tile_efficiency", sms), compute)


@dataclass(frozen=True)
class _Routes:
    """Per kernel of a report in one dtype: its dtype (``dtype_index`` into ``dtypes``, doubled in
    ``rate_base``: the index of its vector rate in a table of (vector, matrix) rates per dtype) and its route
    (:data:`_ROUTES`); kept with the report per dtype, read-only."""

    dtypes: tuple[str, ...]
    dtype_index: np.ndarray
    rate_base: np.ndarray
    route: np.ndarray


#: Routes of a kernel's arithmetic: the vector path, the matrix path, or a float32 convolution / matrix product
#: GEMM that takes the matrix path where the runtime runs its op class in TF32.
_ROUTES = ("vector", "matrix", "tf32-conv", "tf32-matmul")


def _routes(kernels: KernelReport, ka: KernelArrays, dtype: str | None) -> _Routes:
    """:class:`_Routes` of ``kernels`` re-typed to ``dtype`` (``ka``: their :func:`kernel_arrays`)."""

    def compute() -> _Routes:
        paths = _gemm_paths(kernels, ka.matrix)
        dtype_index = np.zeros(len(kernels.kernels), dtype=np.intp)
        # The matrix path, unless the GEMM is too narrow to tile.
        route = (ka.matrix & ~paths.vector).astype(np.intp)
        for d, (dt, of_matrix, of_vector) in enumerate(ka.dtype_paths):
            of_dtype = of_matrix | of_vector
            dtype_index[of_dtype] = d
            if compute_dtype_class(dt) == "fp32" and of_matrix.any():
                fp32 = of_dtype & paths.candidate & ~paths.vector
                route[fp32 & paths.conv] = _ROUTES.index("tf32-conv")
                route[fp32 & ~paths.conv] = _ROUTES.index("tf32-matmul")
        out = _Routes(tuple(dt for dt, _, _ in ka.dtype_paths), dtype_index, dtype_index * 2, route)
        for array in (out.dtype_index, out.rate_base, out.route):
            array.setflags(write=False)
        return out

    return kernels.derived(("v2_routes", dtype), compute)


def compute_paths(
    kernels: KernelReport, hw: HardwareProfile, runtime: Runtime, ka: KernelArrays, dtype: str | None
) -> Compute:
    """Peak rate, sustained fraction, tile efficiency and J/FLOP of every kernel on ``hw`` with ``runtime``, as
    arrays: the report's GEMM shapes, tile efficiencies and routes are kept with it; per call a few look-ups.

    Every kernel sustains the profile's ``achievable_compute_fraction`` of its peak, except where the runtime
    runs FlashAttention-2 (``runtime.attention_kernel``) and the profile cites that kernel's rate
    (``fa2_compute_fraction``): there each kernel FlashAttention-2 runs (:func:`_fa2_kernels`) sustains that
    fraction, and its efficiency also counts the head size padded to the kernel's (:func:`fa2_head_efficiency`).
    A profile without the figure keeps its achievable fraction for them (never 0) and no padding."""
    paths = _gemm_paths(kernels, ka.matrix)
    routes = _routes(kernels, ka, dtype)
    takes_matrix = np.array([False, True, uses_tf32(runtime.name, "conv"), uses_tf32(runtime.name, "matmul")])
    on_matrix = takes_matrix.take(routes.route)
    rates, energies = [], []
    for dt in routes.dtypes:
        rates += [hw.peak_flops_per_s(dt, matrix=False), hw.peak_flops_per_s(dt, matrix=True)]
        energies.append(hw.energy_per_flop_j(dt))
    peak = np.array(rates, dtype=float).take(routes.rate_base + on_matrix)
    e_flop = np.array(energies, dtype=float).take(routes.dtype_index)
    eff = _tile_efficiency(kernels, paths, hw.compute_units)
    fraction = np.full(len(kernels.kernels), hw.achievable_compute_fraction)
    if runtime.attention_kernel == FLASH_ATTENTION_2 and hw.fa2_compute_fraction is not None:
        padded = _fa2_kernels(kernels, paths, routes, dtype)
        if padded:
            index = np.fromiter(padded, dtype=np.intp, count=len(padded))
            fraction[index] = hw.fa2_compute_fraction
            eff = eff.copy()
            eff[index] *= np.fromiter(padded.values(), dtype=float, count=len(padded))
    return Compute(peak, eff, e_flop, paths.gemm, int(paths.unshaped.sum()), fraction)


#: The head sizes FlashAttention-2 has kernels for: a head of ``d`` runs in the kernel of ``d`` rounded up to a
#: multiple of 32 (256 above 192), its arithmetic padded (flash_api.cpp of github.com/Dao-AILab/flash-attention
#: and of PyTorch's copy in aten/src/ATen/native/transformers/cuda/flash_attn: ``head_size_rounded = head_size
#: <= 192 ? round_multiple(head_size, 32) : 256``); heads above 256 it does not run.
FA2_MAX_HEAD_SIZE = 256


def fa2_head_efficiency(head_size: int) -> float:
    """Fraction of a FlashAttention-2 kernel's arithmetic that is real for heads of ``head_size`` elements:
    ``d / d_rounded`` (:data:`FA2_MAX_HEAD_SIZE`); 1 at 32, 64, 96, 128, ...; 0.75 at 72; 0.625 at 40."""
    rounded = -(-head_size // 32) * 32 if head_size <= 192 else FA2_MAX_HEAD_SIZE
    return head_size / rounded


def _fa2_kernels(
    kernels: KernelReport, paths: _GemmPaths, routes: _Routes, dtype: str | None
) -> dict[int, float]:
    """The kernels a FlashAttention-2 runtime runs as its fused attention kernel, each with its
    :func:`fa2_head_efficiency`: attention kernels (a fused ``MatMul``-``Softmax``-``MatMul`` chain, or an ONNX
    ``Attention`` node) in float16 or bfloat16 on the matrix path, with a known head size of at most
    :data:`FA2_MAX_HEAD_SIZE` (their GEMM's ``K``: :func:`~estimator.energy.gpu_efficiency.gemm_shape`). Kept
    with the report per dtype (read-only)."""

    def compute() -> dict[int, float]:
        sixteen = {d for d, dt in enumerate(routes.dtypes) if compute_dtype_class(dt) in ("fp16", "bf16")}
        out = {}
        for i, shape in paths.shapes.items():
            k = kernels.kernels[i]
            attention = k.kind == "attention" or any(
                kernels.costs.nodes[n].op_type == "Attention"
                and kernels.costs.graph.nodes[n].domain == ONNX_DOMAIN
                for n in k.nodes
            )
            if (
                attention
                and routes.route[i] == _ROUTES.index("matrix")
                and int(routes.dtype_index[i]) in sixteen
                and shape.k <= FA2_MAX_HEAD_SIZE
            ):
                out[i] = fa2_head_efficiency(shape.k)
        return out

    return kernels.derived(("fa2_kernels", dtype), compute)
