"""Freezing the inferred model into the :class:`Graph` dataclasses: constant roots (which stored tensor a
constant is a view of), load-time folding, subgraphs, and the final sanity checks on shapes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper

from estimator.dtypes import dtype_name
from estimator.errors import InvalidDimensionError
from estimator.graph.binding import _fmt_dims
from estimator.graph.folding import _SMALL_CONSTANT_ELEMENTS, _propagate
from estimator.graph.inference import Types, _collect_types
from estimator.graph.reading import (
    ATTRIBUTE_DECODERS,
    NodeView,
    StoredTensor,
    _topological_order,
    stored_tensor,
    stored_tensors,
    to_array_fast,
)
from estimator.graph.structure import (
    MAX_TENSOR_ELEMENTS,
    ONNX_DOMAIN,
    Graph,
    Node,
    TensorInfo,
    frozen_record,
    remember,
    tensor_infos,
)
from estimator.graph.validate import _has_data, is_small_tensor

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
#: Ops whose output selects or repeats elements of their first input (an embedding row, an attention-bias table
#: expanded by constant indices, a slice of a weight): a weight seen through them keeps its stored tensor as its
#: root, however large the selection.
CONSTANT_SELECTING_OPS = frozenset({"Gather", "GatherElements", "GatherND", "Slice", "Pad"})
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


_UNKNOWN = TensorInfo("", None, "")
#: Marks a memo miss or an argument not given (None is a valid value of both).
_MISSING = object()
#: Ops through which a folded node's output keeps its first input's root.
_FORWARDING = CONSTANT_FORWARDING_OPS | CONSTANT_SELECTING_OPS


def _decode_attributes(node: onnx.NodeProto | NodeView) -> dict[str, Any]:
    """Node attributes as Python values: ints, floats, str, lists, numpy arrays for tensors; graphs skipped.
    A view's values were decoded when it was read (:attr:`NodeView.decoded`): its dict is returned, its tensor
    attributes filled in."""
    if isinstance(node, NodeView):
        decoded = node.decoded
        if decoded is None:  # a repeated name or a graph: decoded from the protos, in order
            return _decode_with_tensors(node)
        if node.tensor_keys:
            for attr, name, kind, key in zip(
                node.attribute, node.attribute_names, node.attribute_types, node.tensor_keys, strict=True
            ):
                if kind == _TENSOR:
                    decoded[name] = _decode_tensor(attr, key)
        return decoded
    out: dict[str, Any] = {}
    for attr in node.attribute:
        decode = _DECODERS.get(attr.type)
        if decode is not None:
            out[attr.name] = decode(attr)
    return out


def _decode_with_tensors(node: NodeView) -> dict[str, Any]:
    """:func:`_decode_attributes` of a view from its protos, in order (tensors by their known keys)."""
    out: dict[str, Any] = {}
    keys = node.tensor_keys or (None,) * len(node.attribute)
    for attr, name, kind, key in zip(
        node.attribute, node.attribute_names, node.attribute_types, keys, strict=True
    ):
        if kind == _TENSOR:
            out[name] = _decode_tensor(attr, key)
        else:
            decode = _DECODERS.get(kind)
            if decode is not None:
                out[name] = decode(attr)
    return out


def _decode_tensor(attr: onnx.AttributeProto, key: bytes | object | None = _MISSING) -> np.ndarray | None:
    """The value of a tensor attribute (None without data). ``key``: its :attr:`NodeView.tensor_keys` entry,
    when the caller has it."""
    if key is _MISSING:
        t = attr.t
        key = t.SerializeToString() if is_small_tensor(t) else None
    if key is None:
        view = stored_tensor(attr.t)
        return to_array_fast(view) if not view.external and _has_data(view) else None
    # Small tensor attributes (a ConstantOfShape fill, a Constant shape) repeat across the nodes and the
    # candidates of a NAS loop: decoded once per content (the serialized tensor: name, type, dims and values).
    value = _SMALL_TENSORS.get(key, _MISSING)
    if value is _MISSING:
        t = attr.t
        view = stored_tensor(t)
        value = to_array_fast(view) if not view.external and _has_data(view) else None
        if value is not None:
            value.setflags(write=False)  # shared by every node with this content
        remember(_SMALL_TENSORS, key, value, _SMALL_TENSORS_LIMIT)
    return value


#: Most tensor-attribute values remembered (a bound on memory: at most ~1 MB of keys).
_SMALL_TENSORS_LIMIT = 4096
_SMALL_TENSORS: dict[bytes, np.ndarray | None] = {}


def add_stored(stored: Sequence[StoredTensor], types: Types, constants: dict[str, np.ndarray]) -> None:
    """Enter each stored tensor's type into ``types`` and, for the small ones that hold their data, its value
    into ``constants``. A tensor remembered by content (``key``) has one read-only value, shared by every tensor
    with that content (a NAS loop's candidates repeat their hundreds of shape vectors)."""
    for t in stored:
        types[t.name] = (t.dims, dtype_name(t.data_type))
        key = t.key
        if key is not None:
            value = _STORED_VALUES.get(key, _MISSING)
            if value is _MISSING:
                value = to_array_fast(t) if not t.external and _has_data(t) else None
                if value is not None:
                    value.setflags(write=False)
                remember(_STORED_VALUES, key, value, _SMALL_TENSORS_LIMIT)
            if value is not None:
                constants[t.name] = value
        elif t.numel <= _SMALL_CONSTANT_ELEMENTS and not t.external and _has_data(t):
            constants[t.name] = to_array_fast(t)


#: Values of stored tensors remembered by content (None: no data), at most ``_SMALL_TENSORS_LIMIT``.
_STORED_VALUES: dict[bytes, np.ndarray | None] = {}


_INT, _INTS, _TENSOR = onnx.AttributeProto.INT, onnx.AttributeProto.INTS, onnx.AttributeProto.TENSOR
_DECODERS = {**ATTRIBUTE_DECODERS, onnx.AttributeProto.TENSOR: _decode_tensor}


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
    attributes: Mapping[int, dict[str, Any]] | Sequence[dict[str, Any]] | None = None,
    views: Sequence[NodeView] | None = None,
) -> Graph:
    """The :class:`Graph` of ``graph``'s nodes taken in ``order``. ``views``: their :class:`NodeView` in that
    order (read from the model before inference; ``graph.node`` is read only for subgraphs)."""
    roots: dict[str, str] = dict(outer_roots)
    roots.update({name: name for name in initializer_names})
    nodes: list[Node] = []
    producers: dict[str, int] = {}
    used_names: set[str] = set()
    tensors: dict[str, TensorInfo] = dict(outer_tensors or {})
    tensors.update(tensor_infos(types))
    is_root = roots.__contains__
    tensors_get = tensors.get
    new_record, set_field = object.__new__, object.__setattr__

    for position, i in enumerate(order):
        proto = views[position] if views is not None else graph.node[i]
        attrs = attributes[i] if attributes is not None else _decode_attributes(proto)
        op_type = proto.op_type
        name = proto.name
        if not name or name in used_names:
            name = f"{op_type}_{i}"
        used_names.add(name)
        inputs = tuple(proto.input)
        outputs = tuple(proto.output)
        folded = op_type not in _NEVER_FOLDED and (
            all(map(is_root, filter(None, inputs)))  # every present input is a constant
            or (op_type in ("Shape", "Size") and tensors_get(next(x for x in inputs if x), _UNKNOWN).shape)
        )
        if folded:
            reads = list(filter(None, inputs))
            if op_type in _FORWARDING and reads and reads[0] in roots:
                roots[outputs[0]] = roots[reads[0]]
            else:
                # A fill is a new constant: _derived_from answers None for it without a look.
                source = None if op_type == "ConstantOfShape" else _derived_from(proto, reads, roots, tensors)
                for o in outputs:
                    if o:
                        roots[o] = source or o
        subgraphs: dict[str, Graph] = {}
        # ONNX's shapes inside subgraphs are in the inferred graph's protos.
        has_subgraphs = proto.has_subgraphs if views is not None else True
        for attr in graph.node[i].attribute if has_subgraphs else ():
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
                    tensors[o] = frozen_record(TensorInfo, {"name": o, "shape": None, "dtype": "undefined"})
        node = new_record(Node)  # as frozen_record builds it, without a call per node
        set_field(
            node,
            "__dict__",
            {
                "index": position,
                "name": name,
                "op_type": op_type,
                "domain": proto.domain or ONNX_DOMAIN,  # canonical_domain(domain), inlined
                "inputs": inputs,
                "outputs": outputs,
                "attributes": attrs,
                "subgraphs": subgraphs,
                "constant_folded": bool(folded),
            },
        )
        nodes.append(node)

    _check_reshapes(nodes, tensors)
    _check_shapes(tensors)
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


