"""Loading an ONNX model into a frozen, fully shaped :class:`Graph` - without its weights.

``load_graph`` never reads external weight data (it works when the ``.data`` file is absent, and a model
whose weights exceed 2 GB costs a few MB of memory), binds symbolic dimensions from ``batch`` and
``shapes``, runs ONNX's own shape inference with data propagation, and adds the project's propagation
only where that falls short: ops of contrib domains (``com.microsoft``) and shapes computed by small
constant subgraphs (``Shape -> Gather -> Concat -> ConstantOfShape``), which are folded with numpy.

Constants are followed through ``Identity``/``Cast``/``ConstantOfShape``/reshapes so that a weight stored
as an initializer, a ``Constant`` node or a ``ConstantOfShape`` fill is known as one *parameter root*,
counted once, where it lives. Nodes whose inputs are all constant are marked ``constant_folded``: a
runtime folds them at load time, so they cost nothing per inference.

This module holds no cost logic.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper

from estimator.dtypes import DTYPE_CODES as _ONNX_CODE
from estimator.dtypes import dtype_name, storage_bytes
from estimator.errors import (
    GraphStructureError,
    InputFileError,
    InvalidDimensionError,
    ModelFormatError,
    UnboundDimensionError,
)

#: Default domain name (the protobuf's empty string).
ONNX_DOMAIN = "ai.onnx"
#: Largest element count one tensor may have before the graph is called absurd (2**40 elements).
MAX_TENSOR_ELEMENTS = 1 << 40


@dataclass(frozen=True)
class TensorInfo:
    """Shape and element type of one tensor.

    Attributes:
        name: tensor name in the graph.
        shape: concrete dimensions, or ``None`` when the shape could not be determined.
        dtype: element type name (``float32``, ``float16``, ``int8``, ...; ``undefined`` if unknown).
    """

    name: str
    shape: tuple[int, ...] | None
    dtype: str

    @property
    def numel(self) -> int | None:
        """Element count, or None when the shape is unknown."""
        return None if self.shape is None else math.prod(self.shape)

    @property
    def nbytes(self) -> int | None:
        """Storage in bytes, or None when the shape is unknown."""
        n = self.numel
        return None if n is None else storage_bytes(n, self.dtype)


@dataclass(frozen=True)
class Node:
    """One ONNX node.

    Attributes:
        index: position in the graph's topological order.
        name: node name (made unique: ``op_type_index`` when the model left it empty).
        op_type: ONNX op type, e.g. ``Conv``.
        domain: canonical domain (``ai.onnx`` for the default domain).
        inputs: input tensor names; ``""`` for an omitted optional input.
        outputs: output tensor names; ``""`` for an omitted optional output.
        attributes: attribute values decoded to Python / numpy (subgraphs are in ``subgraphs``).
        subgraphs: graph attributes (Loop ``body``, If ``then_branch``/``else_branch``, Scan ``body``).
        constant_folded: every input is a constant, so a runtime folds the node at load time.
    """

    index: int
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: Mapping[str, Any]
    subgraphs: Mapping[str, Graph] = field(default_factory=dict)
    constant_folded: bool = False


@dataclass(frozen=True)
class Graph:
    """A loaded, shaped ONNX graph, nodes in topological order. Immutable.

    Attributes:
        name: graph name.
        nodes: nodes in topological order.
        tensors: every known tensor name -> :class:`TensorInfo` (includes outer-scope ones in subgraphs).
        inputs: names of the real (non-constant) graph inputs.
        outputs: names of the graph outputs.
        opsets: domain -> opset version imported by the model.
        constant_roots: constant tensor name -> the name of the stored constant it is a view/copy of
            (an initializer, a ``Constant`` output, a ``ConstantOfShape`` output). Roots map to themselves.
        constants: values of small constants (shape arithmetic, axes, trip counts) known at load time.
        producers: tensor name -> index of the node that produces it.
        symbolic_bindings: symbolic dimension name -> the value it was bound to.
        ir_version: the model's IR version.
    """

    name: str
    nodes: tuple[Node, ...]
    tensors: Mapping[str, TensorInfo]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opsets: Mapping[str, int]
    constant_roots: Mapping[str, str]
    constants: Mapping[str, np.ndarray]
    producers: Mapping[str, int]
    symbolic_bindings: Mapping[str, int] = field(default_factory=dict)
    ir_version: int = 0

    def tensor(self, name: str) -> TensorInfo | None:
        """The :class:`TensorInfo` of ``name``, or None for an omitted/unknown tensor."""
        return self.tensors.get(name) if name else None

    def is_constant(self, name: str) -> bool:
        """Whether tensor ``name`` is known at load time (derived from stored constants only)."""
        return name in self.constant_roots

    def constant_value(self, name: str) -> np.ndarray | None:
        """Value of a small constant known at load time, or None."""
        return self.constants.get(name)

    def opset(self, domain: str) -> int:
        """Opset version the model imports for ``domain`` (1 when it imports none)."""
        return self.opsets.get(domain, 1)

    @property
    def batch(self) -> int:
        """Samples per inference: the leading dimension of the first input with a known shape (1 if none)."""
        for name in self.inputs:
            info = self.tensors.get(name)
            if info is not None and info.shape:
                return int(info.shape[0])
        return 1


# --------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------

#: Ops that forward a stored constant unchanged in content (a view, a copy or a re-encoding of the same
#: elements): a weight seen through them keeps the stored tensor as its parameter root.
CONSTANT_FORWARDING_OPS = frozenset(
    {
        "Identity",
        "Cast",
        "CastLike",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "DequantizeLinear",
        "Expand",
        "Tile",
    }
)
#: Ops never folded at load time even when their inputs are constant.
_NEVER_FOLDED = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Loop",
        "If",
        "Scan",
    }
)
#: Small constants (at most this many elements) keep their values for rules and shape folding.
_SMALL_CONSTANT_ELEMENTS = 4096
#: Initializers at most this large stay initializers for ONNX's data propagation; larger ones become typed inputs.
_INFERENCE_INITIALIZER_ELEMENTS = 4096
#: Element types of 1-D tensors that may hold shapes (kept at their known length for data propagation).
_SHAPE_DTYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})


def load_graph(
    source: str | os.PathLike[str] | bytes | onnx.ModelProto,
    *,
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> Graph:
    """Load an ONNX model into a shaped :class:`Graph` without reading any weight data.

    Args:
        source: a path to a ``.onnx`` file, the serialized bytes, or an ``onnx.ModelProto`` (not modified).
        batch: binds the leading dimension of every input whose leading dimension is symbolic.
        shapes: ``{input_name: dims}`` to set an input's whole shape, or ``{dim_param: (value,)}`` to bind a
            symbolic dimension by its name (e.g. ``{"sequence_length": (128,)}``).

    Raises:
        InputFileError, ModelFormatError, GraphStructureError, UnboundDimensionError, InvalidDimensionError.
    """
    model = _read_model(source)
    return _build(model, batch=batch, shapes=dict(shapes or {}))


def _read_model(source: str | os.PathLike[str] | bytes | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        model = source
    elif isinstance(source, (bytes, bytearray, memoryview)):
        model = _parse(bytes(source), "the given bytes")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputFileError(f"{path}: no such file; give the path of an .onnx model")
        if path.is_dir():
            raise InputFileError(f"{path}: is a directory; give the path of an .onnx model file inside it")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
        model = _parse(data, str(path))
    else:
        raise InputFileError(
            f"cannot load a model from a {type(source).__name__}; give a path, bytes or an onnx.ModelProto"
        )
    if not model.HasField("graph") or not model.opset_import:
        raise ModelFormatError(
            "the input is not an ONNX model (no graph or no opset import); export it to ONNX"
        )
    return model


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    if not data:
        raise ModelFormatError(f"{what}: is empty, not an ONNX model; re-export or re-download it")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf raises DecodeError or RuntimeWarning-derived errors depending on backend
        raise ModelFormatError(
            f"{what}: is not a readable ONNX protobuf (truncated or corrupted?); re-export or re-download it"
        ) from None
    if not model.HasField("graph") or not model.opset_import or model.ir_version <= 0:
        raise ModelFormatError(
            f"{what}: is not an ONNX model (no graph, IR version or opset); export it to ONNX"
        )
    return model


def _build(model: onnx.ModelProto, *, batch: int | None, shapes: dict[str, Sequence[int]]) -> Graph:
    opsets = {canonical_domain(o.domain): int(o.version) for o in model.opset_import}
    graph = model.graph
    for node in _iter_all_nodes(graph):
        if canonical_domain(node.domain) not in opsets:
            raise ModelFormatError(
                f"node '{node.name or node.op_type}' ({node.op_type}) uses domain '{node.domain}', which the "
                f"model does not import; the file is malformed: re-export it"
            )
    initializer_names = {t.name for t in graph.initializer} | {t.name for t in graph.sparse_initializer}
    real_inputs = [vi for vi in graph.input if vi.name not in initializer_names]
    order = _topological_order(
        graph, available={vi.name for vi in graph.input} | initializer_names, outer=set()
    )
    bindings = _bind_dimensions(real_inputs, batch, shapes)

    inferred = _infer(_light_model(model, real_inputs, bindings))
    types = _collect_types(inferred.graph)
    for t in graph.initializer:
        types[t.name] = (tuple(int(d) for d in t.dims), dtype_name(t.data_type))
    constants: dict[str, np.ndarray] = {}
    for t in graph.initializer:
        if _numel(t.dims) <= _SMALL_CONSTANT_ELEMENTS and not _is_external(t):
            constants[t.name] = onnx.numpy_helper.to_array(t)

    # The project's own propagation where ONNX's falls short: fold small shape arithmetic, shape contrib ops,
    # then let ONNX's inference continue from what was learned: a round per chain of contrib ops at most
    # (an int4 decoder has 4 MatMulNBits in a row per block, each waiting for ONNX to shape its input).
    ordered = [graph.node[i] for i in order]
    attributes = {i: _decode_attributes(graph.node[i]) for i in order}
    ordered_attrs = [attributes[i] for i in order]
    for _ in range(4 + sum(canonical_domain(n.domain) != ONNX_DOMAIN for n in ordered)):
        learned = _propagate(ordered, ordered_attrs, types, constants)
        if not learned or all(
            types.get(o, (None, ""))[0] is not None for n in ordered for o in n.output if o
        ):
            break
        inferred = _infer(
            _light_model(model, real_inputs, bindings, extra_types=types, extra_constants=constants)
        )
        types.update({k: v for k, v in _collect_types(inferred.graph).items() if v[0] is not None})

    symbols = {k[5:]: v[0] for k, v in bindings.items() if k.startswith("\0sym:")}
    return _freeze(
        inferred.graph,
        order,
        types,
        constants,
        opsets,
        initializer_names,
        real_inputs=tuple(vi.name for vi in real_inputs),
        outer_roots={},
        symbols=symbols,
        ir_version=model.ir_version,
        attributes=attributes,
    )


def _topological_order(graph: onnx.GraphProto, available: set[str], outer: set[str]) -> list[int]:
    """Node indices in topological order, the file's order wherever it allows; errors on cycles and dangling uses."""
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for o in node.output:
            if o:
                producer[o] = i
    consumers: dict[int, list[int]] = {}
    pending = [0] * len(graph.node)
    for i, node in enumerate(graph.node):
        for name in _node_reads(node):
            if name in producer:
                pending[i] += 1
                consumers.setdefault(producer[name], []).append(i)
            elif name not in available and name not in outer:
                raise GraphStructureError(
                    f"node '{node.name or node.op_type}' ({node.op_type}) reads '{name}', which no node, input "
                    f"or initializer provides; the graph is malformed: re-export it"
                )
    heap = [i for i, p in enumerate(pending) if p == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        i = heapq.heappop(heap)
        order.append(i)
        for j in consumers.get(i, ()):
            pending[j] -= 1
            if pending[j] == 0:
                heapq.heappush(heap, j)
    if len(order) != len(graph.node):
        stuck = next(graph.node[i] for i, p in enumerate(pending) if p > 0)
        raise GraphStructureError(
            f"the graph has a cycle (through node '{stuck.name or stuck.op_type}', {stuck.op_type}); an ONNX graph "
            f"must be acyclic: re-export the model"
        )
    return order


def _node_reads(node: onnx.NodeProto) -> set[str]:
    """Tensors a node reads: its inputs and the outer-scope names its subgraphs use."""
    reads = {name for name in node.input if name}
    for attr in node.attribute:
        subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in subs:
            reads |= _outer_names(g)
    return reads


def _outer_names(graph: onnx.GraphProto) -> set[str]:
    defined = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used |= _node_reads(node)
        defined |= {o for o in node.output if o}
    return used - defined


def canonical_domain(domain: str) -> str:
    """``""`` and ``"ai.onnx"`` both name the default domain; return ``"ai.onnx"`` for either."""
    return ONNX_DOMAIN if domain in ("", ONNX_DOMAIN) else domain


def _iter_all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _iter_all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _iter_all_nodes(g)


def _numel(dims: Sequence[int]) -> int:
    return math.prod(int(d) for d in dims)


def _is_external(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL


def _dims_of(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    """Declared dims of a value info: ints, dim_param names, or None for an anonymous unknown dim."""
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _bind_dimensions(
    inputs: Sequence[onnx.ValueInfoProto], batch: int | None, shapes: dict[str, Sequence[int]]
) -> dict[str, tuple[int, ...]]:
    """Concrete shape of every real input, from declared dims, ``shapes`` and ``batch``; errors name the dim."""
    input_names = {vi.name for vi in inputs}
    symbols: dict[str, int] = {}
    for key, dims in shapes.items():
        dims = tuple(int(d) for d in dims)
        if key not in input_names:
            declared = {d for vi in inputs for d in (_dims_of(vi) or []) if isinstance(d, str)}
            if key in declared and len(dims) == 1:
                symbols[key] = dims[0]
                continue
            known = ", ".join(sorted(input_names)) or "none"
            raise UnboundDimensionError(
                f"--shape names '{key}', which is neither an input of the model nor one of its symbolic "
                f"dimensions; inputs are: {known}"
            )
    if batch is not None and batch < 1:
        raise InvalidDimensionError(f"batch must be a positive integer, got {batch}")

    bound: dict[str, tuple[int, ...]] = {}
    for vi in inputs:
        declared = _dims_of(vi)
        if vi.name in shapes:
            dims = tuple(int(d) for d in shapes[vi.name])
            if declared is not None and len(declared) != len(dims):
                raise InvalidDimensionError(
                    f"--shape {vi.name} has {len(dims)} dimensions but the model declares {len(declared)} "
                    f"({_fmt_dims(declared)}); give all {len(declared)}"
                )
            if declared is not None:
                for d, v in zip(declared, dims, strict=True):
                    if isinstance(d, str):
                        symbols.setdefault(d, v)
            bound[vi.name] = dims
            continue
        if declared is None:
            raise UnboundDimensionError(
                f"input '{vi.name}' has no declared shape; give it with --shape {vi.name}=DIMS (e.g. 1x3x224x224)"
            )
        if batch is not None and declared and not isinstance(declared[0], int):
            if isinstance(declared[0], str):
                symbols.setdefault(declared[0], batch)
            declared = [batch, *declared[1:]]
        dims_out = []
        for axis, d in enumerate(declared):
            if isinstance(d, int):
                dims_out.append(d)
            elif isinstance(d, str) and d in symbols:
                dims_out.append(symbols[d])
            else:
                what = f"'{d}'" if d else "unnamed"
                hint = f" (or --shape {d}=N)" if d else ""
                batch_hint = " or --batch N" if axis == 0 else ""
                raise UnboundDimensionError(
                    f"input '{vi.name}' dimension {axis} ({what}) of shape {_fmt_dims(declared)} is symbolic; "
                    f"bind it with --shape {vi.name}=DIMS{hint}{batch_hint}"
                )
        bound[vi.name] = tuple(dims_out)
    for name, dims in bound.items():
        if any(d <= 0 for d in dims):
            raise InvalidDimensionError(
                f"input '{name}' would have shape {_fmt_dims(dims)}: every dimension must be a positive integer"
            )
        if math.prod(dims) > MAX_TENSOR_ELEMENTS:
            raise InvalidDimensionError(
                f"input '{name}' would have shape {_fmt_dims(dims)} ({math.prod(dims):.3g} elements), which is "
                f"absurdly large; check --batch / --shape"
            )
    bound.update({f"\0sym:{k}": (v,) for k, v in symbols.items()})
    return bound


def _fmt_dims(dims: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _light_model(
    model: onnx.ModelProto,
    real_inputs: Sequence[onnx.ValueInfoProto],
    bindings: dict[str, tuple[int, ...]],
    *,
    extra_types: Mapping[str, tuple[tuple[int, ...] | None, str]] | None = None,
    extra_constants: Mapping[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    """A copy of the model for shape inference: bound input shapes, large initializers as typed inputs."""
    src = model.graph
    g = onnx.GraphProto(name=src.name)
    g.node.extend(src.node)
    symbols = {k[5:]: v[0] for k, v in bindings.items() if k.startswith("\0sym:")}
    known_constants = dict(extra_constants or {})
    for vi in real_inputs:
        elem = vi.type.tensor_type.elem_type
        g.input.append(onnx.helper.make_tensor_value_info(vi.name, elem, list(bindings[vi.name])))
    for t in src.initializer:
        if _numel(t.dims) <= _INFERENCE_INITIALIZER_ELEMENTS and not _is_external(t):
            g.initializer.append(t)
            known_constants.pop(t.name, None)
        else:
            dims: list[int | str] = [int(d) for d in t.dims]
            if len(dims) == 1 and t.data_type not in _SHAPE_DTYPES:
                # ONNX's data propagation keeps ~70 B per element of a 1-D input of known length (a 65B LLM's
                # biases: ~400 MB). Its length is restored from the initializer after inference.
                dims = [f"__len_{t.name}"]
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, dims))
    for st in src.sparse_initializer:
        g.sparse_initializer.append(st)
    for name, value in known_constants.items():
        if value.dtype != object:
            g.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), name))
    for vi in src.output:
        g.output.append(_substituted(vi, symbols))
    for vi in src.value_info:
        g.value_info.append(_substituted(vi, symbols))
    if extra_types:
        have = (
            {vi.name for vi in g.value_info} | {vi.name for vi in g.input} | {t.name for t in g.initializer}
        )
        for name, (shape, dtype) in extra_types.items():
            if name in have or shape is None or dtype == "undefined":
                continue
            g.value_info.append(onnx.helper.make_tensor_value_info(name, _ONNX_CODE[dtype], list(shape)))
    # IR >= 4 lets initializers stand without being graph inputs (older IRs required both).
    out = onnx.ModelProto(ir_version=max(model.ir_version, 4), graph=g)
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    return out


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


def _collect_types(graph: onnx.GraphProto) -> dict[str, tuple[tuple[int, ...] | None, str]]:
    types: dict[str, tuple[tuple[int, ...] | None, str]] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        if not vi.type.HasField("tensor_type"):
            continue
        dims = _dims_of(vi)
        shape = tuple(dims) if dims is not None and all(isinstance(d, int) for d in dims) else None
        types[vi.name] = (shape, dtype_name(vi.type.tensor_type.elem_type))  # type: ignore[arg-type]
    return types


# --------------------------------------------------------------------------------------------------------------
# The project's own propagation: small constant folding (numpy) and contrib-domain shapes
# --------------------------------------------------------------------------------------------------------------

Types = dict[str, tuple[tuple[int, ...] | None, str]]


def _propagate(
    nodes: Sequence[onnx.NodeProto],
    node_attrs: Sequence[dict[str, Any]],
    types: Types,
    constants: dict[str, np.ndarray],
) -> bool:
    """One pass in topological order; returns whether any new shape or constant value was learned."""
    from estimator.graph.contrib_shapes import infer_contrib_outputs

    learned = False
    for node, attrs in zip(nodes, node_attrs, strict=True):
        outputs = [o for o in node.output if o]
        if not outputs:
            continue
        domain = canonical_domain(node.domain)
        if domain == ONNX_DOMAIN and node.op_type in _FOLDERS and any(o not in constants for o in outputs):
            values = _fold(node, attrs, types, constants)
            if values is not None:
                for name, value in zip(node.output, values, strict=False):
                    if not name or value.size > _SMALL_CONSTANT_ELEMENTS:
                        continue
                    constants[name] = value
                    learned = True
                    if types.get(name, (None, ""))[0] is None:
                        types[name] = (tuple(int(d) for d in value.shape), _np_dtype_name(value.dtype))
        if all(types.get(o, (None, ""))[0] is not None for o in outputs):
            continue
        in_shapes = [types.get(i, (None, ""))[0] if i else None for i in node.input]
        in_dtypes = [types.get(i, (None, "undefined"))[1] if i else "undefined" for i in node.input]
        in_values = [constants.get(i) if i else None for i in node.input]
        result = infer_contrib_outputs(
            domain, node.op_type, attrs, in_shapes, in_dtypes, in_values, len(node.output)
        )
        if result is None:
            continue
        for name, (shape, dtype) in zip(node.output, result, strict=False):
            if name and shape is not None and types.get(name, (None, ""))[0] is None:
                types[name] = (tuple(int(d) for d in shape), dtype)
                learned = True
    return learned


def _np_dtype_name(dtype: np.dtype) -> str:
    name = np.dtype(dtype).name
    return "bool" if name == "bool_" else name


def _fold(
    node: onnx.NodeProto, attrs: Mapping[str, Any], types: Types, constants: Mapping[str, np.ndarray]
) -> list[np.ndarray] | None:
    """Evaluate a shape-arithmetic node with numpy when its inputs are known; None when it cannot."""
    op = node.op_type
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
    args = [constants.get(i) if i else None for i in node.input]
    required = [a for i, a in zip(node.input, args, strict=True) if i]
    if any(a is None for a in required):
        return None
    if op == "ConstantOfShape" and math.prod(int(d) for d in args[0].reshape(-1)) > _SMALL_CONSTANT_ELEMENTS:
        return None  # a weight fill: its shape is known from its input, its value is not needed
    try:
        return _FOLDERS[op](args, attrs)
    except Exception:  # a fold that fails simply teaches nothing; ONNX inference and cost rules decide later
        return None


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


def _fold_constant_of_shape(args: list, attrs: dict) -> list[np.ndarray]:
    shape = [int(d) for d in args[0]]
    if math.prod(shape) > _SMALL_CONSTANT_ELEMENTS:
        raise ValueError("too large to fold")
    value = attrs.get("value")
    fill = value.reshape(-1)[0] if isinstance(value, np.ndarray) else np.float32(0)
    return [np.full(shape, fill, dtype=np.asarray(fill).dtype)]


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
}


