"""Cost rules for Resize (opsets 10, 11, 13, 18, 19) and Upsample (opsets 7, 9). No MACs.

Only the data input ``X`` is read as data: ``roi``, ``scales`` and ``sizes`` (inputs 1-3 of Resize from
opset 11; ``scales``, input 1, of Resize-10 and Upsample-9) are metadata. The output shape, which ONNX
shape inference derives from ``scales``/``sizes``/``axes``/``keep_aspect_ratio_policy``, is what the
cost is computed from, so one rule serves every opset.

FLOPs per output element, for the ``d`` dimensions whose size changes (the *interpolated* dimensions)
with ``t_1..t_d`` filter taps each: a separable filter evaluated dimension by dimension costs
``sum_j (2 * t_j - 1) * prod_{i > j} t_i`` (``t`` multiplies and ``t - 1`` additions per 1-D
interpolation, repeated for every tap combination of the dimensions still to be reduced).

* ``nearest``: 0 FLOPs (a gather/copy; index arithmetic is not counted).
* ``linear`` (``t = 2``): 3 FLOPs for one interpolated dimension, 9 for bilinear, 21 for trilinear.
* ``cubic`` (``t = 4``): 7 FLOPs for one dimension, 35 for bicubic.
* ``antialias = 1`` (opset 18) when downscaling by ``s < 1``: the filter is stretched by ``1/s``, so a
  dimension has ``t * ceil(in / out)`` taps.

A dimension whose size does not change is copied (0 FLOPs).
"""

from __future__ import annotations

import math

from estimator.cost.ops.base import NodeContext, OpCost, register
from estimator.errors import GraphStructureError

#: Filter taps per interpolated dimension for each interpolation mode.
TAPS = {"nearest": 0, "linear": 2, "bilinear": 2, "cubic": 4}


def separable_filter_flops(taps: list[int]) -> int:
    """FLOPs of one output element of a separable filter with ``taps[j]`` taps in dimension ``j``."""
    total = 0
    for j, t in enumerate(taps):
        total += (2 * t - 1) * math.prod(taps[j + 1 :])
    return total


def interpolation_flops_per_output(
    in_shape: tuple[int, ...], out_shape: tuple[int, ...], mode: str, antialias: bool = False
) -> int:
    """FLOPs per output element of resizing ``in_shape`` to ``out_shape`` with ``mode`` (module docstring).

    Raises:
        GraphStructureError: for an unknown mode or shapes of different rank.
    """
    if mode not in TAPS:
        raise GraphStructureError(f"unknown resize mode '{mode}'; expected one of {sorted(TAPS)}")
    if len(in_shape) != len(out_shape):
        raise GraphStructureError(
            f"resize input shape {in_shape} and output shape {out_shape} differ in rank"
        )
    base = TAPS[mode]
    if base == 0:
        return 0
    taps = []
    for size_in, size_out in zip(in_shape, out_shape, strict=True):
        if size_in == size_out:
            continue
        stretch = math.ceil(size_in / size_out) if antialias and size_out < size_in else 1
        taps.append(base * stretch)
    return separable_filter_flops(taps)


def _mode(ctx: NodeContext) -> str:
    mode = ctx.attr("mode", "nearest")
    return mode.decode() if isinstance(mode, bytes) else str(mode)


@register("Resize", since=10)
def resize(ctx: NodeContext) -> OpCost:
    """Resize (every opset): per-output interpolation FLOPs; only X is read as data."""
    per_output = interpolation_flops_per_output(
        ctx.in_shape(0), ctx.out_shape(0), _mode(ctx), antialias=bool(ctx.attr("antialias", 0))
    )
    return OpCost(flops=per_output * ctx.out_numel(0), data_inputs=(0,))


@register("Upsample", since=7)
def upsample(ctx: NodeContext) -> OpCost:
    """Upsample (7: scales attribute, 9: scales input): as Resize; only X is read as data."""
    per_output = interpolation_flops_per_output(ctx.in_shape(0), ctx.out_shape(0), _mode(ctx))
    return OpCost(flops=per_output * ctx.out_numel(0), data_inputs=(0,))
