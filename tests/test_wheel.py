"""The package works from a wheel, away from the repository: build it, install it into a fresh virtual
environment that reuses this environment's installed dependencies (no network), and run the commands from an
empty folder.

Slow (a build and an install): run it with ``pytest -m slow tests/test_wheel.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    pytest.importorskip("setuptools", minversion="77")
    dist = tmp_path / "dist"
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO),
        ],
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("onnx_energy_estimator-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path
        ).stdout.strip()
    )
    # Install the wheel's files alone into the new environment (--target: pip neither looks at nor touches what
    # any other environment has installed).
    installed = _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    # Then reuse this environment's dependencies (numpy, onnx, xgboost, typer, ...) by path, without processing
    # that folder's .pth files, so an editable install of this repository there stays invisible.
    (site / "_deps.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ESTIMATOR_MODELS_DIR")}
    where = _run([str(python), "-c", "import estimator; print(estimator.__file__)"], work, env)
    assert where.returncode == 0 and str(site) in where.stdout, where.stdout + where.stderr
    estimate = [str(python), "-c", "from estimator.cli import main; main()"]

    version = _run([*estimate, "--version"], work, env)
    assert version.returncode == 0 and "onnx-energy-estimator" in version.stdout

    model = REPO / "examples" / "resnet50.onnx"
    answer = _run([*estimate, str(model), "--hw", "rpi5", "--json", "--grid", "de"], work, env)
    assert answer.returncode == 0, answer.stderr
    payload = json.loads(answer.stdout)
    assert payload["calibrated"] is True  # the trained model ships inside the wheel
    assert payload["footprint"]["gco2e_per_kwh"] == 381  # the grid table ships inside the wheel

    report = _run(
        [*estimate, "report", str(model), "--hw", "a100", "-o", "report.html", "--batches", ""], work, env
    )
    assert report.returncode == 0, report.stderr
    assert (work / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    evaluate = _run([*estimate, "evaluate", "--out", "."], work, env)
    assert evaluate.returncode == 2 and "--data-root" in evaluate.stderr
    assert sorted(p.name for p in work.iterdir()) == ["report.html"]  # nothing written anywhere else
    typed = _run(
        [
            str(python),
            "-c",
            "import estimator, pathlib; print((pathlib.Path(estimator.__file__).parent / 'py.typed').exists())",
        ],
        work,
        env,
    )
    assert typed.stdout.strip() == "True"