def _check_shapes(tensors: Mapping[str, TensorInfo]) -> None:
    """No tensor may have an absurd element count or a negative dimension (InvalidDimensionError naming the first,
    in ``tensors``' order)."""
    # A graph holds a few dozen distinct shapes over hundreds of tensors: each shape is checked once, and the
    # tensors are walked in order (for the first one to report) only when a shape fails.
    shapes = {info.shape for info in tensors.values()}
    shapes.discard(None)
    if all(math.prod(shape) <= MAX_TENSOR_ELEMENTS and min(shape, default=0) >= 0 for shape in shapes):
        return
    for info in tensors.values():
        if info.shape is None:
            continue
        if info.numel > MAX_TENSOR_ELEMENTS:
            raise InvalidDimensionError(
                f"tensor '{info.name}' would have shape {_fmt_dims(info.shape)} ({info.numel:.3g} elements), "
                f"which is absurdly large; check --batch / --shape and the model"
            )
        if info.shape and min(info.shape) < 0:
            raise InvalidDimensionError(
                f"tensor '{info.name}' has a negative dimension {_fmt_dims(info.shape)}"
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
    stored = stored_tensors(g)
    initializer_names = {t.name for t in stored}
    available = {vi.name for vi in g.input} | initializer_names
    order = _topological_order(g, available=available, outer=set(outer_tensors))
    types = _collect_types(g)
    constants = dict(outer_constants)
    add_stored(stored, types, constants)
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
