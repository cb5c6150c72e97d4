"""Cost rules for data-movement ops of the ONNX default domain: copies, layouts, fills. FLOPs 0 unless noted.

Each op here is a kernel that reads its data inputs and writes its outputs (runtimes copy; unlike PyTorch
they do not return strided views). Shape/index metadata inputs -- Slice's starts/ends/axes/steps, Split's
``split``, Pad's ``pads``/``axes``, Tile's ``repeats``, Expand's ``shape``, Trilu's ``k``, Col2Im's
shapes, CenterCropPad's ``shape`` -- are not data. The signature changes across opsets (Slice 1 -> 10
attributes to inputs, Split 13 ``split`` input and 18 ``num_outputs``, Pad 11 ``pads`` input and 18
``axes``) move only metadata, so one rule per op reads every form: costs come from the inferred shapes.

Bytes that differ from "read every data input whole, write every output":

* ``Slice`` reads only the selected elements (``numel(output)``, capped at the input).
* ``CenterCropPad`` reads only the kept centre, ``prod(min(in_d, out_d))`` elements.
* ``ConstantOfShape`` (when not constant-folded) and ``EyeLike`` are fills: they read nothing (EyeLike
  uses its input's shape only) and write their output.
* ``Range`` reads three scalars (metadata) and writes its output; 2 FLOPs per element
  (``start + i * delta``).
* ``Pad`` reads its whole input (negative pads, i.e. cropping, are rare and are not subtracted), in every
  mode (constant/reflect/edge/wrap).
* ``GridSample`` gathers ``2^d`` (linear) or ``4^d`` (cubic) input points per output element, 1 for
  nearest, with ``d`` the spatial rank: the input read is that many elements per output element, capped
  at the input. Each weighted point is a MAC; per grid point the coordinate math is ``4 d`` FLOPs
  (unnormalise mul+add, floor, fraction) and the interpolation weights ``corners * d``.
* ``Col2Im`` adds each column element into the image: 1 FLOP per input element.

Parameters: a constant floating-point data input with more than one element that is moved at run time
(a ViT class token concatenated to the patches, a table sliced by a dynamic end) is a learned weight
(:func:`estimator.cost.ops.elementwise.weight_like_inputs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from estimator.cost.ops.base import NodeContext, OpCost, numel, register
from estimator.cost.ops.elementwise import weight_like_inputs
from estimator.dtypes import storage_bytes
from estimator.errors import GraphStructureError

#: FLOPs per element of Range: ``start + i * delta``.
RANGE_FLOPS = 2
#: GridSample interpolation points per output element per spatial dimension, by mode
#: (opset 16 names bilinear/bicubic; opset 20 renamed them linear/cubic for N-D).
GRID_SAMPLE_POINTS_PER_DIM: Mapping[str, int] = MappingProxyType(
    {"nearest": 1, "bilinear": 2, "linear": 2, "bicubic": 4, "cubic": 4}
)
#: GridSample FLOPs per coordinate per grid point: unnormalise (mul, add), floor, fraction.
GRID_COORDINATE_FLOPS = 4


def _bytes_of(ctx: NodeContext, i: int, elements: int) -> int:
    info = ctx.inputs[i]
    return storage_bytes(elements, info.dtype if info is not None else "undefined")


def _copy(data_inputs: tuple[int, ...] | None):
    """A rule that reads ``data_inputs`` whole and writes every output; 0 FLOPs."""

    def rule(ctx: NodeContext) -> OpCost:
        positions = data_inputs if data_inputs is not None else range(len(ctx.inputs))
        return OpCost(data_inputs=data_inputs, param_inputs=weight_like_inputs(ctx, positions))

    return rule


#: Copy-like op -> its data input positions (``None``: every present input). Everything else is metadata.
COPY_OPS: Mapping[str, tuple[int, ...] | None] = MappingProxyType(
    {
        "Concat": None,
        "Transpose": (0,),
        "Split": (0,),
        "Tile": (0,),
        "Expand": (0,),
        "Pad": (0,),
        "DepthToSpace": (0,),
        "SpaceToDepth": (0,),
        "Trilu": (0,),
        "ReverseSequence": (0, 1),
    }
)

for _op, _inputs in COPY_OPS.items():
    register(_op, since=1)(_copy(_inputs))


@register("Slice", since=1)
def slice_(ctx: NodeContext) -> OpCost:
    """Slice: reads the selected ``numel(output)`` elements (capped at the input), writes them."""
    read = min(_bytes_of(ctx, 0, ctx.out_numel(0)), _bytes_of(ctx, 0, ctx.in_numel(0)))
    return OpCost(data_inputs=(0,), read_bytes={0: read}, param_inputs=weight_like_inputs(ctx, (0,)))


@register("CenterCropPad", since=18)
def center_crop_pad(ctx: NodeContext) -> OpCost:
    """CenterCropPad: reads the kept centre ``prod(min(in_d, out_d))``, writes the output."""
    kept = numel(min(i, o) for i, o in zip(ctx.in_shape(0), ctx.out_shape(0), strict=True))
    return OpCost(
        data_inputs=(0,), read_bytes={0: _bytes_of(ctx, 0, kept)}, param_inputs=weight_like_inputs(ctx, (0,))
    )


@register(["ConstantOfShape", "EyeLike"], since=1)
def fill(ctx: NodeContext) -> OpCost:
    """ConstantOfShape/EyeLike: a fill kernel; reads nothing, writes the output."""
    return OpCost(data_inputs=(), param_inputs=())


@register("Range", since=11)
def range_(ctx: NodeContext) -> OpCost:
    """Range: ``start + i * delta`` per element (2 FLOPs); the scalar inputs are metadata."""
    return OpCost(flops=RANGE_FLOPS * ctx.out_numel(0), data_inputs=(), param_inputs=())


@register("GridSample", since=16)
def grid_sample(ctx: NodeContext) -> OpCost:
    """GridSample: ``points = k^d`` MACs per output element (k = 1/2/4 for nearest/linear/cubic)."""
    mode = str(ctx.attr("mode", "bilinear" if ctx.opset < 20 else "linear"))
    if mode not in GRID_SAMPLE_POINTS_PER_DIM:
        raise GraphStructureError(f"{ctx.where()}: unknown mode '{mode}'")
    spatial = len(ctx.in_shape(0)) - 2
    if spatial < 1:
        raise GraphStructureError(f"{ctx.where()}: input rank {spatial + 2} has no spatial dimensions")
    points = GRID_SAMPLE_POINTS_PER_DIM[mode] ** spatial
    outputs = ctx.out_numel(0)
    grid_points = ctx.in_numel(1) // spatial
    macs = 0 if points == 1 else outputs * points
    flops = 2 * macs + grid_points * (GRID_COORDINATE_FLOPS * spatial + (points * spatial if macs else 0))
    read = min(_bytes_of(ctx, 0, outputs * points), _bytes_of(ctx, 0, ctx.in_numel(0)))
    return OpCost(macs=macs, flops=flops, read_bytes={0: read}, param_inputs=())


@register("Col2Im", since=18)
def col2im(ctx: NodeContext) -> OpCost:
    """Col2Im: adds each column element into the image, 1 FLOP per input element."""
    return OpCost(flops=ctx.in_numel(0), data_inputs=(0,), param_inputs=())
