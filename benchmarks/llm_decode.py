"""Benchmarks of `estimate llm` (results in docs/benchmarks.md and docs/llm.md), one command:

    python benchmarks/llm_decode.py [--steps 1000] [--only integral|70b] [--runtime onnxruntime-cuda]

1. **Decode integral vs step by step**, 1,000 generated tokens of a 2-block Llama-3.1-8B decoder at batch 8
   on an H100: the request's decode joules and seconds against (a) the Estimator run on the graph bound at
   every cache length (load, cost, fuse, prior: what a user would otherwise do) and (b) every step priced
   from the same interpolated kernels (isolates the quadrature). Ratios of times measured in one run.
2. **A 70B decoder with weights absent**: `estimate llm zoo:llama-3.1-70b --hw h100 --prompt 512
   --generate 256 --batch 16 --json` in a fresh process: wall time and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from estimator.api import Estimator
from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.graph.load import load_graph
from estimator.llm import estimate_request
from estimator.llm.steps import EAGER_TORCH_RUNTIMES, TORCH_VIEW_OPS, StepKernels, as_views, bind, read_layout
from estimator.zoo.decoders import parse_decoder_spec

SPEC = "zoo:llama-3.1-8b;layers=2"


def integral_vs_steps(steps: int, prompt: int = 128, batch: int = 8, runtime: str | None = None) -> dict:
    """Errors and time ratios of the decode integral against the two step-by-step references (``runtime``:
    the profile's default, or e.g. ``onnxruntime-cuda`` for a fused graph runtime)."""
    est = Estimator("h100", runtime=runtime, calibrated=False)
    t0 = time.perf_counter()
    r = estimate_request(est, SPEC, prompt=prompt, generate=steps + 1, batch=batch)
    t_integral = time.perf_counter() - t0

    model = parse_decoder_spec(SPEC).build()
    layout = read_layout(model)
    # The default runtime (pytorch-cuda) is eager: `estimate llm` runs Transpose and Slice as PyTorch views,
    # so the reference costs the same kernels (load, cost, fuse, views, prior at every cache length).
    views = TORCH_VIEW_OPS if est.runtime.name in EAGER_TORCH_RUNTIMES else frozenset()
    t0 = time.perf_counter()
    full = [
        est.estimate_kernels(
            as_views(
                fuse_kernels(
                    count_costs(load_graph(model, shapes=bind(layout, batch, 1, p))), fuse=est.runtime.fuses
                ),
                views,
            )
        )
        for p in range(prompt, prompt + steps)
    ]
    t_full = time.perf_counter() - t0

    kernels = StepKernels(model, batch, fuse=est.runtime.fuses, views=views)
    poly = kernels.polynomial(
        lambda p: kernels.exact(1, p), (prompt, prompt + steps - 1), prompt + steps // 2
    )
    t0 = time.perf_counter()
    priced = [est.estimate_kernels(poly(p)) for p in range(prompt, prompt + steps)]
    t_priced = time.perf_counter() - t0
    exact_j = sum(e.joules for e in full)
    return {
        "runtime": est.runtime.name,
        "steps": steps,
        "integral_joules": r.decode_joules,
        "step_by_step_joules": exact_j,
        "relative_error": abs(r.decode_joules - exact_j) / exact_j,
        "relative_error_seconds": abs(r.decode_seconds - sum(e.seconds for e in full))
        / sum(e.seconds for e in full),
        "priced_steps_relative_error": abs(r.decode_joules - sum(e.joules for e in priced)) / exact_j,
        "reported_bound_joules": r.decode_error_bound_joules,
        "evaluations": r.decode_evaluations,
        "integral_s": t_integral,
        "step_by_step_s": t_full,
        "priced_steps_s": t_priced,
        "speedup_vs_step_by_step": t_full / t_integral,
        "speedup_vs_priced_steps": t_priced / t_integral,
    }


#: The 70B request, through the command (the Estimator a user gets: its trained correction, when one
#: exists, loads xgboost) and through the library with the physics prior alone.
_SEVENTY_B = {
    "cli": "from estimator.cli import run;"
    "rc = run(['llm', 'zoo:llama-3.1-70b', '--hw', 'h100', '--prompt', '512', '--generate', '256',"
    " '--batch', '16', '--json']);",
    "library_physics_only": "from estimator.api import Estimator; from estimator.llm import estimate_request;"
    "estimate_request(Estimator('h100', calibrated=False), 'zoo:llama-3.1-70b', prompt=512, generate=256,"
    " batch=16); rc = 0;",
}


def seventy_b(how: str = "cli") -> dict:
    """Wall time and peak RSS of `estimate llm` on a 70B zoo decoder in a fresh process (VmHWM of the new
    process image: ``ru_maxrss`` would carry the parent's peak across fork and exec on Linux)."""
    code = (
        "import time, json; t=time.perf_counter();"
        + _SEVENTY_B[how]
        + "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')];"
        "import sys; print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t,"
        " 'peak_rss_mb': int(hwm[0].split()[1]) / 1024 if hwm else None}), file=sys.stderr)"
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(done.stderr.strip().splitlines()[-1])
    out["process_wall_s"] = time.perf_counter() - t0
    return out


def main() -> int:
    """Run both benchmarks and print their JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--only", choices=["integral", "70b"], help="run one of the two")
    parser.add_argument("--runtime", help="runtime of the integral benchmark (default: the profile's)")
    args = parser.parse_args()
    result = {}
    if args.only != "integral":
        result["70b"] = {how: seventy_b(how) for how in _SEVENTY_B}
    if args.only != "70b":
        result["integral"] = integral_vs_steps(args.steps, runtime=args.runtime)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
