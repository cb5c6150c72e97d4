"""Joules per inference of an ONNX network on a given hardware, estimated without the hardware."""

from estimator import _compat
from estimator.errors import EstimatorError
from estimator.graph import Graph, load_graph

__version__ = "0.1.0"

__all__ = ["EstimatorError", "Graph", "__version__", "load_graph"]

_compat.install()
