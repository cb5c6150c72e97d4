"""The house's shape: each stage imports only from stages upstream of it, the estimate path never loads training
or evaluation code, and no module outgrows a room without saying why."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "estimator"

#: Upstream first. A module may import its own stage and any stage of a lower rank, never a higher one.
STAGES: dict[str, int] = {
    "errors": 0,
    "dtypes": 0,
    "fileio": 0,
    "_compat": 0,
    "graph": 1,
    "zoo": 2,
    "cost": 3,
    "energy": 4,
    "data": 5,
    "learn": 6,
    "api": 7,
    "layers": 7,
    "many": 7,
    "llm": 8,
    "report": 8,
    "cli": 9,
}

#: Lines above which a module must say at its top why it holds one thing only.
ROOM_LINES = 400
MAX_LINES = 500


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "estimator" or len(parts) < 2:
        return None
    return parts[1]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``estimator.*`` module imported anywhere in the file (function-level imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "estimator":  # `from estimator import x`: x is a stage or a name of the root
                found += [(node.lineno, f"estimator.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m.startswith("estimator.")]


def test_every_stage_of_the_package_is_ranked():
    top = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    top |= {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top <= set(STAGES), f"unranked: {sorted(top - set(STAGES))}"


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_run_downstream_only(module: str, path: Path):
    own = _stage(module)
    if own is None:  # the package root is the public surface and may re-export any stage
        return
    for line, imported in _imports(path):
        other = _stage(imported)
        if other == "__version__":
            continue
        assert other in STAGES, f"{path.name}:{line} imports {imported}, which belongs to no stage"
        assert STAGES[other] <= STAGES[own], (
            f"{module} ({own}) imports {imported} ({other}) at line {line}: a lower stage imports a higher one"
        )


def test_the_direction_check_catches_an_upward_import(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from estimator.learn.training import fit\n", encoding="utf-8")
    ((line, imported),) = _imports(bad)
    assert (line, imported) == (2, "estimator.learn.training")
    assert STAGES[_stage(imported)] > STAGES["graph"]


def test_the_estimate_path_loads_no_training_or_evaluation_code():
    code = (
        "import sys\n"
        "from estimator.api import Estimator\n"
        "e = Estimator('rpi5', runtime='onnxruntime').estimate('examples/resnet50.onnx')\n"
        "assert e.joules > 0\n"
        "bad = [m for m in sys.modules if m.startswith(('estimator.learn.training', 'estimator.learn.evaluation',\n"
        "       'estimator.learn.model_store', 'estimator.data', 'estimator.cli'))]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_no_module_outgrows_a_room():
    for module, path in _modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) <= MAX_LINES, f"{module} has {len(lines)} lines (at most {MAX_LINES})"
        if len(lines) > ROOM_LINES:
            head = "\n".join(lines[:40]).lower()
            assert "why this module is long" in head, (
                f"{module} has {len(lines)} lines: split it, or say at its top why it is one thing "
                "('Why this module is long: ...')"
            )


def test_old_import_paths_still_work_with_a_warning():
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "import estimator\n"
        "try:\n"
        "    import estimator.hardware\n"
        "except DeprecationWarning as e:\n"
        "    print(e)\n"
        "warnings.simplefilter('ignore')\n"
        "import estimator.hardware as old, estimator.energy.hardware as new\n"
        "from estimator.ops.base import REGISTRY\n"
        "import estimator.cost.ops.base as base\n"
        "print(old is new, REGISTRY is base.REGISTRY)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()
    assert "estimator.energy.hardware" in first
    assert second == "True True"
