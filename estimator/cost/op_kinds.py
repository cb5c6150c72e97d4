"""The op kinds kernel fusion reads: contractions anchor epilogue fusion, elementwise ops join their
neighbours, reductions take an elementwise epilogue (see :mod:`estimator.cost.kernels`)."""

from __future__ import annotations

from estimator.cost.ops.elementwise import FLOPS_PER_ELEMENT

#: Ops whose main work is a contraction (matrix multiply / convolution); they anchor epilogue fusion.
CONTRACTION_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        "Einsum",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "FusedMatMul",
        "FusedConv",
        "FusedGemm",
        "MatMulNBits",
        "GemmFastGelu",
        "NhwcConv",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "Attention",
        "MultiHeadAttention",
        "GroupQueryAttention",
    }
)
#: Ops that apply the same function to every element (fusible as prologue/epilogue of neighbours).
ELEMENTWISE_OPS = frozenset(FLOPS_PER_ELEMENT) | frozenset(
    {
        "Sum",
        "Max",
        "Min",
        "Mean",
        "Clip",
        "Gelu",
        "PRelu",
        "Where",
        "Cast",
        "CastLike",
        "BatchNormalization",
        "QuantizeLinear",
        "DequantizeLinear",
        "BiasGelu",
        "FastGelu",
        "QuickGelu",
        "BiasAdd",
        "Dropout",
    }
)
#: Ops that reduce along an axis and can take an elementwise epilogue.
REDUCTION_OPS = frozenset(
    {
        "Softmax",
        "LogSoftmax",
        "LayerNormalization",
        "SkipLayerNormalization",
        "SimplifiedLayerNormalization",
        "SkipSimplifiedLayerNormalization",
        "RMSNormalization",
        "GroupNormalization",
        "InstanceNormalization",
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceSumSquare",
        "GlobalAveragePool",
        "GlobalMaxPool",
    }
)
