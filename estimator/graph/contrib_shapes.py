"""Output shapes of ONNX Runtime's contrib ops, which ONNX's own shape inference does not know.

:func:`infer_contrib_outputs` is what the graph loader calls for a node whose outputs ONNX left unshaped.
Each rule in :data:`CONTRIB_SHAPE_RULES` maps ``(attrs, in_shapes, in_dtypes, in_values)`` to one
``(shape, dtype)`` per output, following the shape inference of the op's schema in ONNX Runtime
(``onnxruntime/core/graph/contrib_ops``); a ``None`` shape means the shape cannot be known at load time.
Omitted optional inputs arrive as ``None`` shapes and ``"undefined"`` dtypes.

Keys are ``(domain, op_type)`` with the canonical domain names (``"ai.onnx"`` for the default domain).
Besides the ``com.microsoft`` ops, ONNX Runtime registers two ops of its own in the default domain, which
ONNX's inference skips: ``SimplifiedLayerNormalization`` (any opset) and the contrib
``LayerNormalization`` used by models of opset < 17. ``Gather`` has a rule too: ONNX's first pass leaves it
unshaped when its indices come from shape arithmetic that only the loader folds (a BERT's position ids), and
shaping it here (ONNX's own formula) saves a second pass of ONNX's inference over the whole model.

Dtypes are the names of :mod:`estimator.dtypes`. The module imports only :mod:`estimator.errors`, so the
graph loader can use it without depending on the cost rules.


The attention ops' rules are in :mod:`estimator.graph.contrib_shapes_attention` (imported at the end).

Why this module is long: it is one table, some fifty short shape rules and the shape helpers they share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from estimator.errors import RegistryError

Shape = tuple[int, ...]
OutputType = tuple[Shape | None, str]
ShapeRule = Callable[
    [Mapping[str, Any], Sequence[Shape | None], Sequence[str], Sequence[np.ndarray | None]], list[OutputType]
]

#: Default ONNX domain, canonical spelling.
ONNX_DOMAIN = "ai.onnx"
#: ONNX Runtime's contrib domain.
MS_DOMAIN = "com.microsoft"
UNDEFINED = "undefined"

CONTRIB_SHAPE_RULES: dict[tuple[str, str], ShapeRule] = {}


def _rule(*op_types: str, domain: str = MS_DOMAIN) -> Callable[[ShapeRule], ShapeRule]:
    def decorate(fn: ShapeRule) -> ShapeRule:
        for op_type in op_types:
            key = (domain, op_type)
            if key in CONTRIB_SHAPE_RULES:
                raise RegistryError(f"a shape rule for {domain}::{op_type} is already registered")
            CONTRIB_SHAPE_RULES[key] = fn
        return fn

    return decorate


def infer_contrib_outputs(
    domain: str,
    op_type: str,
    attrs: Mapping[str, Any],
    in_shapes: Sequence[Shape | None],
    in_dtypes: Sequence[str],
    in_values: Sequence[np.ndarray | None],
    n_outputs: int,
) -> list[OutputType] | None:
    """(shape, dtype) of each of a contrib node's ``n_outputs`` outputs, or None when no rule exists.

    Args:
        domain: the node's domain (``""`` and ``"ai.onnx"`` both name the default domain).
        op_type: the node's op type.
        attrs: decoded attributes.
        in_shapes: concrete input shapes, ``None`` where unknown or omitted.
        in_dtypes: input dtype names (``"float32"``, ...), ``"undefined"`` where unknown or omitted.
        in_values: values of inputs known at load time (small constants), else ``None``.
        n_outputs: number of output slots of the node.

    Returns:
        Exactly ``n_outputs`` entries; a shape is ``None`` where it cannot be determined (unknown inputs,
        malformed attributes, run-time values).
    """
    key = (ONNX_DOMAIN if domain in ("", ONNX_DOMAIN) else domain, op_type)
    rule = CONTRIB_SHAPE_RULES.get(key)
    if rule is None:
        return None
    n = len(in_shapes)
    shapes = [tuple(int(d) for d in s) if s is not None else None for s in in_shapes]
    dtypes = list(in_dtypes) + [UNDEFINED] * (n - len(in_dtypes))
    values = list(in_values) + [None] * (n - len(in_values))
    try:
        result = rule(attrs, _Padded(shapes), _Padded(dtypes, UNDEFINED), _Padded(values))
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError):
        # Malformed attributes or inconsistent shapes: the shape is unknown, the cost rule will say why.
        result = []
    fallback = dtypes[0] if dtypes else UNDEFINED
    result = list(result[:n_outputs])
    result += [(None, fallback)] * (n_outputs - len(result))
    return [(None if s is None else tuple(int(d) for d in s), t) for s, t in result]


class _Padded(list):
    """A list that answers ``default`` (None) past its end: omitted trailing optional inputs."""

    def __init__(self, items: Sequence[Any], default: Any = None) -> None:
        super().__init__(items)
        self._default = default

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, int) and i >= len(self):
            return self._default
        return super().__getitem__(i)


# ----------------------------------------------------------------------------------------------------------
# Shared shape algebra
# ----------------------------------------------------------------------------------------------------------


def broadcast(*shapes: Shape | None) -> Shape | None:
    """Numpy multidirectional broadcast of the given shapes; None if any is unknown or they do not fit."""
    if any(s is None for s in shapes):
        return None
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))  # type: ignore[arg-type]
    except ValueError:
        return None


def matmul_shape(a: Shape | None, b: Shape | None) -> Shape | None:
    """Output shape of numpy.matmul(a, b) (1-D operands promoted and the added axis removed)."""
    if a is None or b is None or not a or not b:
        return None
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        return None
    batch = broadcast(a2[:-2], b2[:-2])
    if batch is None:
        return None
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def conv_spatial(
    in_spatial: Sequence[int], kernel: Sequence[int], attrs: Mapping[str, Any], *, ceil_mode: bool = False
) -> Shape:
    """Spatial output dims of a convolution or pooling window (pads, auto_pad, strides, dilations)."""
    n = len(in_spatial)
    strides = list(attrs.get("strides") or [1] * n)
    dilations = list(attrs.get("dilations") or [1] * n)
    pads = list(attrs.get("pads") or [0] * (2 * n))
    auto_pad = str(attrs.get("auto_pad", "NOTSET"))
    out = []
    for i in range(n):
        extent = (kernel[i] - 1) * dilations[i] + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-in_spatial[i] // strides[i]))
            continue
        padded = in_spatial[i] + (0 if auto_pad == "VALID" else pads[i] + pads[i + n]) - extent
        steps = -(-padded // strides[i]) if ceil_mode else padded // strides[i]
        out.append(steps + 1)
    return tuple(out)


def _same(i: int = 0) -> ShapeRule:
    """Rule: one output with the shape and dtype of input ``i``."""

    def rule(attrs, shapes, dtypes, values):
        return [(shapes[i], dtypes[i])]

    return rule


# ----------------------------------------------------------------------------------------------------------
# Elementwise and normalisation ops
# ----------------------------------------------------------------------------------------------------------

for _op in ("Gelu", "FastGelu", "QuickGelu", "BiasGelu", "BiasAdd", "BiasSoftmax", "RotaryEmbedding"):
    _rule(_op)(_same(0))
for _op in ("QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"):
    _rule(_op)(_same(0))


@_rule("BiasDropout")
def _bias_dropout(attrs, shapes, dtypes, values):
    return [(shapes[0], dtypes[0]), (shapes[0], "bool")]


@_rule("BiasSplitGelu")
def _bias_split_gelu(attrs, shapes, dtypes, values):
    x = shapes[0]
    return [(None if x is None or x[-1] % 2 else (*x[:-1], x[-1] // 2), dtypes[0])]


def _stats_shape(x: Shape | None, axis: int) -> Shape | None:
    """Shape of per-row statistics (mean, inverse std) of a normalisation over ``[axis, rank)``."""
    if x is None:
        return None
    axis = axis + len(x) if axis < 0 else axis
    return (*x[:axis], *([1] * (len(x) - axis)))


@_rule("SkipLayerNormalization", "SkipSimplifiedLayerNormalization")
def _skip_layer_norm(attrs, shapes, dtypes, values):
    x, t = shapes[0], dtypes[0]
    stats = _stats_shape(x, -1)
    return [(x, t), (stats, "float32"), (stats, "float32"), (x, t)]


@_rule("SimplifiedLayerNormalization", domain=ONNX_DOMAIN)
@_rule("SimplifiedLayerNormalization")
def _simplified_layer_norm(attrs, shapes, dtypes, values):
    x = shapes[0]
    return [(x, dtypes[0]), (_stats_shape(x, int(attrs.get("axis", -1))), "float32")]


@_rule("LayerNormalization", domain=ONNX_DOMAIN)
def _layer_norm(attrs, shapes, dtypes, values):
    x = shapes[0]
    stats = _stats_shape(x, int(attrs.get("axis", -1)))
    return [(x, dtypes[0]), (stats, "float32"), (stats, "float32")]


@_rule("Gather", domain=ONNX_DOMAIN)
def _gather(attrs, shapes, dtypes, values):
    data, indices = shapes[0], shapes[1]
    if data is None or indices is None or not data:
        return [(None, dtypes[0])]
    axis = int(attrs.get("axis", 0))
    if not -len(data) <= axis < len(data):
        return [(None, dtypes[0])]
    axis %= len(data)
    return [((*data[:axis], *indices, *data[axis + 1 :]), dtypes[0])]


@_rule("GroupNorm", "SkipGroupNorm")
def _group_norm(attrs, shapes, dtypes, values):
    return [(shapes[0], dtypes[0]), (shapes[0], dtypes[0])]


@_rule("EmbedLayerNormalization")
def _embed_layer_norm(attrs, shapes, dtypes, values):
    ids, word = shapes[0], shapes[2]
    out = None if ids is None or word is None or len(ids) != 2 else (*ids, word[-1])
    mask_index = None if ids is None else (ids[0],)
    return [(out, dtypes[2]), (mask_index, "int32"), (out, dtypes[2])]


# ----------------------------------------------------------------------------------------------------------
# Matrix products and convolutions
# ----------------------------------------------------------------------------------------------------------


def _transposed(shape: Shape | None, trans: bool, trans_batch: bool) -> Shape | None:
    """A FusedMatMul operand after ``transBatch`` (move axis 0 before the last axis) and ``trans``."""
    if shape is None or len(shape) < 2:
        return shape
    dims = list(shape)
    if trans_batch and len(dims) >= 3:
        dims = [*dims[1:-1], dims[0], dims[-1]]
    if trans:
        dims[-2], dims[-1] = dims[-1], dims[-2]
    return tuple(dims)


@_rule("FusedMatMul", "FusedMatMulActivation", "TransposeMatMul")
def _fused_matmul(attrs, shapes, dtypes, values):
    a = _transposed(shapes[0], bool(attrs.get("transA", 0)), bool(attrs.get("transBatchA", 0)))
    b = _transposed(shapes[1], bool(attrs.get("transB", 0)), bool(attrs.get("transBatchB", 0)))
    return [(matmul_shape(a, b), dtypes[0])]


def gemm_shape(attrs: Mapping[str, Any], a: Shape | None, b: Shape | None) -> Shape | None:
    """[M, N] of a Gemm with ``transA``/``transB``; None when an operand is unknown or not 2-D."""
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m = a[1] if attrs.get("transA", 0) else a[0]
    n = b[0] if attrs.get("transB", 0) else b[1]
    return (m, n)


@_rule("FusedGemm")
def _fused_gemm(attrs, shapes, dtypes, values):
    return [(gemm_shape(attrs, shapes[0], shapes[1]), dtypes[0])]


@_rule("GemmFastGelu", "DynamicQuantizeMatMul")
def _matmul_like(attrs, shapes, dtypes, values):
    return [(matmul_shape(shapes[0], shapes[1]), dtypes[0])]


@_rule("MatMulIntegerToFloat")
def _matmul_integer_to_float(attrs, shapes, dtypes, values):
    return [(matmul_shape(shapes[0], shapes[1]), dtypes[2])]


@_rule("MatMulNBits")
def _matmul_nbits(attrs, shapes, dtypes, values):
    a = shapes[0]
    return [(None if a is None else (*a[:-1], int(attrs["N"])), dtypes[0])]


@_rule("GatherBlockQuantized")
def _gather_block_quantized(attrs, shapes, dtypes, values):
    data, indices = shapes[0], shapes[1]
    if data is None or indices is None:
        return [(None, dtypes[2])]
    axis = int(attrs.get("gather_axis", 0))
    axis = axis + len(data) if axis < 0 else axis
    packed = 8 // int(attrs.get("bits", 4)) if dtypes[0] == "uint8" else 1
    out = (*data[:axis], *indices, *data[axis + 1 :])
    return [((*out[:-1], out[-1] * packed), dtypes[2])]


@_rule("QGemm")
def _qgemm(attrs, shapes, dtypes, values):
    if shapes[8] is not None or dtypes[8] != UNDEFINED:
        dtype = dtypes[8]
    else:
        dtype = "uint8" if shapes[7] is not None else "float32"
    return [(gemm_shape(attrs, shapes[0], shapes[3]), dtype)]


def _kernel(attrs: Mapping[str, Any], w: Shape | None) -> list[int] | None:
    kernel = attrs.get("kernel_shape")
    if kernel:
        return [int(k) for k in kernel]
    return None if w is None else list(w[2:])


@_rule("FusedConv")
def _fused_conv(attrs, shapes, dtypes, values):
    x, w = shapes[0], shapes[1]
    kernel = _kernel(attrs, w)
    if x is None or w is None or kernel is None:
        return [(None, dtypes[0])]
    return [((x[0], w[0], *conv_spatial(x[2:], kernel, attrs)), dtypes[0])]


@_rule("NhwcConv")
def _nhwc_conv(attrs, shapes, dtypes, values):
    x, w = shapes[0], shapes[1]
    kernel = _kernel(attrs, w)
    if x is None or w is None or kernel is None:
        return [(None, dtypes[0])]
    return [((x[0], *conv_spatial(x[1:-1], kernel, attrs), w[0]), dtypes[0])]


# ----------------------------------------------------------------------------------------------------------
# Quantized ops
# ----------------------------------------------------------------------------------------------------------


@_rule("QLinearAdd", "QLinearMul")
def _qlinear_binary(attrs, shapes, dtypes, values):
    dtype = dtypes[7] if dtypes[7] != UNDEFINED else dtypes[0]
    return [(broadcast(shapes[0], shapes[3]), dtype)]


@_rule("QLinearGlobalAveragePool")
def _qlinear_global_average_pool(attrs, shapes, dtypes, values):
    x = shapes[0]
    if x is None or len(x) < 3:
        return [(None, dtypes[0])]
    if attrs.get("channels_last", 0):
        return [((x[0], *([1] * (len(x) - 2)), x[-1]), dtypes[0])]
    return [((x[0], x[1], *([1] * (len(x) - 2))), dtypes[0])]


@_rule("QLinearAveragePool")
def _qlinear_average_pool(attrs, shapes, dtypes, values):
    x = shapes[0]
    kernel = [int(k) for k in attrs["kernel_shape"]]
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    if x is None:
        return [(None, dtypes[0])]
    if attrs.get("channels_last", 0):
        return [((x[0], *conv_spatial(x[1:-1], kernel, attrs, ceil_mode=ceil_mode), x[-1]), dtypes[0])]
    return [((x[0], x[1], *conv_spatial(x[2:], kernel, attrs, ceil_mode=ceil_mode)), dtypes[0])]


@_rule("QLinearConcat")
def _qlinear_concat(attrs, shapes, dtypes, values):
    dtype = dtypes[1] if dtypes[1] != UNDEFINED else dtypes[2]
    parts = [shapes[i] for i in range(2, len(shapes), 3)]
    if not parts or any(p is None for p in parts):
        return [(None, dtype)]
    rank = len(parts[0])
    axis = int(attrs["axis"])
    axis = axis + rank if axis < 0 else axis
    out = list(parts[0])
    out[axis] = sum(p[axis] for p in parts)
    return [(tuple(out), dtype)]


@_rule("QuantizeLinear")
def _quantize_linear(attrs, shapes, dtypes, values):
    return [(shapes[0], dtypes[2] if dtypes[2] != UNDEFINED else "uint8")]


@_rule("DequantizeLinear")
def _dequantize_linear(attrs, shapes, dtypes, values):
    return [(shapes[0], dtypes[1])]


# The attention rules register themselves on import; mha_dims is part of this module's interface.
from estimator.graph.contrib_shapes_attention import mha_dims  # noqa: E402

__all__ = [
    "CONTRIB_SHAPE_RULES",
    "broadcast",
    "conv_spatial",
    "gemm_shape",
    "infer_contrib_outputs",
    "matmul_shape",
    "mha_dims",
]
