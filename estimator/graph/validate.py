"""Checks of what a model file and the caller give before anything is built: argument types (dimensions are
integers, never truncated), opset versions that exist, names that are valid UTF-8, stored tensors whose type is
defined and whose data fill their dims. Each failure is one ModelFormatError or InvalidDimensionError."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from estimator.dtypes import dtype_name, storage_bytes
from estimator.errors import InvalidDimensionError, ModelFormatError
from estimator.graph.reading import (  # noqa: F401  (SMALL_TENSOR_BYTES, is_small_tensor: read from here too)
    SMALL_TENSOR_BYTES,
    NodeView,
    StoredTensor,
    _numel,
    is_small_tensor,
    node_views,
    stored_tensor,
)
from estimator.graph.structure import ONNX_DOMAIN, canonical_domain, remember

#: Newest opset of the domains whose versions the installed onnx package knows.
_NEWEST_OPSET = {
    ONNX_DOMAIN: onnx.defs.onnx_opset_version(),
    "ai.onnx.ml": max(v[3] for v in onnx.helper.VERSION_TABLE),
}


def _checked_arguments(batch: object, shapes: object) -> tuple[int | None, dict[str, tuple[int, ...]]]:
    """``batch`` and ``shapes`` as ints, or InvalidDimensionError naming the argument of the wrong type."""
    if batch is not None:
        batch = _as_dim(batch, "batch")
    if shapes is None:
        return batch, {}
    if not isinstance(shapes, Mapping):
        raise InvalidDimensionError(
            f"shapes must be a mapping {{name: dims}}, got a {type(shapes).__name__}; "
            f"write e.g. shapes={{'input': (1, 3, 224, 224)}}"
        )
    out: dict[str, tuple[int, ...]] = {}
    for key, dims in shapes.items():
        if not isinstance(key, str):
            raise InvalidDimensionError(f"shapes keys must be input or dimension names, got {key!r}")
        if isinstance(dims, (str, bytes)) or not isinstance(dims, (Sequence, np.ndarray)):
            raise InvalidDimensionError(
                f"shapes[{key!r}] must be a sequence of integers, got {dims!r}; "
                f"write e.g. shapes={{{key!r}: (1, 3, 224, 224)}}"
            )
        out[key] = tuple(_as_dim(d, f"shapes[{key!r}]") for d in dims)
    return batch, out


def _as_dim(value: object, what: str) -> int:
    """One dimension as an int; a bool, a float, a string or any other type is refused (never truncated)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidDimensionError(f"{what} must be an integer, got {value!r} ({type(value).__name__})")
    return int(value)


def _check_model_fields(
    model: onnx.ModelProto,
    views: Sequence[NodeView] | None = None,
    stored: Sequence[StoredTensor] | None = None,
) -> None:
    """Refuse names that are not valid UTF-8 and opset versions no ONNX release defines (ModelFormatError).
    ``views``, ``stored``: the main graph's :func:`~estimator.graph.reading.node_views` and
    :func:`~estimator.graph.reading.stored_tensors`, when the caller has them."""
    for entry in model.opset_import:
        domain, version = entry.domain, int(entry.version)
        if not isinstance(domain, str):
            raise ModelFormatError(
                "an opset domain name is not valid UTF-8; the file is corrupted: re-export it"
            )
        newest = _NEWEST_OPSET.get(canonical_domain(domain), (1 << 31) - 1)
        if not 1 <= version <= newest:
            raise ModelFormatError(
                f"the model imports opset {version} of domain '{canonical_domain(domain)}', which does not exist "
                f"(valid: 1..{newest}); re-export the model with a released opset"
            )
    _check_names(model.graph, "the main graph", views, stored)
    opsets = {canonical_domain(e.domain): int(e.version) for e in model.opset_import}
    _check_arity(views if views is not None else node_views(model.graph), opsets)


