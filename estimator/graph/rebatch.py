"""Re-binding the batch of a model exported with a fixed one (every timm and Hugging Face export by default).

The leading dimension of the inputs changes from the exported batch ``b0`` to ``n``; the shapes the graph
computes from it follow through ONNX's inference, once the exporter's stored shapes are dropped. What an
exporter baked in as constants is re-bound where its meaning is unambiguous: the target shape of a ``Reshape``
of a tensor computed from the inputs, and the shape of an ``Expand`` or ``ConstantOfShape`` of rank 2 or more,
when its leading entry is ``b0``. Anything else that disagrees is refused later by the loader's checks
(a Reshape that would change the element count) with one line naming the node.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnx.numpy_helper

from estimator.graph.reading import _is_external
from estimator.graph.validate import _has_data

#: Ops whose shape operand (position) may hold the exported batch as its leading entry.
_SHAPE_OPERANDS = {"Reshape": 1, "Expand": 1, "ConstantOfShape": 0}


def rebatch_model(
    model: onnx.ModelProto, order: Sequence[int], inputs: Sequence[str], exported: int, batch: int
) -> onnx.ModelProto:
    """A copy of ``model`` whose baked-in leading dimension ``exported`` is ``batch`` (see the module doc)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    del graph.value_info[:]
    for vi in graph.output:
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    values: dict[str, np.ndarray] = {}
    for t in graph.initializer:
        if len(t.dims) == 1 and t.dims[0] <= 16 and not _is_external(t) and _has_data(t):
            values[t.name] = onnx.numpy_helper.to_array(t)
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            t = node.attribute[0].t
            if len(t.dims) == 1 and t.dims[0] <= 16 and not _is_external(t) and _has_data(t):
                values[node.output[0]] = onnx.numpy_helper.to_array(t)
    runtime = set(inputs)
    patched: dict[str, str] = {}
    for i in order:
        node = graph.node[i]
        reads_runtime = any(name in runtime for name in node.input)
        if reads_runtime:
            runtime.update(o for o in node.output if o)
        position = _SHAPE_OPERANDS.get(node.op_type)
        if position is None or len(node.input) <= position or node.domain not in ("", "ai.onnx"):
            continue
        value = values.get(node.input[position])
        if value is None or value.ndim != 1 or value.size == 0 or int(value[0]) != exported:
            continue
        if node.op_type == "Reshape" and node.input[0] not in runtime:
            continue
        if node.op_type != "Reshape" and value.size < 2:
            continue
        name = node.input[position]
        if name not in patched:
            new = value.copy()
            new[0] = batch
            patched[name] = f"{name}__batch{batch}"
            graph.initializer.append(onnx.numpy_helper.from_array(new, patched[name]))
        node.input[position] = patched[name]
    return out
