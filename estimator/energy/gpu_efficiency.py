"""How much of a GPU's peak one kernel reaches, by its size, and which arithmetic a runtime runs it in.

Three closed forms used by the "energy-roofline v2" prior (:mod:`estimator.energy.prior_v2`):

**Tile and wave quantisation of a contraction.** cuBLAS and cuDNN compute a GEMM ``C[M, N] = A[M, K] B[K, N]``
(a convolution as its implicit GEMM: ``M = batch x output pixels``, ``N = output channels / groups``,
``K = input channels / groups x kernel elements``) in output tiles of ``TILE_M x TILE_N``, one tile per SM at a
time. With ``tiles = ceil(M / TILE_M) * ceil(N / TILE_N) * G`` (``G`` independent GEMMs: groups or batched
matmuls) the work runs in ``waves = ceil(tiles / SMs)``; every wave costs a whole tile's time on each SM even
when the tiles are partly empty or the last wave partly occupied (NVIDIA, *Matrix Multiplication Background
User's Guide*, DU-09799-001, ch. 3 "Tile Quantization" and "Wave Quantization"). When there are fewer tiles than
SMs the libraries split ``K`` across SMs (split-K, as in CUTLASS): ``splits = max(1, min(SMs // tiles,
ceil(K / TILE_K)))``. The fraction of peak a contraction reaches is

    efficiency = M * N * K * G / (waves * SMs * TILE_M * TILE_N * ceil(K / splits))

(1.0 for shapes that fill every tile and every wave). The libraries choose the tile per shape; the prior takes
the best-quantising of :data:`LIBRARY_TILES` (:func:`library_tile_efficiency`). A matrix product with a matrix
``(..., m, k) x (k, n)`` (a weight) is one GEMM over the flattened leading dimensions (``M = prod(...) x m``).
Small-``N`` grouped convolutions (depthwise) are not run as GEMMs on tensor cores: :func:`runs_as_gemm` sends
them to the vector path at full efficiency.

**Bandwidth fraction by bytes moved.** A memory-bound kernel pays a fixed ramp (fill and drain of the memory
pipeline, the tail of the last wave) before streaming at the sustained rate, so its time is
``bytes / (f_max * BW) + t_ramp``. Written as a fraction of the sustained rate that rises with the bytes:

    fraction(bytes) = f_max * bytes / (bytes + B_half),   B_half = f_max * BW * t_ramp

(half the sustained rate at ``B_half`` bytes). ``t_ramp`` is estimated (see ``BANDWIDTH_RAMP_S``) and can be
fitted (:mod:`estimator.energy.prior_fit`).

**Precision as the runtime executes it** (:data:`TF32_BY_RUNTIME`): float32 contractions run on the TF32 tensor
cores only where the runtime enables TF32 for that op class; otherwise on the FP32 CUDA cores. A device without
TF32 units (before Ampere) has no ``fp32_matrix`` rate in its profile and runs FP32 on the vector path anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from estimator.cost.kernels import Kernel, KernelReport
from estimator.graph.contrib_shapes import ONNX_DOMAIN

#: Output tile of one thread block (elements). cuBLAS's typical tiles on Ampere and Hopper are 256x128 and
#: 128x128 (Matrix Multiplication Background User's Guide, sec. 2.3); 128x128 is the one used here.
TILE_M = 128
TILE_N = 128
#: Output tiles the libraries choose between for one GEMM (elements). The Matrix Multiplication Background
#: User's Guide (DU-09799-001, sec. 2.3 and ch. 3) lists 256x128, 128x128, 128x64, 64x128 and 64x64 among
#: cuBLAS's tiles, chosen per shape; the three middle ones are taken (larger tiles reuse more data, smaller ones
#: quantise less: the largest and smallest are left out as rarely the best choice - estimated).
LIBRARY_TILES = ((128, 128), (128, 64), (64, 128))
#: Depth of one K step of a tile (elements); split-K never splits finer than this.
TILE_K = 128
#: Fixed time a memory-bound kernel loses before streaming at the sustained rate, s. Estimated: the
#: latency of the first DRAM accesses (~0.5-1 us under load) plus the drain of the last wave; fittable.
BANDWIDTH_RAMP_S = 1.0e-6

_CONV_OPS = frozenset(
    {"Conv", "ConvTranspose", "QLinearConv", "ConvInteger", "FusedConv", "NhwcConv", "DeformConv"}
)
#: Smallest per-group N and K that libraries run as a tensor-core GEMM (an MMA is 16 wide on Ampere).
_MIN_GEMM_DIM = 16


@dataclass(frozen=True)
class GemmShape:
    """A contraction as ``groups`` independent GEMMs of ``m x n x k`` (elements), and its op class."""

    m: int
    n: int
    k: int
    groups: int
    op_class: str  # "conv" or "matmul"

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the GEMMs."""
        return self.m * self.n * self.k * self.groups


