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
    dead = np.zeros(len(graph.nodes), dtype=bool)
    for node in reversed(graph.nodes):
        if not any(o in needed for o in node.outputs if o):
            dead[node.index] = True
            continue
        zero_mul = node.op_type == "Mul" and any(_is_zero_constant(graph, i) for i in node.inputs)
        for name in node.inputs:
            if name and not (zero_mul and not _is_zero_constant(graph, name)):
                needed.add(name)
        for sub in node.subgraphs.values():
            needed.update(name for name in sub.tensors if name not in sub.producers)
    return dead