# --------------------------------------------------------------------------------------------------------------
# Freezing into the Graph dataclasses
# --------------------------------------------------------------------------------------------------------------


def _decode_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """Node attributes as Python values: ints, floats, str, lists, numpy arrays for tensors; graphs skipped."""
    out: dict[str, Any] = {}
    for attr in node.attribute:
        t = attr.type
        if t == onnx.AttributeProto.INT:
            out[attr.name] = int(attr.i)
        elif t == onnx.AttributeProto.FLOAT:
            out[attr.name] = float(attr.f)
        elif t == onnx.AttributeProto.STRING:
            out[attr.name] = attr.s.decode("utf-8", errors="replace")
        elif t == onnx.AttributeProto.INTS:
            out[attr.name] = [int(v) for v in attr.ints]
        elif t == onnx.AttributeProto.FLOATS:
            out[attr.name] = [float(v) for v in attr.floats]
        elif t == onnx.AttributeProto.STRINGS:
            out[attr.name] = [v.decode("utf-8", errors="replace") for v in attr.strings]
        elif t == onnx.AttributeProto.TENSOR:
            out[attr.name] = None if _is_external(attr.t) else onnx.numpy_helper.to_array(attr.t)
    return out


def _freeze(
    graph: onnx.GraphProto,
    order: Sequence[int],
    types: Types,
    constants: dict[str, np.ndarray],
    opsets: Mapping[str, int],
    initializer_names: set[str],
    *,
    real_inputs: tuple[str, ...],
    outer_roots: Mapping[str, str],
    symbols: Mapping[str, int],
    ir_version: int,
    outer_tensors: Mapping[str, TensorInfo] | None = None,
    attributes: Mapping[int, dict[str, Any]] | None = None,
) -> Graph:
    roots: dict[str, str] = dict(outer_roots)
    roots.update({name: name for name in initializer_names})
    nodes: list[Node] = []
    producers: dict[str, int] = {}
    used_names: set[str] = set()
    tensors: dict[str, TensorInfo] = dict(outer_tensors or {})
    for name, (shape, dtype) in types.items():
        tensors[name] = TensorInfo(name, shape, dtype)

    for position, i in enumerate(order):
        proto = graph.node[i]
        attrs = attributes[i] if attributes is not None else _decode_attributes(proto)
        name = proto.name if proto.name and proto.name not in used_names else f"{proto.op_type}_{i}"
        used_names.add(name)
        inputs = tuple(proto.input)
        outputs = tuple(proto.output)
        reads = [x for x in inputs if x]
        folded = proto.op_type not in _NEVER_FOLDED and (
            all(x in roots for x in reads)
            or (proto.op_type in ("Shape", "Size") and tensors.get(reads[0], TensorInfo("", None, "")).shape)
        )
        if folded:
            if proto.op_type in CONSTANT_FORWARDING_OPS and reads and reads[0] in roots:
                roots[outputs[0]] = roots[reads[0]]
            else:
                source = _derived_from(proto, reads, roots, tensors)
                roots.update({o: source or o for o in outputs if o})
        subgraphs: dict[str, Graph] = {}
        for attr in proto.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                subgraphs[attr.name] = _freeze_subgraph(attr.g, opsets, roots, tensors, constants, symbols)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for k, g in enumerate(attr.graphs):
                    subgraphs[f"{attr.name}[{k}]"] = _freeze_subgraph(
                        g, opsets, roots, tensors, constants, symbols
                    )
        for o in outputs:
            if o:
                producers[o] = position
                if o not in tensors:
                    tensors[o] = TensorInfo(o, None, "undefined")
        nodes.append(
            Node(
                index=position,
                name=name,
                op_type=proto.op_type,
                domain=canonical_domain(proto.domain),
                inputs=inputs,
                outputs=outputs,
                attributes=attrs,
                subgraphs=subgraphs,
                constant_folded=bool(folded),
            )
        )

    _check_reshapes(nodes, tensors)
    for info in tensors.values():
        if info.shape is not None and info.numel is not None and info.numel > MAX_TENSOR_ELEMENTS:
            raise InvalidDimensionError(
                f"tensor '{info.name}' would have shape {_fmt_dims(info.shape)} ({info.numel:.3g} elements), "
                f"which is absurdly large; check --batch / --shape and the model"
            )
        if info.shape is not None and any(d < 0 for d in info.shape):
            raise InvalidDimensionError(
                f"tensor '{info.name}' has a negative dimension {_fmt_dims(info.shape)}"
            )
    return Graph(
        name=graph.name,
        nodes=tuple(nodes),
        tensors=tensors,
        inputs=real_inputs,
        outputs=tuple(vi.name for vi in graph.output),
        opsets=dict(opsets),
        constant_roots=roots,
        constants=constants,
        producers=producers,
        symbolic_bindings=dict(symbols),
        ir_version=ir_version,
    )


