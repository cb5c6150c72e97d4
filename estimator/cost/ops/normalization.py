"""Cost rules for normalisation ops (ONNX default domain). No MACs: all arithmetic is in ``flops``.

Per-element FLOPs (``E`` = elements of the input, ``G`` = number of normalised groups, i.e. rows of a
LayerNorm, (n, group) pairs of a GroupNorm, (n, channel) pairs of an InstanceNorm):

=============================  ================================================================  ==========
op                             per element                                                       per group
=============================  ================================================================  ==========
BatchNormalization, inference  2: ``x * s + b`` with scale and shift folded from the statistics   --
BatchNormalization, training   6: mean (1), ``x - mean``, square, accumulate (3), scale+shift (2)  --
LayerNormalization             4 statistics + 1 normalise + 1 scale (+1 bias when B is present)   3
GroupNormalization             4 statistics + 1 normalise + 1 scale + 1 bias                      3
InstanceNormalization          4 statistics + 1 normalise + 1 scale + 1 bias                      3
MeanVarianceNormalization      4 statistics + 1 normalise                                         3
RMSNormalization               2 (square, accumulate) + 1 normalise + 1 scale                     3
LpNormalization                3: ``|x|`` or ``x^2``, accumulate, divide                          1 (p=2)
LRN                            ``size + 4``: square, ``size-1`` window adds, ``*alpha/size``,    --
                               ``+bias``, ``^beta``, divide
=============================  ================================================================  ==========

"4 statistics" = a sum for the mean, ``x - mean``, its square, and a sum for the variance. The per-group
3 FLOPs are the divisions by the group size and the ``1/sqrt(var + eps)``. Per-channel work of a batch
normalisation (folding its statistics into the scale, training-mode running averages) is counted as
:data:`BN_PER_CHANNEL_FLOPS` per channel.

Parameters: BatchNormalization's ``scale`` and ``B`` (inputs 1, 2) -- its running mean and variance
(3, 4) are read but are not learned parameters; LayerNorm/GroupNorm/InstanceNorm's scale and bias;
RMSNormalization's scale.
"""

from __future__ import annotations

from estimator.cost.ops.base import NodeContext, OpCost, numel, register
from estimator.errors import GraphStructureError

#: Per-element FLOPs of mean and variance: sum, subtract mean, square, sum.
STATS_FLOPS = 4
#: Per-group FLOPs: mean = sum / n, var = sum / n, 1 / sqrt(var + eps) (counted as one).
PER_GROUP_FLOPS = 3
#: Per-channel FLOPs of BatchNormalization: fold the statistics into scale and shift (add eps, rsqrt,
#: multiply, multiply-subtract) -- or, in training, update the running mean and variance.
BN_PER_CHANNEL_FLOPS = 4
#: Inference batch normalisation per element: one multiply and one add.
BN_INFERENCE_FLOPS = 2
#: Training batch normalisation per element: statistics (4) and the folded scale and shift (2).
BN_TRAINING_FLOPS = STATS_FLOPS + BN_INFERENCE_FLOPS


def _groups(ctx: NodeContext, normalised_axes: tuple[int, ...]) -> tuple[int, int]:
    """(elements, groups) of input 0 when the statistics run over ``normalised_axes``."""
    shape = ctx.in_shape(0)
    rank = len(shape)
    axes = {a + rank if a < 0 else a for a in normalised_axes}
    if any(a < 0 or a >= rank for a in axes):
        raise GraphStructureError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): axes {normalised_axes} are out of range "
            f"for an input of rank {rank}"
        )
    elements = numel(shape)
    reduced = numel(shape[a] for a in axes)
    return elements, elements // reduced if reduced else 0


def _is_training(ctx: NodeContext) -> bool:
    """Whether a BatchNormalization computes batch statistics (training mode)."""
    if ctx.opset >= 14:
        return bool(ctx.attr("training_mode", 0))
    # Before opset 14 the optional outputs (running mean/var, saved mean/var) exist only in training.
    return any(name for name in ctx.node.outputs[1:])


