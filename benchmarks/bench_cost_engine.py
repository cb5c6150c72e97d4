"""Speed and memory of the cost engine on one CPU core; writes docs/benchmarks.md.

    python benchmarks/bench_cost_engine.py [--runs 30] [--warmup 3] [--no-write] [--profile]

Times (median over ``--runs`` after ``--warmup`` runs, one core, one BLAS/OpenMP thread):

* ``load_graph + count_costs + fuse_kernels`` of the shipped ResNet-50 (target <= 50 ms) and of a BERT encoder
  with at least 1,000 nodes (target <= 200 ms), each read from its ``.onnx`` file;
* ``Estimator("a100").estimate_kernels`` on already fused kernels, and ``Estimator.estimate`` of a NAS-Bench-201
  network (with and without building the graph), as estimates per second of a NAS loop.

Peak memory (target < 300 MB) of costing decoder-only LLMs whose external weights are absent (GPT-2 XL,
6.2 GB of fp32 weights, and a 65B-parameter one): the RSS high-water mark (``resource.getrusage``) and the
``tracemalloc`` peak, each in a fresh subprocess so that nothing from this process counts.

A timing target that is missed is profiled with cProfile and the 10 functions with the most own time are
printed and written to the report.
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy (and its BLAS) is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from estimator.cost.kernels import KernelReport, fuse_kernels  # noqa: E402

# Only what costing needs: the memory subprocess (this script again) measures the engine, not the rest.
from estimator.cost.nodes import count_costs  # noqa: E402
from estimator.graph.load import load_graph  # noqa: E402

RESNET50 = ROOT / "examples" / "resnet50.onnx"
DOCS = ROOT / "docs" / "benchmarks.md"
MIN_TRANSFORMER_NODES = 1000
NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
#: (label, gpt2_decoder keyword arguments) of the LLMs costed without their weights.
LLMS = (
    ("GPT-2 XL (48 x 1600, seq 1024)", {"layers": 48, "hidden": 1600, "heads": 25, "seq": 1024}),
    (
        "GPT-style 65B (80 x 8192, vocab 32000, seq 2048)",
        {"layers": 80, "hidden": 8192, "heads": 64, "vocab": 32000, "max_positions": 4096, "seq": 2048},
    ),
)
TIME_TARGET_MS = {"resnet50": 50.0, "transformer": 200.0}
MEMORY_TARGET_MB = 300.0


def pipeline(source: str | Path | onnx.ModelProto) -> KernelReport:
    """What every estimate does before touching hardware: load, cost every node, fuse into kernels."""
    return fuse_kernels(count_costs(load_graph(source)))


@dataclass(frozen=True)
class Timing:
    """Wall times of repeated calls, in milliseconds."""

    label: str
    times_ms: tuple[float, ...]
    target_ms: float | None = None
    note: str = ""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.times_ms, 90))

    @property
    def per_second(self) -> float:
        return 1000.0 / self.median_ms

    @property
    def met(self) -> str:
        if self.target_ms is None:
            return ""
        return "yes" if self.median_ms <= self.target_ms else "**no**"


def time_calls(fn: Callable[[], object], runs: int, warmup: int) -> tuple[float, ...]:
    """Wall time of each of ``runs`` calls of ``fn`` after ``warmup`` untimed calls, in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return tuple(times)


