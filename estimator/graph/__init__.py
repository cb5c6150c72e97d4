"""Stage 1: an ONNX file becomes a :class:`Graph` - read without weight data, dimensions bound, every tensor's
shape and type inferred (ONNX's inference plus the project's own propagation), constants frozen."""

from estimator.graph.load import (
    MAX_TENSOR_ELEMENTS,
    ONNX_DOMAIN,
    Graph,
    Node,
    TensorInfo,
    canonical_domain,
    load_graph,
)

__all__ = [
    "MAX_TENSOR_ELEMENTS",
    "ONNX_DOMAIN",
    "Graph",
    "Node",
    "TensorInfo",
    "canonical_domain",
    "load_graph",
]
