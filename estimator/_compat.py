"""Old import paths of the flat package (before the stage folders), kept working for one release.

``import estimator.hardware`` still works and gives the module now at ``estimator.energy.hardware`` (the very
same module object, so monkeypatching either name patches both), with a DeprecationWarning naming the new path.
Remove this module, and its installation in ``estimator/__init__.py``, in the release after 0.2.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

#: Old module path -> new module path. Submodules follow their package (``estimator.ops.base`` ->
#: ``estimator.cost.ops.base``).
MOVED: dict[str, str] = {
    "estimator.contrib_shapes": "estimator.graph.contrib_shapes",
    "estimator.liveness": "estimator.graph.liveness",
    "estimator.ops": "estimator.cost.ops",
    "estimator.costs": "estimator.cost.nodes",
    "estimator.kernels": "estimator.cost.kernels",
    "estimator.hardware": "estimator.energy.hardware",
    "estimator.profiles": "estimator.energy.profiles",
    "estimator.runtimes": "estimator.energy.runtimes",
    "estimator.placement": "estimator.energy.placement",
    "estimator.physics": "estimator.energy.physics",
    "estimator.features": "estimator.learn.features",
    "estimator.regressor": "estimator.learn.regressor",
    "estimator.training": "estimator.learn.training",
    "estimator.evaluation": "estimator.learn.evaluation",
    "estimator.model_store": "estimator.learn.model_store",
    "estimator.measurements": "estimator.data.measurements",
    "estimator.counters": "estimator.data.counters",
    "estimator.measure": "estimator.data.measure",
    "estimator.importers": "estimator.data.importers",
    "estimator.report_format": "estimator.cli.format",
}


def new_name(old: str) -> str | None:
    """The current module path for an old one, or None when ``old`` did not move."""
    for prefix, target in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix) :]
    return None


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of old paths with the module at its new path."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        target = new_name(spec.name)
        warnings.warn(
            f"{spec.name} moved to {target}; the old path works until the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported at its new path."""


def install() -> None:
    """Put the finder for old paths first on ``sys.meta_path``, once (a submodule of a moved package must not
    be found a second time under its old name by the normal finders)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