def _check_arity(nodes: Sequence[NodeView], opsets: Mapping[str, int]) -> None:
    """Each node of a standard domain must give as many inputs and outputs as its schema allows at the imported
    opset (ModelFormatError otherwise): a rule reading a missing input would otherwise answer from half a node.
    Ops the installed onnx has no schema for (contrib domains, local functions) are left to the costing rules."""
    seen: dict[tuple[str, str], tuple[int, int, int, int] | None] = {}  # this graph's look-ups
    for node in nodes:
        key = (node.op_type, node.domain)
        schema = seen.get(key, _MISSING)
        if schema is _MISSING:
            schema = seen[key] = _schema(node.op_type, canonical_domain(node.domain), opsets)
        if schema is None:
            continue
        n_in, n_out = len(node.input), len(node.output)
        lo_in, hi_in, lo_out, hi_out = schema
        if lo_in <= n_in <= hi_in and lo_out <= n_out <= hi_out:
            continue
        what, n, lo, hi = (
            ("inputs", n_in, lo_in, hi_in)
            if not lo_in <= n_in <= hi_in
            else ("outputs", n_out, lo_out, hi_out)
        )
        allowed = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi < _VARIADIC else f"at least {lo}"
        raise ModelFormatError(
            f"node '{node.name or node.op_type}' ({node.op_type}) has {n} {what}, but {node.op_type} at opset "
            f"{opsets.get(canonical_domain(node.domain))} takes {allowed}; the file is malformed: re-export it"
        )


#: Marks a look-up not made yet (None is a valid answer: no schema).
_MISSING = object()
#: What onnx reports as the upper bound of a variadic input or output list.
_VARIADIC = 2**31 - 1
#: (op, domain, opset) -> (min inputs, max inputs, min outputs, max outputs), or None without a schema; keyed
#: by names read from files, so bounded like ``_PASSED``: at most ``_ARITY_LIMIT`` entries, then started afresh.
_ARITY: dict[tuple[str, str, int], tuple[int, int, int, int] | None] = {}
_ARITY_LIMIT = 4096


def _schema(op_type: str, domain: str, opsets: Mapping[str, int]) -> tuple[int, int, int, int] | None:
    """The input/output count bounds of ``op_type`` in ``domain`` at the model's opset, memoised; None when the
    domain is not imported or the installed onnx has no schema for the op there."""
    version = opsets.get(domain)
    if version is None or domain not in _NEWEST_OPSET:
        return None
    key = (op_type, domain, version)
    if key in _ARITY:
        return _ARITY[key]
    try:
        s = onnx.defs.get_schema(op_type, version, "" if domain == ONNX_DOMAIN else domain)
    except onnx.defs.SchemaError:
        return remember(_ARITY, key, None, _ARITY_LIMIT)
    return remember(_ARITY, key, (s.min_input, s.max_input, s.min_output, s.max_output), _ARITY_LIMIT)


def _check_names(
    graph: onnx.GraphProto,
    where: str,
    views: Sequence[NodeView] | None = None,
    stored: Sequence[StoredTensor] | None = None,
) -> None:
    """Every name of ``graph`` (recursively) must be text: protobuf hands back bytes for invalid UTF-8."""
    nodes = views if views is not None else node_views(graph)
    initializers = stored if stored is not None else [stored_tensor(t) for t in graph.initializer]
    fields = [graph.name, *(t.name for t in initializers)]
    fields += [vi.name for vi in (*graph.input, *graph.output, *graph.value_info)]
    tensor_attributes = []
    for node in nodes:
        fields += (node.name, node.op_type, node.domain)
        fields += node.input
        fields += node.output
        if node.attribute:
            fields += node.attribute_names
            if node.tensor_keys:
                for attr, kind, key in zip(
                    node.attribute, node.attribute_types, node.tensor_keys, strict=True
                ):
                    if kind == _TENSOR:
                        tensor_attributes.append((node, attr, key))
        if node.has_subgraphs:
            for attr in node.attribute:
                for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                    _check_names(sub, f"a subgraph of node '{node.name}'")
    try:
        "".join(fields)  # a bytes name makes join raise: one C-level pass over every name
    except TypeError:
        bad = next(f for f in fields if not isinstance(f, str))
        raise ModelFormatError(
            f"{where} has a name that is not valid UTF-8 ({bytes(bad)[:40]!r}); the file is corrupted or was "
            f"written by a broken exporter: re-export it"
        ) from None
    for t in initializers:
        if t.key is not None and t.key in _PASSED:
            continue  # the same content passed before (as an initializer or a tensor attribute)
        _check_stored(t, f"initializer '{t.name}'")
        if t.key is not None:
            remember(_PASSED, t.key, None, _PASSED_LIMIT)
    for node, attr, key in tensor_attributes:
        if key is not None and key in _PASSED:
            continue  # the same content passed before: a check is a function of the content alone
        _check_stored(attr.t, f"attribute '{attr.name}' of node '{node.name or node.op_type}'")
        if key is not None:
            remember(_PASSED, key, None, _PASSED_LIMIT)


