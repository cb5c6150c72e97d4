"""Joules per inference of an ONNX network on a given hardware, estimated without the hardware.

    from estimator import Estimator
    result = Estimator("a100").estimate("model.onnx", batch=8)
    result.joules, result.interval, result.to_dict()

Names are imported on first use (PEP 562), so ``import estimator`` stays light: the estimator, the regressor
(xgboost) and pandas load only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from estimator import _compat
from estimator.errors import EstimatorError

__version__ = "0.1.0"

#: Public name -> module that defines it (loaded on first access).
_LAZY: dict[str, str] = {
    "Estimator": "estimator.api",
    "Estimate": "estimator.api",
    "LayerEnergy": "estimator.api",
    "Graph": "estimator.graph",
    "load_graph": "estimator.graph",
    "HardwareProfile": "estimator.energy.hardware",
    "load_profile": "estimator.energy.hardware",
    "list_profiles": "estimator.energy.hardware",
    "footprint": "estimator.report.carbon",
}

#: Sub-packages reachable as attributes of the package.
_STAGES = frozenset({"graph", "zoo", "cost", "energy", "data", "learn", "api", "report", "cli"})

__all__ = [
    "Estimate",
    "Estimator",
    "EstimatorError",
    "Graph",
    "HardwareProfile",
    "LayerEnergy",
    "__version__",
    "footprint",
    "list_profiles",
    "load_graph",
    "load_profile",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from estimator.api import Estimate, Estimator, LayerEnergy
    from estimator.energy.hardware import HardwareProfile, list_profiles, load_profile
    from estimator.graph import Graph, load_graph
    from estimator.report.carbon import footprint


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None and name in _STAGES:  # `import estimator; estimator.graph.load_graph(...)`
        return importlib.import_module(f"estimator.{name}")
    if module is None:
        raise AttributeError(f"module 'estimator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


_compat.install()
