"""The fuzz contract on a few hundred seeded cases (the long run is ``scripts/fuzz.py --cases 5000``).

Every case runs in a forked child with a time and a memory limit; it must end with exit 0 and a finite,
schema-valid answer, or exit 2 and one line - never a traceback, a hang, a crash or a non-finite number - and
the store of trained models must be unchanged afterwards. The parent has run the xgboost GPU correction before
it forks (its warm-up), so the sample also checks that forked cases can run xgboost without hanging.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.cases import FAMILIES, make_case
from tests.fuzz.runner import pin_openmp_to_one_thread

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fuzz runner forks")

#: Cases per family in the default suite (the seed is fixed so that CI is reproducible).
CASES_PER_FAMILY = 50

ROOT = Path(__file__).resolve().parents[2]

#: Run in a fresh interpreter: the runner forks a child per case, and forking this test process is unsafe once
#: other tests have started threads in it (xgboost's OpenMP pool, dask's), which a child inherits without their
#: threads and then waits on forever. OMP_NUM_THREADS is removed from its environment so that the runner's own
#: pinning (``pin_openmp_to_one_thread``) is what keeps the forked cases from hanging.
_SAMPLE = f"""
import json, sys
from tests.fuzz.cases import Case, base_model
from tests.fuzz.runner import run_case, run_many
counts, failures = run_many({CASES_PER_FAMILY * len(FAMILIES)}, seed=2026)
gpu = Case("direct", 0, argv=["{{dir}}/m.onnx", "--hw", "a100", "--batch", "2", "--json"],
           files={{"m.onnx": base_model("conv").SerializeToString()}})
print(json.dumps([counts, failures, "xgboost" in sys.modules, run_case(gpu, timeout_s=60)]))
"""


@pytest.fixture(scope="module")
def sample() -> tuple[dict, list, bool, list]:
    """(counts per family, failures, whether the parent had imported xgboost, outcome of one a100 case)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", _SAMPLE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("family", FAMILIES)
def test_fuzz_family_keeps_the_contract(sample, family):
    counts, failures, _, _ = sample
    assert sum(counts[family].values()) == CASES_PER_FAMILY
    mine = [f for f in failures if f[0] == family]
    assert not mine, "\n".join(f"{o} --family {f} --seed {s}: {d}" for f, s, o, d in mine)


def test_no_case_changes_the_store_of_trained_models(sample):
    _, failures, _, _ = sample
    assert not [f for f in failures if f[0] == "store"]


def test_a_forked_case_runs_the_xgboost_gpu_correction_after_the_parent_ran_it(sample):
    """The hazard itself: the parent ran the a100 cross-device model in its warm-up, and a forked child then
    answers an a100 estimate through that model within its limit (it hung before OpenMP was pinned to one thread
    in the parent). The model's trees are now walked as numpy arrays (estimator.learn.forest), so the estimate
    path never imports xgboost and its OpenMP runtime at all."""
    _, _, parent_has_xgboost, (outcome, detail) = sample
    assert not parent_has_xgboost
    assert outcome == "ok0", detail
    assert detail.endswith("on a100 (cross-device)"), detail


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the loaded libraries from /proc")
def test_the_runner_refuses_a_process_whose_openmp_pool_could_hang_a_fork(monkeypatch):
    """In this process (never forked here): once xgboost has loaded its OpenMP runtime without
    OMP_NUM_THREADS=1, the runner says so instead of forking cases that could hang; with it, it goes on."""
    pytest.importorskip("xgboost")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with pytest.raises(RuntimeError, match=r"an OpenMP runtime \(.*libgomp.*\) is already loaded"):
        pin_openmp_to_one_thread()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pin_openmp_to_one_thread()
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_cases_are_reproducible():
    for family in FAMILIES:
        a, b = make_case(family, 7), make_case(family, 7)
        assert (a.argv, a.payload, a.files, a.kwargs) == (b.argv, b.payload, b.files, b.kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_subprocess_answers_one_line(tmp_path, seed):
    """A few cases through the real console entry point: one line on stderr, exit 0 or 2, no traceback."""
    case = make_case("cli_args", seed)
    for name, data in case.files.items():
        (tmp_path / name).write_bytes(data)
    os.mkfifo(tmp_path / "fifo")
    argv = [a.replace("{dir}", str(tmp_path)) for a in case.argv]
    done = subprocess.run(
        [sys.executable, "-c", "from estimator.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode in (0, 2) and "Traceback" not in done.stderr
    if done.returncode == 2:
        assert len(done.stderr.strip().splitlines()) == 1 or "Usage" in done.stdout + done.stderr