def transformer_layers_for(nodes: int) -> int:
    """The fewest BERT-base encoder layers that give a graph of at least ``nodes`` nodes."""
    from estimator.zoo.transformers import bert_encoder

    one, two = (len(bert_encoder(layers, batch=1, seq=128).graph.node) for layers in (1, 2))
    per_layer = two - one
    return max(1, -(-(nodes - one) // per_layer) + 1)


def random_nb201_archs(count: int, seed: int = 0) -> list[str]:
    """``count`` random NAS-Bench-201 cells (uniform over the 5 ops on each of the 6 edges)."""
    from estimator.zoo import NB201_OPS

    rng = random.Random(seed)
    archs = []
    for _ in range(count):
        nodes = ["|".join(f"{rng.choice(NB201_OPS)}~{j}" for j in range(i)) for i in (1, 2, 3)]
        archs.append("+".join(f"|{n}|" for n in nodes))
    return archs


def profile_top(fn: Callable[[], object], repeats: int = 10, top: int = 10) -> str:
    """cProfile of ``repeats`` calls: the ``top`` functions by own time, as pstats prints them."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        fn()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text.rstrip()


# ------------------------------------------------------------------------------------------------------
# Memory: measured in a fresh interpreter
# ------------------------------------------------------------------------------------------------------


def memory_child(path: str, use_tracemalloc: bool) -> None:
    """Cost the model at ``path`` and print JSON: peak RSS after each step, tracemalloc peak, getrusage.

    The peak RSS is the kernel's high-water mark of this process's own memory (``VmHWM``). ``getrusage``'s
    ``ru_maxrss`` is reported too, but on Linux a child started by ``subprocess`` (vfork + exec) inherits its
    parent's high-water mark, so it is at least the launching process's peak.
    """
    import resource
    import tracemalloc

    def high_water_mb() -> float:
        status = Path("/proc/self/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux

    before = high_water_mb()
    if use_tracemalloc:
        tracemalloc.start()
    start = time.perf_counter()
    graph = load_graph(path)
    after_load = high_water_mb()
    costs = count_costs(graph)
    after_cost = high_water_mb()
    kernels = fuse_kernels(costs)
    seconds = time.perf_counter() - start
    peak_traced = tracemalloc.get_traced_memory()[1] if use_tracemalloc else 0
    totals = costs.totals
    result = {
        "rss_after_imports_mb": before,
        "rss_after_load_mb": after_load,
        "rss_after_cost_mb": after_cost,
        "rss_peak_mb": high_water_mb(),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tracemalloc_peak_mb": peak_traced / 2**20,
        "seconds": seconds,
        "nodes": len(costs.nodes),
        "kernels": len(kernels.kernels),
        "params": totals.params,
        "param_bytes": totals.param_bytes,
        "not_costed": dict(costs.not_costed),
    }
    print(json.dumps(result))


def measure_memory(path: Path, use_tracemalloc: bool) -> dict:
    command = [sys.executable, __file__, "--memory-child", str(path)]
    if use_tracemalloc:
        command.append("--tracemalloc")
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ.copy())
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = os.cpu_count() or 0
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu} ({cores} logical cores on the machine)",
        "pinned to": f"core(s) {affinity}, 1 BLAS/OpenMP thread",
        "load average (1, 5, 15 min) at start": load,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "numpy / onnx": f"{np.__version__} / {onnx.__version__}",
        "os": platform.platform(),
    }


def render(info: dict, timings: list[Timing], memory: list[dict], profiles: dict[str, str], runs: int) -> str:
    lines = [
        "# Cost engine benchmarks",
        "",
        "Written by `python benchmarks/bench_cost_engine.py` (do not edit by hand). Times are medians over "
        f"{runs} runs after warm-up, on one core with one BLAS/OpenMP thread; the machine is shared, so the "
        "p90 column shows how much other work disturbed the runs.",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
        "## Time",
        "",
        "| what | median (ms) | p90 (ms) | per second | target (ms) | met | notes |",
        "|---|---:|---:|---:|---:|:-:|---|",
    ]
    for t in timings:
        target = f"{t.target_ms:.0f}" if t.target_ms is not None else ""
        lines.append(
            f"| {t.label} | {t.median_ms:.2f} | {t.p90_ms:.2f} | {t.per_second:.1f} | {target} | {t.met} "
            f"| {t.note} |"
        )
    lines += [
        "",
        "## Peak memory of costing an LLM whose weight file is absent",
        "",
        "Each row is a fresh interpreter: `rss after imports` is its peak resident set (the kernel's high-water "
        "mark `VmHWM`) before loading, then after `load_graph`, and `rss peak` after load + cost + fuse (whole "
        "process); `ru_maxrss` is `resource.getrusage`'s figure, which on Linux also holds the launching "
        "process's own peak (a vfork'd child inherits it), so it is an upper bound; `tracemalloc peak` the Python-heap peak of those calls "
        f"(measured in a second fresh interpreter). Target: rss peak < {MEMORY_TARGET_MB:.0f} MB.",
        "",
        "| model | nodes | parameters | absent fp32 weights (GB) | rss after imports (MB) | rss after load_graph "
        "(MB) | rss peak (MB) | ru_maxrss (MB) | tracemalloc peak (MB) | time (s) | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for m in memory:
        met = "yes" if m["rss_peak_mb"] < MEMORY_TARGET_MB else "**no**"
        lines.append(
            f"| {m['label']} | {m['nodes']:,} | {m['params']:,} | {m['param_bytes'] / 1e9:.1f} "
            f"| {m['rss_after_imports_mb']:.0f} | {m['rss_after_load_mb']:.0f} | {m['rss_peak_mb']:.0f} "
            f"| {m['ru_maxrss_mb']:.0f} "
            f"| {m['tracemalloc_peak_mb']:.1f} "
            f"| {m['seconds']:.2f} | {met} |"
        )
    if profiles:
        lines += ["", "## Where the time goes (cProfile, 10 calls, top 10 by own time)", ""]
        for label, text in profiles.items():
            lines += [f"### {label}", "", "```", text, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="timed runs per case (at least 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--profile", action="store_true", help="profile every timing case, not only missed ones")
    ap.add_argument("--memory-child", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.memory_child:
        memory_child(args.memory_child, args.tracemalloc)
        return
    if args.runs < 20:
        ap.error("--runs must be at least 20")
    from estimator.api import Estimator
    from estimator.zoo import nasbench201
    from estimator.zoo.transformers import bert_encoder, gpt2_decoder

    info = machine()
    runs, warmup = args.runs, args.warmup

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Memory first, while this process is small (its peak leaks into the children's ru_maxrss).
        memory = []
        for label, sizes in LLMS:
            path = folder / "llm.onnx"
            onnx.save_model(gpt2_decoder(batch=1, **sizes), path)
            rss = measure_memory(path, use_tracemalloc=False)
            traced = measure_memory(path, use_tracemalloc=True)
            memory.append({**rss, "tracemalloc_peak_mb": traced["tracemalloc_peak_mb"], "label": label})
        layers = transformer_layers_for(MIN_TRANSFORMER_NODES)
        bert_path = folder / "bert.onnx"
        onnx.save_model(bert_encoder(layers, batch=1, seq=128), bert_path)
        resnet_nodes = len(pipeline(RESNET50).costs.nodes)
        bert_nodes = len(pipeline(bert_path).costs.nodes)
        cases = {
            "resnet50": (
                f"ResNet-50 (examples/resnet50.onnx, {resnet_nodes} nodes): load + cost + fuse",
                lambda: pipeline(RESNET50),
            ),
            "transformer": (
                f"BERT-base encoder, {layers} layers, seq 128 ({bert_nodes} nodes): load + cost + fuse",
                lambda: pipeline(bert_path),
            ),
        }
        timings = [
            Timing(label, time_calls(fn, runs, warmup), TIME_TARGET_MS[key])
            for key, (label, fn) in cases.items()
        ]

        estimator = Estimator("a100")
        nb201 = nasbench201(NB201_ARCH)
        nb201_kernels = estimator.cost.kernels(nb201)
        resnet_kernels = pipeline(RESNET50)
        archs = iter(random_nb201_archs(runs + warmup))
        timings += [
            Timing(
                "Estimator('a100').estimate_kernels, ResNet-50 kernels",
                time_calls(lambda: estimator.estimate_kernels(resnet_kernels), runs, warmup),
            ),
            Timing(
                f"Estimator('a100').estimate_kernels, NB201 kernels ({len(nb201.graph.node)} nodes)",
                time_calls(lambda: estimator.estimate_kernels(nb201_kernels), runs, warmup),
            ),
            Timing(
                "Estimator('a100').estimate(NB201 ModelProto): load + cost + fuse + prior",
                time_calls(lambda: estimator.estimate(nb201), runs, warmup),
            ),
            Timing(
                "NAS loop step: nasbench201(random arch) + Estimator.estimate",
                time_calls(lambda: estimator.estimate(nasbench201(next(archs))), runs, warmup),
                note="a new cell each call",
            ),
        ]

        profiles = {}
        for key, (label, fn) in cases.items():
            timing = next(t for t in timings if t.label == label)
            if args.profile or timing.median_ms > TIME_TARGET_MS[key]:
                profiles[label] = profile_top(fn)

    report = render(info, timings, memory, profiles, runs)
    print(report)
    if not args.no_write:
        # Keep the section benchmarks/bench_speed.py writes into the same file.
        old = DOCS.read_text() if DOCS.exists() else ""
        start, end = "<!-- bench_speed:start -->", "<!-- bench_speed:end -->"
        if start in old and end in old:
            report = (
                report.rstrip("\n") + "\n\n" + start + old.split(start, 1)[1].split(end, 1)[0] + end + "\n"
            )
        DOCS.write_text(report)
        print(f"wrote {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
