"""The project's own propagation where ONNX's falls short: small shape arithmetic folded with numpy
(``Shape -> Gather -> Concat -> ConstantOfShape``) and the shapes of contrib-domain ops."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from estimator.dtypes import dtype_name
from estimator.graph.inference import Types
from estimator.graph.structure import ONNX_DOMAIN, remember

#: Small constants (at most this many elements) keep their values for rules and shape folding.
_SMALL_CONSTANT_ELEMENTS = 4096


def _propagate(
    nodes: Sequence[onnx.NodeProto],
    node_attrs: Sequence[dict[str, Any]],
    types: Types,
    constants: dict[str, np.ndarray],
) -> bool:
    """One pass in topological order; returns whether any new shape or constant value was learned."""
    from estimator.graph.contrib_shapes import infer_contrib_outputs

    learned = False
    types_get = types.get
    has_constant = constants.__contains__
    for node, attrs in zip(nodes, node_attrs, strict=True):
        outputs = list(filter(None, node.output))  # the present ones (C-level filter: no frame per name)
        if not outputs:
            continue
        default_domain = node.domain in _DEFAULT_DOMAINS  # canonical_domain(node.domain) == ONNX_DOMAIN
        if (
            default_domain
            and node.op_type in _FOLDERS
            and not all(map(has_constant, outputs))
            # every present input known (what _fold asks of every op but the ones that read no input values)
            and (node.op_type in _NO_INPUT_VALUES or all(map(has_constant, filter(None, node.input))))
        ):
            inputs = node.input
            if node.op_type == "ConstantOfShape" and len(inputs) == 1 and inputs[0]:
                values = _fold_fill(constants.get(inputs[0]), attrs)  # what _fold does, without its tests
            else:
                values = _fold(node, attrs, types, constants)
            if values is not None:
                for name, value in zip(node.output, values, strict=False):
                    if not name or value.size > _SMALL_CONSTANT_ELEMENTS:
                        continue
                    constants[name] = value
                    learned = True
                    if types_get(name, _NO_TYPE)[0] is None:
                        types[name] = (tuple(int(d) for d in value.shape), _np_dtype_name(value.dtype))
        if (
            types_get(outputs[0], _NO_TYPE)[0] is not None
            if len(outputs) == 1
            else all(types_get(o, _NO_TYPE)[0] is not None for o in outputs)
        ):
            continue
        in_shapes = [types_get(i, _NO_TYPE)[0] if i else None for i in node.input]
        in_dtypes = [types_get(i, (None, "undefined"))[1] if i else "undefined" for i in node.input]
        in_values = [constants.get(i) if i else None for i in node.input]
        result = infer_contrib_outputs(
            ONNX_DOMAIN if default_domain else node.domain,
            node.op_type,
            attrs,
            in_shapes,
            in_dtypes,
            in_values,
            len(node.output),
        )
        if result is None:
            continue
        for name, (shape, dtype) in zip(node.output, result, strict=False):
            if name and shape is not None and types_get(name, _NO_TYPE)[0] is None:
                types[name] = (tuple(int(d) for d in shape), dtype)
                learned = True
    return learned


#: The names of ONNX's default domain (see :func:`~estimator.graph.structure.canonical_domain`).
_DEFAULT_DOMAINS = frozenset({"", ONNX_DOMAIN})
#: Folded ops that read no input values (their inputs' shapes, or their attributes).
_NO_INPUT_VALUES = frozenset({"Shape", "Size", "Constant"})
#: What ``types.get`` answers for a tensor it does not know.
_NO_TYPE = (None, "")


def _np_dtype_name(dtype: np.dtype) -> str:
    name = np.dtype(dtype).name
    return "bool" if name == "bool_" else name


def _fold(
    node: onnx.NodeProto, attrs: Mapping[str, Any], types: Types, constants: Mapping[str, np.ndarray]
) -> list[np.ndarray] | None:
    """Evaluate a shape-arithmetic node with numpy when its inputs are known; None when it cannot."""
    op = node.op_type
    if op in ("Shape", "Size") and not node.input:
        return None  # a malformed node (no data input) folds nothing; validation and cost rules report it
    if op == "Shape":
        shape = types.get(node.input[0], (None, ""))[0]
        if shape is None:
            return None
        start, end = attrs.get("start", 0), attrs.get("end", None)
        return [np.array(shape[start:end], dtype=np.int64)]
    if op == "Size":
        shape = types.get(node.input[0], (None, ""))[0]
        return None if shape is None else [np.array(math.prod(shape), dtype=np.int64)]
    if op == "Constant":
        for key, value in attrs.items():
            if key == "value" and isinstance(value, np.ndarray):
                return [value]
            if key in ("value_int", "value_ints"):
                return [np.array(value, dtype=np.int64)]
            if key in ("value_float", "value_floats"):
                return [np.array(value, dtype=np.float32)]
        return None
    if op == "ConstantOfShape" and len(node.input) == 1 and node.input[0]:
        return _fold_fill(constants.get(node.input[0]), attrs)
    args = [constants.get(i) if i else None for i in node.input]
    required = [a for i, a in zip(node.input, args, strict=True) if i]
    if any(a is None for a in required):
        return None
    if op == "ConstantOfShape" and math.prod(_ints(args[0].reshape(-1))) > _SMALL_CONSTANT_ELEMENTS:
        return None  # a weight fill: its shape is known from its input, its value is not needed
    try:
        return _FOLDERS[op](args, attrs)
    except Exception:  # a fold that fails simply teaches nothing; ONNX inference and cost rules decide later
        return None


def _fold_fill(shape: np.ndarray | None, attrs: Mapping[str, Any]) -> Sequence[np.ndarray] | None:
    """What :func:`_fold` gives for a ``ConstantOfShape`` whose shape input holds ``shape``: a function of the
    shape's and the fill's contents alone, so remembered by them (NAS candidates and the layers of a network repeat
    a few dozen fills). Remembered arrays are read-only, shared by every node with that content."""
    if shape is None:
        return None
    value = attrs.get("value")
    # The shapes and fills of a graph are mostly the read-only arrays remembered by content (graph.freeze): the
    # same objects again, remembered by identity first (the entry holds them, so their ids stay theirs).
    ident = (id(shape), id(value))
    known = _FILLS_BY_ID.get(ident)
    if known is not None and known[0] is shape and known[1] is value:
        return known[2]
    out = _fold_fill_by_content(shape, value, attrs)
    if (
        (out is None or type(out) is tuple)  # remembered by content too (read-only arrays), or nothing
        and not shape.flags.writeable
        and (value is None or (isinstance(value, np.ndarray) and not value.flags.writeable))
    ):
        remember(_FILLS_BY_ID, ident, (shape, value, out), _FILLS_LIMIT)
    return out


def _fold_fill_by_content(
    shape: np.ndarray, value: object, attrs: Mapping[str, Any]
) -> Sequence[np.ndarray] | None:
    """:func:`_fold_fill` remembered by the contents of the shape and the fill (``value``: the fill attribute)."""
    if shape.dtype.hasobject or (
        value is not None
        and (not isinstance(value, np.ndarray) or value.dtype.hasobject or value.nbytes > _FILL_KEY_BYTES)
    ):
        # No exact image by bytes, or too large to keep: folded every time.
        return _fold_fill_now(shape, attrs)
    key = (
        shape.dtype.str,
        shape.shape,
        shape.tobytes(),
        None if value is None else (value.dtype.str, value.shape, value.tobytes()),
    )
    out = _FILLS.get(key, _MISSING)
    if out is _MISSING:
        out = _fold_fill_now(shape, attrs)
        if out is not None:
            for array in out:
                array.setflags(write=False)
            out = tuple(out)
        remember(_FILLS, key, out, _FILLS_LIMIT)
    return out


def _fold_fill_now(shape: np.ndarray, attrs: Mapping[str, Any]) -> list[np.ndarray] | None:
    if math.prod(_ints(shape.reshape(-1))) > _SMALL_CONSTANT_ELEMENTS:
        return None  # a weight fill: its shape is known from its input, its value is not needed
    try:
        return _fold_constant_of_shape([shape], attrs)
    except Exception:  # as in _fold: a fold that fails teaches nothing
        return None


#: Most ConstantOfShape results remembered by :func:`_fold_fill` (each at most 4096 elements: 32 MB at worst,
#: a few hundred kB in practice), and the largest fill value (bytes) whose results are remembered.
_FILLS_LIMIT = 512
_FILL_KEY_BYTES = 64
_FILLS: dict[tuple, tuple[np.ndarray, ...] | None] = {}
#: (id of the shape, id of the fill) -> (the shape, the fill, the result): read-only arrays seen before.
_FILLS_BY_ID: dict[tuple[int, int], tuple] = {}
_MISSING = object()


def _fold_slice(args: list, attrs: dict) -> list[np.ndarray]:
    data = args[0]
    if len(args) > 1:
        starts, ends = args[1], args[2]
        axes = args[3] if len(args) > 3 and args[3] is not None else range(len(starts))
        steps = args[4] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    else:
        starts, ends = attrs["starts"], attrs["ends"]
        axes = attrs.get("axes", range(len(starts)))
        steps = [1] * len(starts)
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        index[int(a)] = slice(int(s), int(e), int(st))
    return [data[tuple(index)]]


def _axes(args: list, attrs: dict) -> list[int] | None:
    if len(args) > 1 and args[1] is not None:
        return [int(a) for a in np.atleast_1d(args[1])]
    return attrs.get("axes")


def _fold_unsqueeze(args: list, attrs: dict) -> list[np.ndarray]:
    out = args[0]
    axes = _axes(args, attrs) or []
    rank = out.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        out = np.expand_dims(out, a)
    return [out]


def _fold_squeeze(args: list, attrs: dict) -> list[np.ndarray]:
    axes = _axes(args, attrs)
    return [np.squeeze(args[0]) if axes is None else np.squeeze(args[0], axis=tuple(axes))]


def _fold_reshape(args: list, attrs: dict) -> list[np.ndarray]:
    data, shape = args[0], [int(d) for d in args[1]]
    if not attrs.get("allowzero", 0):
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [data.reshape(shape)]


def _fold_binary(fn):
    return lambda args, attrs: [np.asarray(fn(args[0], args[1]))]


def _fold_div(args: list, attrs: dict) -> list[np.ndarray]:
    a, b = args
    if np.issubdtype(a.dtype, np.integer):
        return [np.asarray(np.trunc(a / b).astype(a.dtype))]
    return [np.asarray(a / b)]


def _fold_cast(args: list, attrs: dict) -> list[np.ndarray]:
    target = dtype_name(int(attrs["to"]))
    return [args[0].astype(np.dtype(target))]


def _ints(values: np.ndarray) -> list:
    """``[int(d) for d in values]``; for a 1-D integer array, read in one call."""
    if values.ndim == 1 and values.dtype.kind in "iu":
        return values.tolist()
    return [int(d) for d in values]


def _fold_constant_of_shape(args: list, attrs: dict) -> list[np.ndarray]:
    shape = _ints(args[0])
    if math.prod(shape) > _SMALL_CONSTANT_ELEMENTS:
        raise ValueError("too large to fold")
    value = attrs.get("value")
    fill = np.asarray(value.reshape(-1)[0] if isinstance(value, np.ndarray) else np.float32(0))
    if fill.dtype.kind in "biufc" and not any(fill.tobytes()):
        return [
            np.zeros(shape, dtype=fill.dtype)
        ]  # the same bits as np.full with a +0 fill, several times faster
    return [np.full(shape, fill, dtype=fill.dtype)]


def _fold_clip(args: list, attrs: dict) -> np.ndarray:
    low = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
    high = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
    out = args[0]
    if low is not None:
        out = np.maximum(out, np.asarray(low, dtype=out.dtype))
    if high is not None:
        out = np.minimum(out, np.asarray(high, dtype=out.dtype))
    return np.asarray(out)


_FOLDERS: dict[str, Any] = {
    "Shape": None,
    "Size": None,
    "Constant": None,
    "Identity": lambda a, k: [a[0]],
    "Cast": _fold_cast,
    "Gather": lambda a, k: [np.take(a[0], a[1], axis=k.get("axis", 0))],
    "Unsqueeze": _fold_unsqueeze,
    "Squeeze": _fold_squeeze,
    "Concat": lambda a, k: [np.concatenate([np.atleast_1d(x) for x in a], axis=k.get("axis", 0))],
    "Slice": _fold_slice,
    "Reshape": _fold_reshape,
    "Add": _fold_binary(np.add),
    "Sub": _fold_binary(np.subtract),
    "Mul": _fold_binary(np.multiply),
    "Div": _fold_div,
    "Equal": _fold_binary(np.equal),
    "Less": _fold_binary(np.less),
    "Greater": _fold_binary(np.greater),
    "Max": lambda a, k: [np.asarray(np.maximum.reduce(a))],
    "Min": lambda a, k: [np.asarray(np.minimum.reduce(a))],
    "Neg": lambda a, k: [np.negative(a[0])],
    "Mod": lambda a, k: [np.fmod(a[0], a[1]) if k.get("fmod", 0) else np.mod(a[0], a[1])],
    "Abs": lambda a, k: [np.abs(a[0])],
    "Not": lambda a, k: [np.logical_not(a[0])],
    "Where": lambda a, k: [np.where(a[0], a[1], a[2])],
    "Range": lambda a, k: [np.arange(a[0].item(), a[1].item(), a[2].item(), dtype=a[0].dtype)],
    "ConstantOfShape": _fold_constant_of_shape,
    "Expand": lambda a, k: [a[0] * np.ones([int(d) for d in a[1]], dtype=a[0].dtype)],
    "ReduceProd": lambda a, k: [np.asarray(np.prod(a[0], keepdims=bool(k.get("keepdims", 1))))],
    "Clip": lambda a, k: [_fold_clip(a, k)],
    "Transpose": lambda a, k: [np.transpose(a[0], k.get("perm"))],
    "Flatten": lambda a, k: [a[0].reshape(math.prod(a[0].shape[: k.get("axis", 1)]), -1)],
    "Tile": lambda a, k: [np.tile(a[0], [int(r) for r in a[1]])],
    "Floor": lambda a, k: [np.floor(a[0])],
    "Ceil": lambda a, k: [np.ceil(a[0])],
    "Sqrt": lambda a, k: [np.sqrt(a[0])],
    "Pow": lambda a, k: [np.asarray(np.power(a[0], a[1]))],
    "And": _fold_binary(np.logical_and),
    "Or": _fold_binary(np.logical_or),
    "GreaterOrEqual": _fold_binary(np.greater_equal),
    "LessOrEqual": _fold_binary(np.less_equal),
}