@register("BatchNormalization", since=1)
def batch_normalization(ctx: NodeContext) -> OpCost:
    """BatchNormalization: 2 FLOPs/element at inference, 6 in training mode, + 4 per channel."""
    shape = ctx.in_shape(0)
    channels = shape[1] if len(shape) > 1 else 1
    per_element = BN_TRAINING_FLOPS if _is_training(ctx) else BN_INFERENCE_FLOPS
    flops = per_element * numel(shape) + BN_PER_CHANNEL_FLOPS * channels
    return OpCost(flops=flops, param_inputs=(1, 2))


@register("LayerNormalization", since=17)
def layer_normalization(ctx: NodeContext) -> OpCost:
    """LayerNormalization: statistics over axes ``[axis, rank)``; 6 FLOPs/element (+1 with B), 3/row."""
    rank = len(ctx.in_shape(0))
    axis = int(ctx.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    elements, groups = _groups(ctx, tuple(range(axis, rank)))
    has_bias = ctx.has_input(2)
    per_element = STATS_FLOPS + 1 + 1 + (1 if has_bias else 0)
    flops = per_element * elements + PER_GROUP_FLOPS * groups
    return OpCost(flops=flops, param_inputs=(1, 2) if has_bias else (1,))


@register("GroupNormalization", since=18)
def group_normalization(ctx: NodeContext) -> OpCost:
    """GroupNormalization (18: per-group, 21: per-channel affine): 7 FLOPs/element, 3 per (n, group)."""
    shape = ctx.in_shape(0)
    num_groups = int(ctx.attr("num_groups", 1))
    if num_groups <= 0 or len(shape) < 2 or shape[1] % num_groups:
        raise GraphStructureError(
            f"node '{ctx.node.name}' (GroupNormalization): num_groups={num_groups} does not divide the "
            f"{shape[1] if len(shape) > 1 else '?'} channels of input shape {shape}"
        )
    elements = numel(shape)
    groups = shape[0] * num_groups
    flops = (STATS_FLOPS + 3) * elements + PER_GROUP_FLOPS * groups
    return OpCost(flops=flops, param_inputs=(1, 2))


@register("InstanceNormalization", since=1)
def instance_normalization(ctx: NodeContext) -> OpCost:
    """InstanceNormalization: statistics per (n, channel); 7 FLOPs/element, 3 per (n, channel)."""
    rank = len(ctx.in_shape(0))
    elements, groups = _groups(ctx, tuple(range(2, rank)))
    flops = (STATS_FLOPS + 3) * elements + PER_GROUP_FLOPS * groups
    return OpCost(flops=flops, param_inputs=(1, 2))


@register("MeanVarianceNormalization", since=9)
def mean_variance_normalization(ctx: NodeContext) -> OpCost:
    """MeanVarianceNormalization (axes default [0, 2, 3]): 5 FLOPs/element, 3 per group."""
    axes = tuple(int(a) for a in ctx.attr("axes", (0, 2, 3)))
    elements, groups = _groups(ctx, axes)
    return OpCost(flops=(STATS_FLOPS + 1) * elements + PER_GROUP_FLOPS * groups)


@register("RMSNormalization", since=23)
def rms_normalization(ctx: NodeContext) -> OpCost:
    """RMSNormalization: mean of squares over ``[axis, rank)``; 4 FLOPs/element, 3 per row."""
    rank = len(ctx.in_shape(0))
    axis = int(ctx.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    elements, groups = _groups(ctx, tuple(range(axis, rank)))
    flops = 4 * elements + PER_GROUP_FLOPS * groups
    return OpCost(flops=flops, param_inputs=(1,))


@register("LpNormalization", since=1)
def lp_normalization(ctx: NodeContext) -> OpCost:
    """LpNormalization: 3 FLOPs/element, +1 square root per row when p = 2."""
    axis = int(ctx.attr("axis", -1))
    elements, groups = _groups(ctx, (axis,))
    p = int(ctx.attr("p", 2))
    return OpCost(flops=3 * elements + (groups if p == 2 else 0))


@register("LRN", since=1)
def lrn(ctx: NodeContext) -> OpCost:
    """LRN across channels: ``size + 4`` FLOPs per element (the ``^beta`` counted as one)."""
    size = int(ctx.attr("size", 1))
    return OpCost(flops=(size + 4) * ctx.in_numel(0))
