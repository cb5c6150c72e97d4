"""Instructions per ``estimate_kernels`` call, counted by valgrind's callgrind: free of a shared machine's load.

    python benchmarks/count_instructions.py [--calls 10] [--first 2] [--root CHECKOUT]

CPU times on a machine shared with other work vary 2x from run to run; instruction counts do not (they move by
well under 1% between runs), so they compare two versions of the code where timings cannot. The script runs
itself under ``valgrind --tool=callgrind --dump-before=os_getpgrp``: the child sets up the six cases of
``bench_speed.py`` (NAS-Bench-201 cell and ResNet-50 on ``rpi5/onnxruntime``, ``xeon-gold-5120/pytorch-cpu`` and
``a100``'s default runtime), then calls ``os.getpgrp()`` between segments, so that callgrind writes one count per
segment: ``--calls`` calls on one report ("again"), and the first call on each of ``--first`` new reports
("first"). ``--root`` measures another checkout's ``estimator`` package (e.g. the code before a change) with this
script. Instructions are not time (a numpy call costs more per instruction than the interpreter), but fewer
instructions for the same work is less time. Needs valgrind; takes a few minutes (the set-up runs ~50x slower).

    python benchmarks/count_instructions.py --graphs [--root CHECKOUT]

counts instead, per graph of ``bench_speed.py``'s estimate table (NAS-Bench-201 cells on ``rpi5/onnxruntime``,
averaged over 4 new cells after 4 warm-up ones; ResNet-50, ViT-B and BERT-base on ``a100``, each estimated once
before): the floor (``onnx.load_from_string`` + ``infer_shapes``), ``load_graph``, ``count_costs``,
``fuse_kernels`` and the whole ``Estimator.estimate``, with ``PYTHONHASHSEED=0`` and the garbage collector paused.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CASES = (("rpi5", "onnxruntime"), ("xeon-gold-5120", "pytorch-cpu"), ("a100", None))


def nb201_arch(rng: random.Random) -> str:
    """A random NAS-Bench-201 cell string (as in bench_speed.py)."""
    e = [rng.choice(NB201_OPS) for _ in range(6)]
    return f"|{e[0]}~0|+|{e[1]}~0|{e[2]}~1|+|{e[3]}~0|{e[4]}~1|{e[5]}~2|"


def child(calls: int, first: int) -> None:
    """Set up every case, then one segment per measurement, separated by os.getpgrp() (callgrind dumps)."""
    import onnx

    from estimator.api import Estimator
    from estimator.zoo.nasbench201 import nasbench201

    rng = random.Random(1)
    cell = nasbench201(nb201_arch(rng))
    fresh_cells = [nasbench201(nb201_arch(rng)) for _ in range(first)]
    resnet = onnx.load(str(ROOT / "examples" / "resnet50.onnx"))
    cases = []
    for hw, runtime in CASES:
        est = Estimator(hw, runtime=runtime)
        for name, model, fresh in (
            ("NAS-Bench-201 cell", cell, fresh_cells),
            ("ResNet-50", resnet, [resnet] * first),
        ):
            kernels = est.kernels(model)
            est.estimate_kernels(kernels)
            label = f"{name}, {hw} {est.runtime.name}, {len(kernels.kernels)} kernels"
            cases.append((label, est, kernels, [est.kernels(m) for m in fresh]))
    labels = []
    for label, est, kernels, fresh in cases:
        os.getpgrp()
        labels.append(label)
        for _ in range(calls):
            est.estimate_kernels(kernels)
        os.getpgrp()
        for report in fresh:
            est.estimate_kernels(report)
    os.getpgrp()
    print("LABELS", "|".join(labels))


#: Stages of ``--graphs``, one callgrind dump each.
STAGES = ("floor", "load", "cost", "fuse", "estimate")
#: ViT-B/16's encoder as ``bench_speed.py`` builds it.
VIT_B = {"layers": 12, "hidden": 768, "heads": 12, "ffn": 3072, "vocab": 1000, "batch": 1, "seq": 197}


def child_graphs() -> None:
    """Set up the graphs, then one segment per stage and graph, separated by os.getpgrp() (callgrind dumps)."""
    import gc

    import onnx

    from estimator.api import Estimator
    from estimator.cost.kernels import fuse_kernels
    from estimator.cost.nodes import count_costs
    from estimator.graph.load import load_graph
    from estimator.zoo.nasbench201 import nasbench201
    from estimator.zoo.transformers import bert_encoder

    rng = random.Random(0)
    warm = [nasbench201(nb201_arch(rng)) for _ in range(4)]
    cells = [nasbench201(nb201_arch(rng)) for _ in range(4)]
    rpi5, a100 = Estimator("rpi5", runtime="onnxruntime"), Estimator("a100")
    cases = [
        ("NAS-Bench-201 cell (`rpi5/onnxruntime`)", rpi5, cells),
        ("ResNet-50 (`a100`)", a100, [onnx.load(str(ROOT / "examples" / "resnet50.onnx"))]),
        ("ViT-B-sized encoder (`a100`)", a100, [bert_encoder(**VIT_B)]),
        ("BERT-base encoder (`a100`)", a100, [bert_encoder(batch=1, seq=128)]),
    ]
    for model in warm:
        rpi5.estimate(model)
    for _, est, models in cases:
        for model in models:
            est.estimate(model)
    gc.disable()
    for _, est, models in cases:
        raw = [m.SerializeToString() for m in models]
        os.getpgrp()
        for r in raw:
            onnx.shape_inference.infer_shapes(onnx.load_from_string(r))
        os.getpgrp()
        graphs = [load_graph(m) for m in models]
        os.getpgrp()
        reports = [count_costs(g) for g in graphs]
        os.getpgrp()
        for report in reports:
            fuse_kernels(report, fuse=est.runtime.fuses)
        os.getpgrp()
        for model in models:
            est.estimate(model)
    os.getpgrp()
    print("LABELS", "|".join(f"{label}:{len(models)}" for label, _, models in cases))


def counts(directory: Path) -> list[int]:
    """Instructions of each dump callgrind wrote, in order."""
    files = sorted(directory.glob("cg.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    out = []
    for f in files:
        for line in f.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                out.append(int(line.split()[1]))
                break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10, help="calls on one report per case")
    parser.add_argument("--first", type=int, default=2, help="new reports per case, each called once")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose estimator package to measure")
    parser.add_argument("--graphs", action="store_true", help="count load, cost, fuse and estimate per graph")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_graphs() if args.graphs else child(args.calls, args.first)
        return
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: install it (apt-get install valgrind) to count instructions")
        raise SystemExit(2)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=os_getpgrp",
            f"--callgrind-out-file={tmp}/cg.out",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            f"--calls={args.calls}",
            f"--first={args.first}",
            *(["--graphs"] if args.graphs else []),
        ]
        env = {
            **os.environ,
            "PYTHONPATH": str(args.root.resolve()),
            "OMP_NUM_THREADS": "1",
            **({"PYTHONHASHSEED": "0"} if args.graphs else {}),
        }
        run = subprocess.run(cmd, cwd=args.root, env=env, capture_output=True, text=True, check=False)
        lines = [line for line in run.stdout.splitlines() if line.startswith("LABELS ")]
        if run.returncode != 0 or not lines:
            print(run.stderr[-2000:])
            raise SystemExit(1)
        labels = lines[0][len("LABELS ") :].split("|")
        dumps = counts(Path(tmp))[1:]  # the first dump is the set-up
    if args.graphs:
        print_graphs(labels, dumps, args.root.resolve().name)
        return
    print(f"Instructions per `estimate_kernels` call (millions), {args.root.resolve().name}:\n")
    print("| kernels, profile | again | first call |")
    print("|---|---:|---:|")
    for i, label in enumerate(labels):
        again, first = dumps[2 * i] / args.calls, dumps[2 * i + 1] / max(args.first, 1)
        print(f"| {label} | {again / 1e6:.2f} | {first / 1e6:.2f} |")


def print_graphs(labels: list[str], dumps: list[int], name: str) -> None:
    """The ``--graphs`` table: millions of instructions per graph and stage, and estimate / floor."""
    print(f"Instructions per graph (millions), {name}:\n")
    print(
        "| graph | floor | load | cost | fuse | load + cost + fuse | `Estimator.estimate` | estimate / floor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, entry in enumerate(labels):
        label, count = entry.rsplit(":", 1)
        floor, load, cost, fuse, estimate = (d / int(count) / 1e6 for d in dumps[5 * i : 5 * i + 5])
        print(
            f"| {label} | {floor:.2f} | {load:.2f} | {cost:.2f} | {fuse:.2f} | {load + cost + fuse:.2f} | "
            f"{estimate:.2f} | {estimate / floor:.2f}x |"
        )


if __name__ == "__main__":
    main()
