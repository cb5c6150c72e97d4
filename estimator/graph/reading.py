"""Reading an ONNX file (never its weight data) and ordering its nodes topologically."""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import onnx
import onnx.numpy_helper

from estimator.errors import GraphStructureError, InputFileError, ModelFormatError
from estimator.fileio import check_input_file
from estimator.graph.stored import (  # noqa: F401  (read from here too)
    SMALL_TENSOR_BYTES,
    RawSize,
    StoredTensor,
    _is_external,
    _numel,
    is_small_tensor,
    stored_tensor,
    stored_tensors,
    to_array_fast,
)


def _read_model(source: str | os.PathLike[str] | bytes | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        model = source
    elif isinstance(source, (bytes, bytearray, memoryview)):
        model = _parse(bytes(source), "the given bytes")
    elif isinstance(source, (str, os.PathLike)):
        path = check_input_file(source, what="model", hint="give the path of an .onnx model file")
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
    except (
        Exception
    ) as exc:  # protobuf raises DecodeError or RuntimeWarning-derived errors depending on backend
        if "depth" in str(exc).lower() or "recursion" in str(exc).lower():
            raise ModelFormatError(
                f"{what}: nests subgraphs deeper than protobuf reads (100 levels); flatten the control flow "
                f"(If / Loop inside one another) and re-export it"
            ) from None
        raise ModelFormatError(
            f"{what}: is not a readable ONNX protobuf (truncated or corrupted?); re-export or re-download it"
        ) from None
    if not model.HasField("graph") or not model.opset_import or model.ir_version <= 0:
        raise ModelFormatError(
            f"{what}: is not an ONNX model (no graph, IR version or opset); export it to ONNX"
        )
    return model


class NodeView(NamedTuple):
    """The fields of one ``NodeProto`` read into Python once (each protobuf field access costs a wrapper object;
    loading reads every node's fields several times). Field names are the proto's, so code reading either works.

    Attributes:
        name, op_type, domain: the proto's strings (bytes where the file holds invalid UTF-8).
        input, output: tensor names; ``""`` for an omitted optional one.
        attribute: the proto's ``AttributeProto`` objects.
        has_subgraphs: whether an attribute holds a graph (Loop, If, Scan bodies).
        attribute_names, attribute_types: each attribute's name and ``AttributeProto`` type, in order.
        tensor_keys: for a node with tensor attributes, per attribute the serialized tensor when it is small
            (:func:`is_small_tensor`: its check and value are remembered under it), else None; ``()`` when the
            node has no tensor attribute.
        decoded: the attribute values decoded as :func:`~estimator.graph.freeze._decode_attributes` decodes them,
            read with the node (decoding raises nothing) except for tensor attributes, which are decoded after
            their checks and are None here until then; None when the node holds two attributes of one name or
            one that is not decoded (a graph), whose values are decoded from the protos in order.
    """

    name: str
    op_type: str
    domain: str
    input: tuple[str, ...]
    output: tuple[str, ...]
    attribute: tuple[onnx.AttributeProto, ...]
    has_subgraphs: bool
    attribute_names: tuple[str, ...] = ()
    attribute_types: tuple[int, ...] = ()
    tensor_keys: tuple[bytes | None, ...] = ()
    decoded: dict[str, Any] | None = None


_GRAPH_TYPES = frozenset({onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS})


def node_views(graph: onnx.GraphProto) -> list[NodeView]:
    """One :class:`NodeView` per node of ``graph`` (not of its subgraphs), in stored order."""
    out = []
    append = out.append
    new_view = tuple.__new__  # NodeView's own __new__ is a Python function; the tuple is the same
    # ``field[:]`` copies a repeated field into a list in one call; ``tuple(field)`` iterates it element by
    # element through the sequence protocol, 2-3x slower.
    for node in graph.node:
        attrs = tuple(node.attribute[:])
        if attrs:
            names = []
            kinds = []
            decoded: dict[str, Any] | None = {}
            for attr in attrs:  # one loop: names, types and values (a comprehension per field makes a frame)
                name = attr.name
                kind = attr.type
                names.append(name)
                kinds.append(kind)
                if kind == _INTS:  # the most common kinds decoded here, without a call
                    decoded[name] = attr.ints[:]
                elif kind == _INT:
                    decoded[name] = int(attr.i)
                elif kind == _TENSOR:
                    decoded[name] = None  # decoded after its check, in place (see _decode_attributes)
                else:
                    decode = ATTRIBUTE_DECODERS.get(kind)
                    if decode is not None:
                        decoded[name] = decode(attr)
            names, kinds = tuple(names), tuple(kinds)
            nested = not _GRAPH_TYPES.isdisjoint(kinds)
            keys = _tensor_keys(attrs, kinds) if _TENSOR in kinds else ()
            if len(decoded) != len(attrs):
                decoded = None  # a repeated name (the last value wins, at the first place) or a graph
        else:
            names = kinds = keys = ()
            nested = False
            decoded = {}
        append(
            new_view(
                NodeView,
                (
                    node.name,
                    node.op_type,
                    node.domain,
                    tuple(node.input[:]),
                    tuple(node.output[:]),
                    attrs,
                    nested,
                    names,
                    kinds,
                    keys,
                    decoded,
                ),
            )
        )
    return out


def _tensor_keys(attrs: tuple[onnx.AttributeProto, ...], kinds: tuple[int, ...]) -> tuple[bytes | None, ...]:
    """Per attribute: the serialized tensor of a small tensor attribute, None for any other."""
    out = []
    for attr, kind in zip(attrs, kinds, strict=True):
        if kind == _TENSOR:
            # is_small_tensor, with the serialized bytes' length standing for ByteSize(): one call, not two.
            t = attr.t
            key = t.SerializeToString() if math.prod(t.dims) <= 4 * SMALL_TENSOR_BYTES else None
            out.append(key if key is not None and len(key) <= SMALL_TENSOR_BYTES else None)
        else:
            out.append(None)
    return tuple(out)


_TENSOR = onnx.AttributeProto.TENSOR
_INT, _INTS = onnx.AttributeProto.INT, onnx.AttributeProto.INTS
#: How each attribute type but tensors and graphs is decoded to Python values.
ATTRIBUTE_DECODERS = {
    onnx.AttributeProto.INT: lambda a: int(a.i),
    onnx.AttributeProto.FLOAT: lambda a: float(a.f),
    onnx.AttributeProto.STRING: lambda a: a.s.decode("utf-8", errors="replace"),
    # ``field[:]``: a new list of Python ints / floats in one call (the protobuf holds them as such).
    onnx.AttributeProto.INTS: lambda a: a.ints[:],
    onnx.AttributeProto.FLOATS: lambda a: a.floats[:],
    onnx.AttributeProto.STRINGS: lambda a: [v.decode("utf-8", errors="replace") for v in a.strings],
}


def _topological_order(
    graph: onnx.GraphProto,
    available: set[str],
    outer: set[str],
    views: Sequence[NodeView] | None = None,
) -> list[int]:
    """Node indices in topological order, the file's order wherever it allows; errors on cycles and dangling uses.
    ``views``: the graph's :func:`node_views`, when the caller has them."""
    if views is not None:
        stored = _stored_order_if_topological(views, available, outer)
        if stored is not None:
            return stored
    nodes = views if views is not None else graph.node
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for o in node.output:
            if o:
                producer[o] = i
    consumers: dict[int, list[int]] = {}
    pending = [0] * len(nodes)
    for i, node in enumerate(nodes):
        reads = _node_reads(node) if views is None or node.has_subgraphs else {x for x in node.input if x}
        for name in reads:
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
    if len(order) != len(nodes):
        stuck = next(nodes[i] for i, p in enumerate(pending) if p > 0)
        raise GraphStructureError(
            f"the graph has a cycle (through node '{stuck.name or stuck.op_type}', {stuck.op_type}); an ONNX graph "
            f"must be acyclic: re-export the model"
        )
    return order


def _stored_order_if_topological(
    views: Sequence[NodeView], available: set[str], outer: set[str]
) -> list[int] | None:
    """``[0, 1, ..., n-1]`` when the stored order is already topological - every name a node reads is produced by
    an earlier node or given (available, outer), no name is produced twice, no node holds a subgraph - which is
    then exactly the order :func:`_topological_order` computes; None when the full algorithm must decide."""
    produced_anywhere: set[str] = set()
    count = 0
    for node in views:
        if node.has_subgraphs:
            return None
        for o in node.output:
            if o:
                produced_anywhere.add(o)
                count += 1
    if len(produced_anywhere) != count:
        return None  # a name produced twice: the full algorithm orders by its last producer
    produced: set[str] = set()
    for node in views:
        for x in node.input:
            if (
                x
                and x not in produced
                and (x in produced_anywhere or (x not in available and x not in outer))
            ):
                return None
        produced.update(node.output)
    return list(range(len(views)))


def is_stored_order(order: Sequence[int]) -> bool:
    """Whether a topological ``order`` is the stored one, ``[0, 1, ..., n-1]`` (one C-level comparison)."""
    return list(order) == list(range(len(order)))


def _node_reads(node: onnx.NodeProto | NodeView) -> set[str]:
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


def _iter_all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _iter_all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _iter_all_nodes(g)
