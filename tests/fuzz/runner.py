"""Run fuzz cases in forked children with a time and memory limit, and judge each against the contract.

Forking is safe here because the parent never starts an OpenMP thread pool: :func:`warm_up` first pins OpenMP
to one thread (``OMP_NUM_THREADS=1``, read by the OpenMP runtime when it is loaded, that is when xgboost is first
imported), and refuses to run in a process where an OpenMP runtime was loaded before that. GNU libgomp is not
fork-safe: a child of a parent that has run a parallel region with a thread pool waits forever for the pool's
threads, which a fork does not copy - every case that ran the xgboost GPU correction used to hang to its limit.

The contract: exit 0 with finite, schema-valid output, or exit 2 with one line ``estimate: error: ...``;
never a traceback, a hang, a non-finite number, a crash, or a changed store of trained models.
Outcomes: ``ok0`` / ``ok2`` pass; ``traceback``, ``hang``, ``crash`` (killed, out of memory),
``wrong`` (exit 0 with a non-finite or malformed answer, or an error of more than one line) fail.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import math
import os
import re
import resource
import signal
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from tests.fuzz.cases import FAMILIES, Case, make_case

PASS = ("ok0", "ok2")
OUTCOMES = ("ok0", "ok2", "traceback", "hang", "crash", "wrong")


def run_case(case: Case, *, timeout_s: float = 20.0, memory_bytes: int = 3 << 30) -> tuple[str, str]:
    """(outcome, detail) of one case, run in a forked child limited to ``timeout_s`` and ``memory_bytes``."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        for name, data in case.files.items():
            (Path(folder) / name).write_bytes(data)
        os.mkfifo(Path(folder) / "fifo")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read)
            try:
                resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
                signal.alarm(math.ceil(timeout_s) + 1)
                result = _judge(case, folder)
            except BaseException as exc:
                result = ("traceback", f"{type(exc).__name__}: {exc}"[:300])
            os.write(write, json.dumps(result).encode())
            os._exit(0)
        os.close(write)
        deadline = time.monotonic() + timeout_s
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os.close(read)
                return "hang", f"no answer within {timeout_s:g} s"
            time.sleep(0.005)
        payload = b""
        while chunk := os.read(read, 65536):
            payload += chunk
        os.close(read)
        if not payload:
            return "crash", f"child ended without an answer (status {status})"
        outcome, detail = json.loads(payload)
        return outcome, detail


def _judge(case: Case, folder: str) -> tuple[str, str]:
    if case.argv is not None:
        return _judge_cli([a.replace("{dir}", folder) for a in case.argv])
    return _judge_library(case, folder)


def _judge_cli(argv: list[str]) -> tuple[str, str]:
    from estimator.cli import run

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(argv)
    except BaseException as exc:
        return "traceback", f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=-2)[-300:]}"
    text, errors = out.getvalue(), err.getvalue()
    if "Traceback" in text + errors:
        return "traceback", errors[-300:]
    if code == 2:
        lines = errors.strip().splitlines()
        if (len(lines) == 1 and lines[0].startswith("estimate: error: ")) or _is_help(text + errors):
            return "ok2", lines[0][:200] if lines else "help"
        return "wrong", f"exit 2 with {len(lines)} lines: {errors[:300]!r}"
    if code != 0:
        return "wrong", f"exit {code}: {errors[-300:]!r}"
    return _judge_output(argv, text)


def _is_help(text: str) -> bool:
    return "Usage:" in text and "Options" in text


def _judge_output(argv: list[str], text: str) -> tuple[str, str]:
    if "--json" in argv or (
        "--format" in argv and argv[argv.index("--format") + 1 : argv.index("--format") + 2] == ["json"]
    ):
        try:
            data = json.loads(text, parse_constant=_refuse)
        except ValueError as exc:
            return "wrong", f"exit 0 with invalid JSON: {exc}"
        bad = _non_finite(data)
        if bad:
            return "wrong", f"exit 0 with non-finite {bad}"
        if data.get("schema") == "estimator.estimate/1":
            if not isinstance(data.get("model"), dict) or "not_costed" not in data["model"]:
                return "wrong", "estimate JSON lacks the model object"
            if not data["joules_per_inference"] > 0 or data["avg_power_w"] > 1e7:
                return (
                    "wrong",
                    f"implausible answer {data['joules_per_inference']} J, {data['avg_power_w']} W",
                )
            correction = data.get("correction") or "no correction"
            return "ok0", f"json: {data['joules_per_inference']:.3g} J on {data['hardware']} ({correction})"
        return "ok0", "json"
    lowered = f" {text.lower()} "
    for token in (" nan", " inf ", "infinity", "-inf"):
        if token in lowered:
            return "wrong", f"exit 0 with {token.strip()!r} in the output"
    return "ok0", "text"


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _non_finite(value: object, where: str = "") -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    if isinstance(value, dict):
        return next((w for k, v in value.items() if (w := _non_finite(v, f"{where}.{k}"))), "")
    if isinstance(value, list):
        return next((w for i, v in enumerate(value) if (w := _non_finite(v, f"{where}[{i}]"))), "")
    return ""


