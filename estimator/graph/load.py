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

import os
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx.numpy_helper

from estimator.errors import ModelFormatError
from estimator.graph.binding import REBATCH_KEY, _bind_dimensions
from estimator.graph.folding import _propagate
from estimator.graph.freeze import CONSTANT_FORWARDING_OPS, _decode_attributes, _freeze, add_stored
from estimator.graph.inference import _collect_types, _infer, _light_model, symbolic_lengths
from estimator.graph.reading import (
    NodeView,
    StoredTensor,
    _iter_all_nodes,
    _read_model,
    _topological_order,
    is_stored_order,
    node_views,
    stored_tensors,
)
from estimator.graph.rebatch import rebatch_model
from estimator.graph.structure import (
    MAX_TENSOR_ELEMENTS,
    ONNX_DOMAIN,
    Graph,
    Node,
    TensorInfo,
    canonical_domain,
)
from estimator.graph.validate import _check_model_fields, _checked_arguments

__all__ = [
    "CONSTANT_FORWARDING_OPS",
    "MAX_TENSOR_ELEMENTS",
    "ONNX_DOMAIN",
    "Graph",
    "Node",
    "TensorInfo",
    "canonical_domain",
    "load_graph",
]


#: Rounds of (own propagation, then ONNX's inference again) at most. Each round lets shapes computed at run time
#: flow one step further (Swin's window partition needs one per stage, GPT-1 one per layer: its head size is a
#: Div, which ONNX's data propagation skips); most graphs converge in one or two.
MAX_PROPAGATION_ROUNDS = 64


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
    batch, shapes = _checked_arguments(batch, shapes)
    model = _read_model(source)
    views = node_views(model.graph)
    stored = stored_tensors(model.graph)
    _check_model_fields(model, views, stored)
    return _build(model, views, stored, batch=batch, shapes=shapes)


def _build(
    model: onnx.ModelProto,
    views: list[NodeView],
    stored: list[StoredTensor],
    *,
    batch: int | None,
    shapes: dict[str, Sequence[int]],
) -> Graph:
    opsets = {canonical_domain(o.domain): int(o.version) for o in model.opset_import}
    graph = model.graph
    nested = any(v.has_subgraphs for v in views)
    for node in (
        _all_nodes(views)
        if nested or any(canonical_domain(d) not in opsets for d in {v.domain for v in views})
        else ()
    ):
        if canonical_domain(node.domain) not in opsets:
            raise ModelFormatError(
                f"node '{node.name or node.op_type}' ({node.op_type}) uses domain '{node.domain}', which the "
                f"model does not import; the file is malformed: re-export it"
            )
    initializer_names = {t.name for t in stored} | {t.name for t in graph.sparse_initializer}
    real_inputs = [vi for vi in graph.input if vi.name not in initializer_names]
    order = _topological_order(
        graph, available={vi.name for vi in graph.input} | initializer_names, outer=set(), views=views
    )
    bindings = _bind_dimensions(real_inputs, batch, shapes)
    if REBATCH_KEY in bindings:
        exported, new_batch = bindings[REBATCH_KEY]
        model = rebatch_model(model, order, [vi.name for vi in real_inputs], exported, new_batch)
        graph = model.graph
        views = node_views(graph)
        stored = stored_tensors(graph)
        initializer_names = {t.name for t in stored} | {t.name for t in graph.sparse_initializer}
        real_inputs = [vi for vi in graph.input if vi.name not in initializer_names]

    inferred = _infer(_light_model(model, real_inputs, bindings, order=order, stored=stored))
    lengths = symbolic_lengths(graph, stored)
    types = _collect_types(inferred.graph, lengths, stored)  # add_stored types the stored tensors
    constants: dict[str, np.ndarray] = {}
    add_stored(stored, types, constants)

    # The project's own propagation where ONNX's falls short: fold small shape arithmetic, shape contrib ops,
    # then let ONNX's inference continue from what was learned, until nothing new is learned.
    ordered = views if is_stored_order(order) else [views[i] for i in order]
    # A view without tensor attributes holds its decoded values already (NodeView.decoded).
    ordered_attrs = [
        v.decoded if not v.tensor_keys and v.decoded is not None else _decode_attributes(v) for v in ordered
    ]
    # A round per chain of contrib ops at most (an int4 decoder has 4 MatMulNBits in a row per block, each
    # waiting for ONNX to shape its input), and at least MAX_PROPAGATION_ROUNDS.
    contrib_nodes = sum(1 for n in ordered if n.domain not in ("", ONNX_DOMAIN))
    for _ in range(max(MAX_PROPAGATION_ROUNDS, 4 + contrib_nodes)):
        learned = _propagate(ordered, ordered_attrs, types, constants)
        if not learned or all(
            types.get(o, (None, ""))[0] is not None for n in ordered for o in n.output if o
        ):
            break
        inferred = _infer(
            _light_model(
                model,
                real_inputs,
                bindings,
                extra_types=types,
                extra_constants=constants,
                order=order,
                stored=stored,
            )
        )
        # The stored tensors' types are known (from add_stored): only the computed ones are read again.
        again = _collect_types(inferred.graph, lengths, stored)
        types.update({k: v for k, v in again.items() if v[0] is not None})

    symbols = {k[5:]: v[0] for k, v in bindings.items() if k.startswith("\0sym:")}
    # The inferred graph holds the nodes in topological order (and ONNX's shapes inside subgraphs).
    return _freeze(
        inferred.graph,
        range(len(order)),
        types,
        constants,
        opsets,
        initializer_names,
        real_inputs=tuple(vi.name for vi in real_inputs),
        outer_roots={},
        symbols=symbols,
        ir_version=model.ir_version,
        attributes=ordered_attrs,
        views=ordered,
    )


def _all_nodes(views: list[NodeView]):
    """The nodes of the main graph (as views) and of every subgraph (as protos)."""
    for view in views:
        yield view
        if view.has_subgraphs:
            for attr in view.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from _iter_all_nodes(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        yield from _iter_all_nodes(g)
