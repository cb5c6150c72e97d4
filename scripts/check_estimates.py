"""Check that estimates are the same as another checkout's, field by field, over the models of
``check_costing.py`` (every committed graph, the examples, the zoo builders) on a spread of profiles, runtimes,
dtypes, thread counts, priors and trained models (graph- and kernel-level, cross-device GPU, physics only).

    python scripts/check_estimates.py --dump ref.json [--tree OTHER_CHECKOUT]   # write the reference
    python scripts/check_estimates.py --compare ref.json                        # compare this checkout with it

An estimate's answer is every field of :class:`~estimator.api.Estimate` but the cost report (checked by
``check_costing.py``): joules, interval, method, baselines, the prior's full result with its per-kernel arrays
and placement, every per-layer row; and the fused kernels with their integer columns. Each estimate is taken on
a new kernel report ("first") and again on the same report ("again"); errors are compared by type and message.
Each part is hashed (SHA-256 of a canonical text). Exit status 1 on any difference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (profile, runtime, calibrated, prior, dtype, threads): trained graph-level (rpi5), kernel-level (xeon) and
#: cross-device GPU models (a100, gtx1080ti), the v1 and v2 priors alone, three dtypes, two thread counts.
CONFIGS = (
    ("a100", None, True, None, None, None),
    ("a100", None, True, None, "fp16", None),
    ("a100", None, False, "v1", None, None),
    ("a100", None, False, "v2", "int8", None),
    ("rpi5", "onnxruntime", True, None, None, None),
    ("rpi5", "onnxruntime", True, None, "fp16", 2),
    ("rpi5", "tflite", True, None, None, None),
    ("xeon-gold-5120", "pytorch-cpu", True, None, None, None),
    ("xeon-gold-5120", "pytorch-cpu", True, None, "int8", 2),
    ("gtx1080ti", None, True, None, None, None),
    ("h100", "onnxruntime-cuda", True, None, None, None),
    ("jetson-orin", None, True, None, None, None),
)


def _costing_script():
    """``check_costing.py`` of this checkout (its model list and canonical text)."""
    spec = importlib.util.spec_from_file_location("check_costing", ROOT / "scripts" / "check_costing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _estimate_parts(est, canon) -> dict[str, str]:
    fields = {f.name: getattr(est, f.name) for f in dataclasses.fields(est) if f.name != "costs"}
    fields["layers"] = list(est.layers)
    return {
        "answer": canon({k: v for k, v in fields.items() if k not in ("prior", "layers")}),
        "prior": canon(est.prior),
        "layers": canon(fields["layers"]),
        "json": canon(est.to_json(top=len(est.layers))),
    }


def answers(canon, models, bindings) -> dict[str, dict[str, str]]:
    """Hashed parts of every (model, configuration) estimate, first call and again."""
    from estimator.api import Estimator
    from estimator.cost.kernels import fuse_kernels
    from estimator.cost.nodes import count_costs
    from estimator.errors import EstimatorError
    from estimator.graph.load import load_graph

    estimators = []
    for hw, runtime, calibrated, prior, dtype, threads in CONFIGS:
        est = Estimator(hw, runtime=runtime, calibrated=calibrated, prior=prior)
        estimators.append((f"{hw}/{est.runtime.name} cal={calibrated} prior={prior}", est, dtype, threads))
    out: dict[str, dict[str, str]] = {}
    for name, build in models:
        source = build()
        try:
            costs = count_costs(load_graph(source, batch=1, shapes=bindings(source)))
        except EstimatorError as exc:
            out[name] = {"load error": f"{type(exc).__name__}: {exc}"}
            continue
        reports = {}
        for label, est, dtype, threads in estimators:
            parts: dict[str, str] = {}
            fuse = est.runtime.fuses
            if fuse not in reports:
                k = fuse_kernels(costs, fuse=fuse)
                reports[fuse] = k
                parts["kernels"] = canon((k.kernels, k.kernel_of_node, k.views, k.arrays))
            for call in ("first", "again"):
                try:
                    e = est.estimate_kernels(reports[fuse], dtype=dtype, threads=threads)
                    parts.update({f"{call} {k}": v for k, v in _estimate_parts(e, canon).items()})
                except EstimatorError as exc:
                    parts[f"{call} error"] = f"{type(exc).__name__}: {exc}"
            key = f"{name} | {label} dtype={dtype} threads={threads}"
            out[key] = {k: hashlib.sha256(v.encode()).hexdigest()[:16] for k, v in parts.items()}
            # A new report for the next configuration's first call (the fused kernels are recomputed).
            reports.pop(fuse)
    return out


def main() -> int:
    """Dump or compare the answers; returns the exit status."""
    costing = _costing_script()  # stdlib imports only: the estimator package comes from --tree below
    parser = costing.reference_parser(__doc__)
    args = parser.parse_args()
    if not (args.dump or args.compare):
        parser.error("give --dump or --compare")
    sys.path.insert(0, str((args.tree or ROOT).resolve()))
    result = answers(costing._canon, costing.models(), costing._bindings)
    n = sum(sum(k.endswith("answer") for k in parts) for parts in result.values())
    if args.dump:
        args.dump.write_text(json.dumps(result, indent=1, sort_keys=True))
        print(f"wrote {len(result)} answers ({n} estimates) to {args.dump}")
        return 0
    differ = costing.compare_answers(result, json.loads(args.compare.read_text()))
    print(f"{len(result)} answers ({n} estimates) compared, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