def _check_reshapes(nodes: Sequence[Node], tensors: Mapping[str, TensorInfo]) -> None:
    """A Reshape must keep the element count; when it does not, a shape was baked in at export."""
    for node in nodes:
        if node.op_type != "Reshape" or not node.inputs or not node.outputs:
            continue
        src, dst = tensors.get(node.inputs[0]), tensors.get(node.outputs[0])
        if src is None or dst is None or src.numel is None or dst.numel is None or src.numel == dst.numel:
            continue
        raise InvalidDimensionError(
            f"Reshape '{node.name}' turns {_fmt_dims(src.shape or ())} into {_fmt_dims(dst.shape or ())}: the "
            f"model has a fixed shape baked in (often batch 1); use its exported shape or re-export it with "
            f"dynamic axes"
        )


def _derived_from(
    proto: onnx.NodeProto, reads: Sequence[str], roots: Mapping[str, str], tensors: Mapping[str, TensorInfo]
) -> str | None:
    """The stored constant a folded node's output is a part of (a Gather of an embedding table at constant
    positions, a scaled weight): the root of its largest constant input when that input has at least as many
    elements as the output. None when the output is a new constant (a fill, a range, shape arithmetic)."""
    if proto.op_type == "ConstantOfShape" or not proto.output or not proto.output[0]:
        return None
    out = tensors.get(proto.output[0])
    if out is None or out.numel is None:
        return None
    best, best_numel = None, -1
    for name in reads:
        info = tensors.get(name)
        if name in roots and info is not None and info.numel is not None and info.numel > best_numel:
            best, best_numel = name, info.numel
    return roots[best] if best is not None and best_numel >= out.numel and best_numel > 1 else None


