"""Check that loading, costing and fusion give the same answers as another checkout (or as the same code with the
node-cost memo off), field by field, over every committed graph, the examples and the zoo builders.

    python scripts/check_costing.py --dump ref.json [--tree OTHER_CHECKOUT]   # write the reference
    python scripts/check_costing.py --compare ref.json                        # compare this checkout with it
    python scripts/check_costing.py --memo-off                                # memo on against memo off

A graph's answer is everything downstream code reads: every node (name, op, domain, inputs, outputs, attributes,
folding, subgraphs), every tensor's shape and dtype, constant roots and values, producers; every NodeCost field;
the kernels of the fused and the eager runtime. Each part is hashed (SHA-256 of a canonical text), so a difference
names the graph and the part. Exit status 1 on any difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _canon(value: object) -> str:
    """A canonical text of ``value`` (numpy arrays by dtype, shape and bytes; mappings sorted)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return f"array({value.dtype.str},{value.shape},{hashlib.sha256(value.tobytes()).hexdigest()})"
    if isinstance(value, (np.generic,)):
        return f"{type(value).__name__}({value!r})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(f"{f.name}={_canon(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return f"{type(value).__name__}({fields})"
    if isinstance(value, dict) or hasattr(value, "items"):
        items = sorted((str(k), _canon(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canon(v) for v in value) + "]"
    if isinstance(value, float):
        return value.hex()
    return repr(value)


def _graph_parts(graph) -> dict[str, str]:
    return {
        "nodes": _canon(
            [
                (n.index, n.name, n.op_type, n.domain, n.inputs, n.outputs, n.attributes, n.constant_folded)
                for n in graph.nodes
            ]
        ),
        "subgraphs": _canon([{k: _graph_parts(g) for k, g in n.subgraphs.items()} for n in graph.nodes]),
        "tensors": _canon({k: (v.shape, v.dtype) for k, v in graph.tensors.items()}),
        "meta": _canon(
            (graph.name, graph.inputs, graph.outputs, graph.opsets, graph.symbolic_bindings, graph.ir_version)
        ),
        "roots": _canon(graph.constant_roots),
        "constants": _canon(graph.constants),
        "producers": _canon(graph.producers),
    }


def _bindings(source: object) -> dict[str, tuple[int]]:
    """Every symbolic dimension of the model's inputs bound: leading ones to 1, past lengths to 16, others 128."""
    import onnx

    model = (
        source if isinstance(source, onnx.ModelProto) else onnx.load(str(source), load_external_data=False)
    )
    out: dict[str, tuple[int]] = {}
    for vi in model.graph.input:
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.dim_param:
                out[d.dim_param] = (1,) if axis == 0 else (16,) if "past" in d.dim_param else (128,)
    return out


def answer(source: object) -> dict[str, str]:
    """The hashed parts of one model's graph, costs and kernels (``error`` when loading refuses it)."""
    from estimator.cost.kernels import fuse_kernels
    from estimator.cost.nodes import count_costs
    from estimator.errors import EstimatorError
    from estimator.graph.load import load_graph

    try:
        graph = load_graph(source, batch=1, shapes=_bindings(source))
    except EstimatorError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    parts = _graph_parts(graph)
    report = count_costs(graph)
    parts["costs"] = _canon((report.nodes, report.unsupported, report.not_costed, report.flags))
    for fuse in (True, False):
        k = fuse_kernels(report, fuse=fuse)
        parts[f"kernels_fuse={fuse}"] = _canon((k.kernels, k.kernel_of_node, k.views))
    return {k: hashlib.sha256(v.encode()).hexdigest()[:16] for k, v in parts.items()}


def models() -> Iterator[tuple[str, Callable[[], object]]]:
    """Every model checked: committed graphs, examples, and zoo builders of each family."""
    from estimator.zoo.decoder_configs import DECODERS
    from estimator.zoo.decoders import decoder
    from estimator.zoo.getzner import getzner_conv2d, getzner_linear
    from estimator.zoo.nasbench201 import nasbench201
    from estimator.zoo.torchvision_models import torchvision_model
    from estimator.zoo.transformers import bert_encoder, gpt2_decoder

    for path in sorted((ROOT / "data" / "graphs").glob("*.onnx")) + sorted(
        (ROOT / "examples").glob("*.onnx")
    ):
        yield path.relative_to(ROOT).as_posix(), lambda p=path: p
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    rng = random.Random(0)
    for i in range(12):
        e = [rng.choice(ops) for _ in range(6)]
        arch = f"|{e[0]}~0|+|{e[1]}~0|{e[2]}~1|+|{e[3]}~0|{e[4]}~1|{e[5]}~2|"
        yield f"nb201 {arch} fold={i % 2}", lambda a=arch, f=bool(i % 2): nasbench201(a, fold_batchnorm=f)
    yield "bert seq128", lambda: bert_encoder(batch=1, seq=128)
    yield "bert 2x256 b4", lambda: bert_encoder(layers=2, hidden=256, heads=4, ffn=1024, batch=4, seq=64)
    yield "gpt2 seq128", lambda: gpt2_decoder(batch=1, seq=128)
    yield "alexnet", lambda: torchvision_model("alexnet", 1)
    yield "getzner conv", lambda: getzner_conv2d(8, 16, 3, 1, 1, 32, batch=2)
    yield "getzner linear", lambda: getzner_linear(64, 32, batch=2)
    for name in ("gpt2", "llama-2-7b"):
        cfg = dataclasses.replace(DECODERS[name], layers=2)
        for quant in ("none", "int4"):
            yield f"decoder {name} quant={quant}", lambda c=cfg, q=quant: decoder(c, quant=q)


def reference_parser(description: str) -> argparse.ArgumentParser:
    """The options of a check against another checkout: ``--dump``, ``--tree`` and ``--compare``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dump", type=Path, help="write the answers of --tree (default: this checkout)")
    parser.add_argument("--tree", type=Path, help="the checkout whose estimator package is imported")
    parser.add_argument("--compare", type=Path, help="compare this checkout with answers written by --dump")
    return parser


def main() -> int:
    """Dump or compare the answers; returns the exit status."""
    parser = reference_parser(__doc__)
    parser.add_argument("--memo-off", action="store_true", help="compare the node-cost memo on against off")
    args = parser.parse_args()
    sys.path.insert(0, str((args.tree or ROOT).resolve()))

    if args.memo_off:
        from estimator.cost import nodes

        differ = 0
        for name, build in models():
            model = build()
            nodes.NODE_COST_MEMO.enabled = False
            off = answer(model)
            nodes.NODE_COST_MEMO.enabled = True
            on, again = answer(model), answer(model)  # fills the memo, then reads from it
            if not off == on == again:
                differ += 1
                print(f"DIFFERS {name}: {sorted(k for k in off if not off[k] == on.get(k) == again.get(k))}")
        print(f"memo on vs off: {differ} graphs differ")
        return 1 if differ else 0

    answers = {name: answer(build()) for name, build in models()}
    if args.dump:
        args.dump.write_text(json.dumps(answers, indent=1, sort_keys=True))
        print(f"wrote {len(answers)} answers to {args.dump}")
        return 0
    if not args.compare:
        parser.error("give --dump, --compare or --memo-off")
    differ = compare_answers(answers, json.loads(args.compare.read_text()))
    print(f"{len(answers)} models compared, {differ} differ")
    return 1 if differ else 0


def compare_answers(answers: dict[str, dict[str, str]], reference: dict[str, dict[str, str]]) -> int:
    """Print each name whose hashed parts differ from ``reference`` (or that it lacks); return how many."""
    differ = 0
    for name, parts in answers.items():
        ref = reference.get(name)
        if ref is None:
            print(f"MISSING in reference: {name}")
            differ += 1
            continue
        bad = sorted(k for k in set(parts) | set(ref) if parts.get(k) != ref.get(k))
        if bad:
            differ += 1
            print(f"DIFFERS {name}: {', '.join(bad)}")
    return differ


if __name__ == "__main__":
    sys.exit(main())