def tile_wave_efficiency(shape: GemmShape, sms: int, tile: tuple[int, int] = (TILE_M, TILE_N)) -> float:
    """Fraction of the dense peak a GEMM of ``shape`` reaches on ``sms`` SMs with output tiles of ``tile``
    (module docstring, 0 < e <= 1)."""
    tile_m, tile_n = tile
    tiles = math.ceil(shape.m / tile_m) * math.ceil(shape.n / tile_n) * shape.groups
    splits = max(1, min(sms // tiles, math.ceil(shape.k / TILE_K))) if tiles < sms else 1
    waves = math.ceil(tiles * splits / sms)
    occupied = waves * sms * tile_m * tile_n * math.ceil(shape.k / splits)
    return min(1.0, shape.macs / occupied)


def library_tile_efficiency(shape: GemmShape, sms: int) -> float:
    """Tile and wave efficiency of the best of the library's tiles (:data:`LIBRARY_TILES`) for ``shape``:
    cuBLAS and cuDNN choose a tile per shape by heuristics, which avoid a half-empty last wave where a
    narrower tile fills it; the heuristics are not public, so the best quantisation stands for them."""
    return max(tile_wave_efficiency(shape, sms, tile) for tile in LIBRARY_TILES)


def bandwidth_fraction(
    nbytes: np.ndarray | float, bandwidth: float, f_max: float, ramp_s: float
) -> np.ndarray:
    """Fraction of the quoted DRAM bandwidth a kernel moving ``nbytes`` reaches (module docstring).

    Args:
        nbytes: bytes the kernel moves beyond L1.
        bandwidth: quoted DRAM bandwidth, B/s.
        f_max: sustained fraction for large transfers (the profile's ``achievable_bandwidth_fraction``).
        ramp_s: fixed ramp time, s.
    """
    nbytes = np.asarray(nbytes, dtype=np.float64)
    half = f_max * bandwidth * ramp_s
    return f_max * nbytes / (nbytes + half) if half > 0 else np.full(nbytes.shape, f_max)


def runs_as_gemm(shape: GemmShape) -> bool:
    """Whether libraries run the contraction as a tiled GEMM (per-group N and K at least one MMA wide)."""
    return shape.n >= _MIN_GEMM_DIM and shape.k >= _MIN_GEMM_DIM


def gemm_shape(kernels: KernelReport, kernel: Kernel) -> GemmShape | None:
    """The GEMM of a contraction kernel's anchor node, from its output shape and MACs; None when unknown.

    Convolutions (NCHW; NhwcConv channel-last): ``M = batch x output pixels``, ``N = C_out / group``,
    ``G = group``; matrix products: ``M, N`` the last two output dimensions, ``G`` the product of the leading
    ones, except that a product whose second operand is one matrix (rank 2, or a stored weight such as a
    weight-only quantised one) is one GEMM whose ``M`` is the product of every output dimension but the last.
    ``K = MACs / (M N G)`` in both cases, so the count stays the cost engine's. An ONNX ``Attention`` node
    (opset 23) is its ``Q K^T`` (:func:`_attention_scores_shape`), as the first product of an unfused chain is.
    """
    report = kernels.costs
    graph = report.graph
    for i in kernel.nodes:
        node = report.nodes[i]
        if node.status != "costed" or node.macs <= 0:
            continue
        gn = graph.nodes[i]
        if node.op_type == "Attention" and gn.domain == ONNX_DOMAIN:
            return _attention_scores_shape(graph, gn)
        out = graph.tensor(gn.outputs[0]) if gn.outputs and gn.outputs[0] else None
        if out is None or out.shape is None or not out.shape:
            return None
        dims = list(map(int, out.shape))
        if node.op_type in _CONV_OPS:
            if len(dims) < 3:
                return None
            group = int(gn.attributes.get("group", 1) or 1)
            channels = dims[-1] if node.op_type == "NhwcConv" else dims[1]
            pixels = dims[0] * _prod(dims[1:-1] if node.op_type == "NhwcConv" else dims[2:])
            m, n, g, op_class = pixels, max(channels // group, 1), group, "conv"
        else:
            m = dims[-2] if len(dims) >= 2 else 1
            n = dims[-1]
            g = _prod(dims[:-2]) if len(dims) > 2 else 1
            if g > 1 and _second_operand_is_a_matrix(graph, gn):
                # (..., m, k) x (k, n): one GEMM over the flattened leading dimensions (what torch.matmul and
                # nn.Linear do with a weight), not a batch of small ones.
                m, g = m * g, 1
            op_class = "matmul"
        if m <= 0 or n <= 0 or g <= 0:
            return None
        k = max(1, round(node.macs / (m * n * g)))
        return GemmShape(m, n, k, g, op_class)
    return None


def _attention_scores_shape(graph, node) -> GemmShape | None:
    """The ``Q K^T`` GEMM of an ONNX ``Attention`` node (opset 23): ``M`` = query length, ``N`` = attended length
    (past + new), ``K`` = query head size, ``G`` = batch x query heads; None when a shape is unknown.

    A fused attention kernel tiles its score matrix as a chain of ``MatMul``, ``Softmax`` and ``MatMul`` does
    (whose first ``MatMul`` is the shape :func:`gemm_shape` reads): ``Q K^T`` and ``P V`` share ``M`` and the
    ``N`` blocks, and FlashAttention-2 runs one thread block per block of query rows of one head.
    """

    def heads_length_size(index: int, heads_attr: str) -> tuple[int, int, int] | None:
        name = node.inputs[index] if len(node.inputs) > index else ""
        tensor = graph.tensor(name) if name else None
        if tensor is None or tensor.shape is None:
            return None
        dims = list(map(int, tensor.shape))
        if len(dims) == 4:
            return dims[1], dims[2], dims[3]
        heads = int(node.attributes.get(heads_attr, 0) or 0)
        if len(dims) != 3 or heads <= 0 or dims[2] % heads:
            return None
        return heads, dims[1], dims[2] // heads

    query = heads_length_size(0, "q_num_heads")
    key = heads_length_size(1, "kv_num_heads")
    name = node.inputs[0] if node.inputs else ""
    tensor = graph.tensor(name) if name else None
    if query is None or key is None or tensor is None or not tensor.shape:
        return None
    past = heads_length_size(4, "kv_num_heads") if len(node.inputs) > 4 and node.inputs[4] else (0, 0, 0)
    if past is None:
        return None
    heads, q_len, head_size = query
    batch = int(tensor.shape[0])
    m, n, g = q_len, past[1] + key[1], batch * heads
    if min(m, n, g, head_size) <= 0:
        return None
    return GemmShape(m, n, head_size, g, "matmul")


def _prod(dims: list[int]) -> int:
    """``int(np.prod(dims))`` (int64 arithmetic, which wraps beyond 2**63) without a numpy call per kernel."""
    p = math.prod(dims)
    return p if -_INT64 <= p < _INT64 else int(np.prod(dims))


_INT64 = 1 << 63


def _second_operand_is_a_matrix(graph, node) -> bool:
    """Whether a matrix product's second input is one matrix shared by every leading index: rank 2, or a stored
    weight (packed quantised weights such as MatMulNBits' are rank 3 but still one matrix)."""
    if len(node.inputs) < 2 or not node.inputs[1]:
        return False
    name = node.inputs[1]
    tensor = graph.tensor(name)
    rank = None if tensor is None or tensor.shape is None else len(tensor.shape)
    return rank == 2 or (node.op_type != "MatMul" and graph.is_constant(name))


@dataclass(frozen=True)
class Tf32Policy:
    """Whether a runtime runs float32 contractions of each op class on TF32 tensor cores, and why."""

    matmul: bool
    conv: bool
    source: str


_TORCH = (
    "PyTorch >= 1.12: torch.backends.cuda.matmul.allow_tf32 defaults to False (full FP32 matmuls), "
    "torch.backends.cudnn.allow_tf32 defaults to True (TF32 convolutions); PyTorch docs, CUDA semantics, "
    "'TensorFloat-32 (TF32) on Ampere (and later) devices'. PyTorch 1.7-1.11 also ran matmuls in TF32."
)
#: TF32 use per runtime (float32 graphs on a GPU with TF32 units). Runtimes not listed run full FP32.
TF32_BY_RUNTIME: dict[str, Tf32Policy] = {
    "pytorch-cuda": Tf32Policy(matmul=False, conv=True, source=_TORCH),
    "pytorch-cuda-sdpa": Tf32Policy(matmul=False, conv=True, source=_TORCH),
    "hf-pipeline": Tf32Policy(matmul=False, conv=True, source=_TORCH),
    "tensorflow-gpu": Tf32Policy(
        matmul=True,
        conv=True,
        source="TensorFlow >= 2.4: 'TensorFloat-32 is enabled by default' for matmuls and convolutions "
        "(tf.config.experimental.enable_tensor_float_32_execution; TF RFC 20200903-tensor-float-32-default)",
    ),
    "tensorflow-xla-gpu": Tf32Policy(
        matmul=True,
        conv=True,
        source="TensorFlow >= 2.4 enables TF32 for matmuls and convolutions by default, XLA-compiled ones "
        "included (tf.config.experimental.enable_tensor_float_32_execution)",
    ),
    "onnxruntime-cuda": Tf32Policy(
        matmul=True,
        conv=True,
        source="ONNX Runtime CUDA EP: provider option use_tf32 defaults to true, 'By default, enable TF32 to speed "
        "up float GEMM/MatMul or cuDNN convolution of float matrices' (github.com/microsoft/onnxruntime, "
        "onnxruntime/core/providers/cuda/cuda_execution_provider_info.h)",
    ),
    "tensorrt": Tf32Policy(
        matmul=True,
        conv=True,
        source="TensorRT Python API, tensorrt.BuilderFlag.TF32: 'Allow (but not require) computations on tensors "
        "of type DataType.FLOAT to use TF32 ... Enabled by default' (docs.nvidia.com/deeplearning/tensorrt, "
        "api/python_api/infer/Core/NetworkConfig.html)",
    ),
}


def uses_tf32(runtime_name: str, op_class: str) -> bool:
    """Whether ``runtime_name`` runs a float32 contraction of ``op_class`` (conv / matmul) in TF32."""
    policy = TF32_BY_RUNTIME.get(runtime_name)
    if policy is None:
        return False
    return policy.conv if op_class == "conv" else policy.matmul