def _freeze_subgraph(
    g: onnx.GraphProto,
    opsets: Mapping[str, int],
    outer_roots: Mapping[str, str],
    outer_tensors: Mapping[str, TensorInfo],
    outer_constants: Mapping[str, np.ndarray],
    symbols: Mapping[str, int],
) -> Graph:
    initializer_names = {t.name for t in g.initializer}
    available = {vi.name for vi in g.input} | initializer_names
    order = _topological_order(g, available=available, outer=set(outer_tensors))
    types = _collect_types(g)
    for t in g.initializer:
        types[t.name] = (tuple(int(d) for d in t.dims), dtype_name(t.data_type))
    constants = dict(outer_constants)
    for t in g.initializer:
        if _numel(t.dims) <= _SMALL_CONSTANT_ELEMENTS and not _is_external(t):
            constants[t.name] = onnx.numpy_helper.to_array(t)
    attributes = {i: _decode_attributes(g.node[i]) for i in order}
    _propagate([g.node[i] for i in order], [attributes[i] for i in order], types, constants)
    return _freeze(
        g,
        order,
        types,
        constants,
        opsets,
        initializer_names,
        real_inputs=tuple(vi.name for vi in g.input),
        outer_roots=outer_roots,
        symbols=symbols,
        ir_version=0,
        outer_tensors=outer_tensors,
        attributes=attributes,
    )
