"""ONNX's own shape inference, run on a light copy of the model: bound input shapes, large initializers as
typed inputs (so no weight data is read or expanded)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx.numpy_helper

from estimator.dtypes import DTYPE_CODES as _ONNX_CODE
from estimator.dtypes import dtype_name
from estimator.errors import ModelFormatError
from estimator.graph.binding import _dims_of_type
from estimator.graph.reading import StoredTensor, is_stored_order, stored_tensors
from estimator.graph.structure import remember
from estimator.graph.wire import GRAPH_INPUT, GRAPH_VALUE_INFO, typed_values

#: Initializers at most this large stay initializers for ONNX's data propagation; larger ones become typed inputs.
_INFERENCE_INITIALIZER_ELEMENTS = 4096
#: Element types of 1-D tensors that may hold shapes (kept at their known length for data propagation).
_SHAPE_DTYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})


def _light_model(
    model: onnx.ModelProto,
    real_inputs: Sequence[onnx.ValueInfoProto],
    bindings: dict[str, tuple[int, ...]],
    *,
    extra_types: Mapping[str, tuple[tuple[int, ...] | None, str]] | None = None,
    extra_constants: Mapping[str, np.ndarray] | None = None,
    order: Sequence[int] | None = None,
    stored: Sequence[StoredTensor] | None = None,
) -> onnx.ModelProto:
    """A copy of the model for shape inference: bound input shapes, large initializers as typed inputs.
    ``stored``: the graph's :func:`~estimator.graph.reading.stored_tensors`, when the caller has them."""
    src = model.graph
    initializers = stored if stored is not None else stored_tensors(src)
    if (
        extra_types is None
        and extra_constants is None
        and _light_already(model, real_inputs, bindings, order, initializers)
    ):
        return model
    g = onnx.GraphProto(name=src.name)
    # ONNX's inference visits nodes in stored order: give it the topological one (some tools break the order).
    in_order = order is None or is_stored_order(order)
    g.node.extend(src.node if in_order else [src.node[i] for i in order])
    symbols = {k[5:]: v[0] for k, v in bindings.items() if k.startswith("\0sym:")}
    known_constants = dict(extra_constants or {})
    # Inputs (the real ones, then the large initializers as typed inputs) written as wire bytes, merged at once.
    typed = [(vi.name, vi.type.tensor_type.elem_type, bindings[vi.name]) for vi in real_inputs]
    small = []
    for t in initializers:
        if t.numel <= _INFERENCE_INITIALIZER_ELEMENTS and not t.external:
            small.append(t.proto)
            known_constants.pop(t.name, None)
        elif len(t.dims) == 1 and t.data_type not in _SHAPE_DTYPES:
            # ONNX's data propagation keeps ~70 B per element of a 1-D input of known length (a 65B LLM's
            # biases: ~400 MB). Its length is restored from the initializer after inference.
            typed.append((t.name, t.data_type, (f"__len_{t.name}",)))
        else:
            typed.append((t.name, t.data_type, t.dims))
    g.MergeFromString(typed_values(GRAPH_INPUT, typed))
    g.initializer.extend(small)
    for st in src.sparse_initializer:
        g.sparse_initializer.append(st)
    for name, value in known_constants.items():
        if value.dtype != object:
            g.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), name))
    if symbols:
        g.output.extend([_substituted(vi, symbols) for vi in src.output])
        g.value_info.extend([_substituted(vi, symbols) for vi in src.value_info])
    else:  # nothing to substitute: copied as they are, in one call each
        g.output.extend(src.output)
        g.value_info.extend(src.value_info)
    if extra_types:
        have = (
            {vi.name for vi in g.value_info} | {vi.name for vi in g.input} | {t.name for t in g.initializer}
        )
        g.MergeFromString(
            typed_values(
                GRAPH_VALUE_INFO,
                [
                    (name, _ONNX_CODE[dtype], shape)
                    for name, (shape, dtype) in extra_types.items()
                    if name not in have and shape is not None and dtype != "undefined"
                ],
            )
        )
    # IR >= 4 lets initializers stand without being graph inputs (older IRs required both).
    out = onnx.ModelProto(ir_version=max(model.ir_version, 4), graph=g)
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    return out


def _light_already(
    model: onnx.ModelProto,
    real_inputs: Sequence[onnx.ValueInfoProto],
    bindings: Mapping[str, tuple[int, ...]],
    order: Sequence[int] | None,
    initializers: Sequence[StoredTensor],
) -> bool:
    """Whether the model is its own light copy: the copy would hold the same nodes in the same order, the same
    initializers (all small and stored in the file), the same inputs with the same concrete shapes, and no symbol
    to substitute - so ONNX's inference is run on the model itself rather than on a copy of it."""
    return (
        model.ir_version >= 4
        and (order is None or is_stored_order(order))
        and len(model.graph.input) == len(real_inputs)
        and len(bindings) == len(real_inputs)
        and all(t.numel <= _INFERENCE_INITIALIZER_ELEMENTS and not t.external for t in initializers)
        and all(
            vi.type.tensor_type.HasField("shape")
            and tuple(_dims_of_type(vi.type) or ()) == bindings.get(vi.name)
            for vi in real_inputs
        )
    )


