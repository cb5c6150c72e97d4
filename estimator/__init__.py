"""Joules per inference of an ONNX network on a given hardware, estimated without the hardware."""

from estimator import _compat
from estimator.errors import EstimatorError

__version__ = "0.1.0"

__all__ = ["EstimatorError", "Graph", "__version__", "load_graph"]

#: Public names imported on first use (PEP 562), so that ``import estimator`` - and the command line, and an
#: error for a wrong path - does not pay for onnx and numpy before they are needed.
_LAZY = {"Graph": "estimator.graph", "load_graph": "estimator.graph"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'estimator' has no attribute {name!r}")


_compat.install()