def _judge_library(case: Case, folder: str) -> tuple[str, str]:
    from estimator.errors import EstimatorError

    try:
        if case.call == "load":
            from estimator.graph.load import load_graph

            graph = load_graph(case.payload, **case.kwargs)
            return "ok0", f"{len(graph.nodes)} nodes"
        if case.call == "estimate":
            from estimator.api import Estimator

            result = Estimator("a100", calibrated=False).estimate(case.payload, **case.kwargs)
            numbers = [result.joules, result.seconds, result.avg_power_w, *result.interval]
            if not all(math.isfinite(n) and n >= 0 for n in numbers):
                return "wrong", f"non-finite or negative answer {numbers}"
            bad = _non_finite(json.loads(json.dumps(result.to_json())))
            return ("wrong", f"non-finite {bad}") if bad else ("ok0", f"{result.joules:.3g} J")
        if case.call == "table":
            from estimator.data.measurements import read_measurements

            text = (Path(folder) / case.payload).read_bytes().replace(b"{dir}", folder.encode())
            (Path(folder) / case.payload).write_bytes(text)
            frame = read_measurements(Path(folder) / case.payload)
            return "ok0", f"{len(frame)} rows"
    except EstimatorError as exc:
        message = str(exc)
        if "\n" in message or not message.strip():
            return "wrong", f"error of {message.count(chr(10)) + 1} lines: {message[:200]!r}"
        return "ok2", message[:200]
    except BaseException as exc:
        return (
            "traceback",
            f"{type(exc).__name__}: {str(exc)[:200]} | {traceback.format_exc(limit=-2)[-300:]}",
        )
    raise ValueError(f"unknown call {case.call!r}")


#: Shared libraries of OpenMP runtimes (GNU, LLVM, Intel) as they appear in /proc/self/maps.
_OPENMP_RUNTIME = re.compile(r"lib(gomp|omp|iomp5)[-.][^/]*$")


def pin_openmp_to_one_thread() -> None:
    """Make this process safe to fork after xgboost runs: OpenMP limited to one thread, so no thread pool exists.

    Must run before any OpenMP runtime is loaded (xgboost, scikit-learn and torch load one when imported); raises
    RuntimeError if one is already loaded without ``OMP_NUM_THREADS=1``, since its pool size is then fixed.
    """
    if os.environ.get("OMP_NUM_THREADS") == "1":
        return
    maps = Path("/proc/self/maps")
    loaded = sorted(
        {m.group(0) for line in maps.read_text().splitlines() if (m := _OPENMP_RUNTIME.search(line))}
        if maps.exists()
        else ()
    )
    if loaded:
        raise RuntimeError(
            f"an OpenMP runtime ({', '.join(loaded)}) is already loaded and not pinned to one thread, so forked"
            " cases could hang in it: run the fuzz runner in a fresh interpreter, or with OMP_NUM_THREADS=1"
        )
    os.environ["OMP_NUM_THREADS"] = "1"


def warm_up() -> None:
    """Import and run once what every case uses, in this process, so that forked cases start warm.

    That includes an a100 estimate, which loads and runs the xgboost GPU correction here; OpenMP is pinned to one
    thread first (:func:`pin_openmp_to_one_thread`) so that the forked cases can run it again without hanging.
    """
    from tests.fuzz.cases import base_model

    pin_openmp_to_one_thread()
    with tempfile.TemporaryDirectory(prefix="fuzz-warm-") as folder:
        model = Path(folder) / "m.onnx"
        model.write_bytes(base_model("conv").SerializeToString())
        for argv, expected in (
            ([str(model), "--hw", "a100", "--batch", "2", "--json"], "ok0"),
            (["layers", str(model), "--batch", "1"], "ok0"),
            ([str(model), "--batch", "x"], "ok2"),
        ):
            outcome, detail = _judge_cli(argv)
            # A warm-up that fails warms nothing (and a broken base model fuzzes nothing): say so.
            if outcome != expected:
                raise RuntimeError(f"warm-up `estimate {' '.join(argv)}` gave {outcome}: {detail}")
    for hw in ("a100", "rpi5", "xeon-gold-5120", "h100", "jetson-orin", "t4", "epyc-7763"):
        from estimator.energy.hardware import load_profile

        load_profile(hw)
    import estimator.data.measurements  # noqa: F401

    gc.freeze()  # forked children then do not copy the parent's pages when their collector runs


def store_fingerprint(directory: Path) -> str:
    """SHA-256 over the names and bytes of the trained-model store's files (to see that no case changed it)."""
    digest = hashlib.sha256()
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            digest.update(path.name.encode())
            digest.update(path.read_bytes() if path.is_file() else b"dir")
    return digest.hexdigest()


def run_many(cases: int, seed: int, families=FAMILIES, progress=None, timeout_s: float = 20.0):
    """Run ``cases`` cases spread over ``families`` from ``seed``; returns (counts per family, failures)."""
    from estimator.learn.regressor import default_models_dir

    warm_up()
    store = default_models_dir()
    before = store_fingerprint(store)
    counts = {f: Counter() for f in families}
    failures = []
    for i in range(cases):
        family = families[i % len(families)]
        case_seed = seed + i // len(families)
        outcome, detail = run_case(make_case(family, case_seed), timeout_s=timeout_s)
        counts[family][outcome] += 1
        if outcome not in PASS:
            failures.append((family, case_seed, outcome, detail))
        if progress and (i + 1) % 250 == 0:
            progress(i + 1, counts, failures)
    if store_fingerprint(store) != before:
        failures.append(("store", seed, "wrong", f"the trained-model store {store} changed"))
    return counts, failures