def _substituted(vi: onnx.ValueInfoProto, symbols: Mapping[str, int]) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(vi)
    if out.type.HasField("tensor_type") and out.type.tensor_type.HasField("shape"):
        for d in out.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in symbols:
                d.dim_value = symbols[d.dim_param]
    return out


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # ONNX's inference can raise on malformed graphs even in lenient mode
        try:
            return onnx.shape_inference.infer_shapes(
                model, check_type=False, strict_mode=False, data_prop=False
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFormatError(f"ONNX shape inference rejected the model: {first}") from None


def symbolic_lengths(graph: onnx.GraphProto, stored: Sequence[StoredTensor] | None = None) -> dict[str, int]:
    """The symbolic length :func:`_light_model` gives each large or external 1-D initializer -> its length.
    ``stored``: the graph's :func:`~estimator.graph.reading.stored_tensors`, when the caller has them."""
    return {
        f"__len_{t.name}": t.dims[0]
        for t in (stored if stored is not None else stored_tensors(graph))
        if len(t.dims) == 1 and t.data_type not in _SHAPE_DTYPES
    }


def _collect_types(
    graph: onnx.GraphProto, lengths: Mapping[str, int] | None = None, stored: Sequence[StoredTensor] = ()
) -> dict[str, tuple[tuple[int, ...] | None, str]]:
    """Shape and dtype name of every typed value; ``lengths`` resolves the symbolic lengths of 1-D weights
    (and so of every tensor ONNX derived from one: through Identity, Cast, Unsqueeze, Reshape...).

    ``stored``: the graph's stored tensors, whose types the caller takes from the tensors themselves. The light
    model declares the large ones as inputs (typed as stored); those inputs are not read, only given their place
    in the order, with a placeholder ``(None, "undefined")`` that the caller replaces."""
    types: dict[str, tuple[tuple[int, ...] | None, str]] = {}
    inputs = graph.input[:]
    if stored and inputs:
        names = {t.name for t in stored}
        for vi in inputs:
            name = vi.name
            if name in names:
                types[name] = _PLACEHOLDER
            else:
                read = _read_type(vi.type)
                if read is not None:
                    types[name] = _resolved(read, lengths)
        inputs = []
    known = _TYPES
    for vi in inputs + graph.value_info[:] + graph.output[:]:
        # _read_type and _resolved inlined for a type read before and a shape that needs no resolving.
        t = vi.type
        read = known.get(t.SerializeToString(), _MISSING)
        if read is _MISSING:
            read = _read_type(t)
        if read is not None:
            types[vi.name] = (
                (read[1], read[2]) if read[1] is not None or not lengths else _resolved(read, lengths)
            )
    return types


#: What :func:`_collect_types` gives a stored tensor's input, for the caller to replace.
_PLACEHOLDER = (None, "undefined")


def _resolved(
    read: tuple[tuple | None, tuple[int, ...] | None, str], lengths: Mapping[str, int] | None
) -> tuple[tuple[int, ...] | None, str]:
    """``(shape, dtype)`` of a :func:`_read_type` answer, symbolic lengths of 1-D weights resolved."""
    dims, shape, dtype = read
    if lengths and shape is None and dims is not None:
        resolved = [lengths.get(d, d) if isinstance(d, str) else d for d in dims]
        shape = tuple(resolved) if all(isinstance(d, int) for d in resolved) else None
    return shape, dtype


def _read_type(t: onnx.TypeProto) -> tuple[tuple | None, tuple[int, ...] | None, str] | None:
    """``(declared dims, concrete shape or None, dtype name)`` of a type, None when it is no tensor and has no
    dims. Remembered by the serialized type (a graph repeats a few dozen types across hundreds of values)."""
    key = t.SerializeToString()
    read = _TYPES.get(key, _MISSING)
    if read is _MISSING:
        dims = _dims_of_type(t)
        if dims is None and not t.HasField("tensor_type"):
            read = None
        else:
            shape = tuple(dims) if dims is not None and all(isinstance(d, int) for d in dims) else None
            read = (None if dims is None else tuple(dims), shape, dtype_name(t.tensor_type.elem_type))
        remember(_TYPES, key, read, _TYPES_LIMIT)
    return read


#: Most serialized types remembered by :func:`_read_type` (a few hundred bytes each).
_TYPES_LIMIT = 8192
_TYPES: dict[bytes, tuple | None] = {}
_MISSING = object()


Types = dict[str, tuple[tuple[int, ...] | None, str]]
