"""Which nodes a runtime's optimizer can remove as dead code: work whose result is multiplied by zero.

NAS-Bench-201's ``none`` edge exports as ``x * 0``; graph compilers (TFLite's converter, for one) fold a
multiplication by a constant zero and then remove everything that only fed it. A node is *live* when some
graph output needs one of its outputs; ``Mul(x, 0)`` needs only its zero constant, not ``x``. Hardware-free.
"""

from __future__ import annotations

import numpy as np

from estimator.graph.load import Graph


def _is_zero_constant(graph: Graph, name: str) -> bool:
    value = graph.constant_value(name) if name else None
    return value is not None and value.size > 0 and not np.any(value)


def dead_nodes(graph: Graph) -> np.ndarray:
    """Boolean array over ``graph.nodes``: True where no graph output needs the node once ``x * 0`` is folded."""
    needed = set(graph.outputs)
    needed.discard("")  # an omitted name is never needed (set.isdisjoint below relies on it)
    isdisjoint, update, discard = needed.isdisjoint, needed.update, needed.discard
    constants = graph.constants  # Graph.constant_value, read without a call per input
    dead = []
    for node in reversed(graph.nodes):
        if isdisjoint(node.outputs):
            dead.append(node.index)
            continue
        inputs = node.inputs
        if node.op_type == "Mul":
            # Mul(x, 0) needs only its zero constants.
            zeros = [
                name
                for name in inputs
                if name and (value := constants.get(name)) is not None and value.size > 0 and not value.any()
            ]
            update(zeros or inputs)
        else:
            update(inputs)
        discard("")
        if node.subgraphs:
            for sub in node.subgraphs.values():
                update(name for name in sub.tensors if name not in sub.producers)
            discard("")
    out = np.zeros(len(graph.nodes), dtype=bool)
    out[dead] = True
    return out