_TENSOR = onnx.AttributeProto.TENSOR
#: Serialized small tensors (attributes, remembered initializers) that passed :func:`_check_stored`, at most
#: ``_PASSED_LIMIT`` (~1 MB): a check is a function of the tensor's content alone.
_PASSED: dict[bytes, None] = {}
_PASSED_LIMIT = 4096


#: The TensorProto field that holds the values of each element type (the others must be empty).
_DATA_FIELD = {
    "float32": "float_data",
    "complex64": "float_data",
    "int64": "int64_data",
    "float64": "double_data",
    "complex128": "double_data",
    "uint32": "uint64_data",
    "uint64": "uint64_data",
    "string": "string_data",
}


def _check_stored(t: onnx.TensorProto | StoredTensor, what: str) -> None:
    """A stored tensor's type must be defined, its dims non-negative, and data it carries must fill its dims."""
    view = t if isinstance(t, StoredTensor) else stored_tensor(t)
    dtype = dtype_name(view.data_type)
    if dtype == "undefined":
        raise ModelFormatError(
            f"{what} has element type {view.data_type} (undefined); the file is corrupted: re-export it"
        )
    dims = view.dims
    if dims and min(dims) < 0:
        raise ModelFormatError(
            f"{what} has negative dimensions {list(dims)}; the file is corrupted: re-export it"
        )
    if view.external:
        return
    fields = view.fields
    raw = fields.get("raw_data")
    if raw:
        if fields.keys() <= _RAW_ONLY and len(raw) == storage_bytes(_numel(dims), dtype):
            return  # values in raw_data alone, as many bytes as the dims need: what the checks below pass
    else:
        own, allowed = _TYPED_ONLY.get(dtype, _NOT_TYPED)
        if own and fields.keys() <= allowed:
            typed = len(fields.get(own, ()))
            if typed == 0 or typed == _numel(dims):
                return  # values in the type's own field alone, one per element (or none): what passes below
    # The fields that are set (a repeated field only when it is not empty), read once by stored_tensor.
    present = view.fields
    own = _DATA_FIELD.get(dtype, "int32_data")  # ONNX stores small ints, bool and 16/8/4-bit floats as int32
    stray = next((name for name in _VALUE_FIELDS if name != own and name in present), None)
    if stray is not None:
        raise ModelFormatError(
            f"{what} is {dtype} but stores values in {stray}; the file is corrupted: re-export it"
        )
    numel = _numel(dims)
    raw = present.get("raw_data", b"")
    typed = len(present.get(own, ()))
    expected = (
        numel * 2 if dtype.startswith("complex") else numel,
        (numel + 1) // 2 if "4" in dtype else numel,
    )
    if raw:
        ok = len(raw) == storage_bytes(numel, dtype)
    elif typed:
        ok = typed in expected
    else:
        ok = True  # no data at all: a weight stripped from the file; its shape is what counts
    if not ok:
        raise ModelFormatError(
            f"{what} declares dims {list(dims)} ({numel:,} {dtype} elements) but stores "
            f"{len(raw) if raw else typed:,} {'bytes' if raw else 'values'}; "
            f"the file is corrupted: re-export it"
        )


#: The TensorProto fields that hold values, in the order a stray one is reported, and raw_data.
_VALUE_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")
_VALUE_FIELDS_AND_RAW = frozenset({*_VALUE_FIELDS, "raw_data"})
#: The fields a tensor whose values are all in ``raw_data`` may set (any other field goes through every check).
_RAW_ONLY = frozenset({"name", "dims", "data_type", "raw_data", "doc_string"})


#: Element types stored one value per element in their own field, with the fields such a tensor may set (the
#: others, ``_NOT_TYPED``, go through every check).
_TYPED_ONLY = {
    dtype: (field, frozenset({"name", "dims", "data_type", "doc_string", field}))
    for dtype, field in (
        (d, _DATA_FIELD.get(d, "int32_data")) for d in ("int64", "float32", "int32", "float64")
    )
}
_NOT_TYPED = ("", frozenset())


def _has_data(t: onnx.TensorProto | StoredTensor) -> bool:
    """Whether a tensor stores its values (an empty tensor counts: it has all of its zero values)."""
    view = t if isinstance(t, StoredTensor) else stored_tensor(t)
    if not view.dims or 0 not in view.dims:
        fields = view.fields
        if fields.get("raw_data"):
            return True
        return any(len(fields[name]) for name in _VALUE_FIELDS_AND_RAW if name in fields)
    return True
