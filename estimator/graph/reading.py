"""Reading an ONNX file (never its weight data) and ordering its nodes topologically."""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Sequence

import onnx

from estimator.errors import GraphStructureError, InputFileError, ModelFormatError
from estimator.fileio import check_input_file


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
