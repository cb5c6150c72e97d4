"""The feature schema of the learned correction: op categories and :data:`FEATURE_NAMES`, the one source of
column order of every feature matrix (trained models record it in their sidecar and refuse another)."""

from __future__ import annotations

from estimator.energy.runtimes import RUNTIMES

#: Node op types counted per category (counts and FLOPs of each category are features).
OP_CATEGORIES: dict[str, frozenset[str]] = {
    "conv": frozenset({"Conv", "ConvTranspose", "QLinearConv", "ConvInteger", "FusedConv", "NhwcConv"}),
    "matmul": frozenset(
        {
            "Gemm",
            "MatMul",
            "FusedMatMul",
            "QLinearMatMul",
            "MatMulInteger",
            "Einsum",
            "MatMulNBits",
            "FusedGemm",
        }
    ),
    "pool": frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"}),
    "norm": frozenset(
        {
            "BatchNormalization",
            "LayerNormalization",
            "GroupNormalization",
            "InstanceNormalization",
            "RMSNormalization",
            "SkipLayerNormalization",
            "SimplifiedLayerNormalization",
        }
    ),
    "activation": frozenset(
        {
            "Relu",
            "Sigmoid",
            "Tanh",
            "Gelu",
            "Erf",
            "LeakyRelu",
            "HardSwish",
            "HardSigmoid",
            "Clip",
            "Elu",
            "Selu",
            "Softplus",
            "Mish",
            "PRelu",
            "FastGelu",
            "BiasGelu",
        }
    ),
    "binary": frozenset({"Add", "Sub", "Mul", "Div", "Sum", "Pow", "Max", "Min", "Mean", "Where"}),
    "softmax": frozenset({"Softmax", "LogSoftmax"}),
    "movement": frozenset(
        {
            "Concat",
            "Transpose",
            "Slice",
            "Split",
            "Gather",
            "Pad",
            "Tile",
            "Expand",
            "Resize",
            "DepthToSpace",
            "SpaceToDepth",
            "Cast",
        }
    ),
}
_KINDS = ("contraction", "attention", "elementwise", "reduction", "other")
_LEVEL_SLOTS = 4  # L1, L2, L3 (0 where absent), DRAM
# The runtimes with a one-hot column, frozen so that adding a runtime to RUNTIMES does not change the schema of
# the shipped models; a runtime outside it (tensorflow-gpu, hf-pipeline) has all its runtime columns at 0
# until the schema is extended with a retrain.
_RUNTIME_NAMES = (
    "onnxruntime",
    "onnxruntime-cpu",
    "onnxruntime-cuda",
    "pytorch-cpu",
    "pytorch-cuda",
    "tensorrt",
    "tflite",
    "torchscript-mobile",
)
assert set(_RUNTIME_NAMES) <= set(RUNTIMES)

#: Column order of every feature matrix. Change it only with a retrain: sidecars record it.
FEATURE_NAMES: tuple[str, ...] = (
    # work (log1p)
    "log_flops",
    "log_weight_bytes",
    "log_activation_read_bytes",
    "log_write_bytes",
    "log_launches",
    *(f"log_kernels_{k}" for k in _KINDS),
    *(f"log_{c}_nodes" for c in OP_CATEGORIES),
    *(f"log_{c}_flops" for c in OP_CATEGORIES),
    "log_conv_kernel_elems_flop_weighted",
    "matrix_flops_share",
    "log_arith_intensity",
    # dead code a graph compiler can remove (work whose result is multiplied by zero)
    "dead_flops_share",
    "log_live_flops",
    "log_live_launches",
    # cache hierarchy (BUTTER-E)
    *(f"log_bytes_level{i}" for i in range(_LEVEL_SLOTS)),
    "share_bytes_beyond_level0",
    "share_bytes_beyond_level1",
    "share_bytes_dram",
    *(f"log_kernels_at_level{i}" for i in range(_LEVEL_SLOTS)),
    "log_weights_over_level0",
    "log_weights_over_level1",
    "log_weights_over_llc",
    "log_peak_live_over_llc",
    "model_level",
    "log_peak_live_bytes",
    # physics prior
    "log_prior_joules",
    "log_prior_seconds",
    "log_prior_compute_joules",
    "log_prior_memory_joules",
    "log_prior_static_joules",
    "share_time_compute_bound",
    "share_time_memory_bound",
    "share_time_launch_bound",
    # configuration
    "log_batch",
    "dtype_bits",
    "log_threads",
    "log_input_elements_per_sample",
    # hardware
    "log_peak_vector_flops",
    "log_peak_matrix_flops",
    "log_dram_bandwidth",
    "log_level0_bytes",
    "log_level1_bytes",
    "log_llc_bytes",
    "tdp_w",
    "static_w",
    "idle_w",
    "log_compute_units",
    "is_gpu",
    # runtime
    *(f"runtime_{r}" for r in _RUNTIME_NAMES),
)
