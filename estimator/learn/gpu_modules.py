"""IrEne at module level: each measured module mapped to the kernels that implement it, the v2 prior on those
kernels, and a learned correction trained on the module rows of other architectures (issue 8's "Module level:
MAPE <= 10%").

**Mapping** (:func:`map_row`). The zoo's transformer builders name every node after the Hugging Face module
whose code runs it, as PyTorch's exporter does (``/encoder/layer.3/attention/self/query/matmul_41``). A module
row ``encoder.layer.3.attention:BertAttention`` maps to every launched kernel whose nodes all sit in
``encoder.layer.3.attention`` or below it. An op row (``level=op``) maps to the kernels of its leaf module
(``...attention.self.query:Linear`` -> its MatMul and bias Add) or, for a functional op named after its parent
module (``...attention.self:Softmax``), to the one kernel of that ONNX op type directly in that module; two
such kernels (IrEne's two attention ``MatMul`` rows) are ambiguous and not mapped. A row is never guessed: each
unmapped row is counted under its reason.

**Prediction.** The v2 prior runs the module's kernels on their own (:func:`~estimator.energy.prior_v2.
subset_terms`: its own host/GPU pipeline, as IrEne timed a module's forward call alone), with the shipped
constants. The correction is :mod:`estimator.learn.gpu_training`'s residual (xgboost on the GPU feature schema
with ``level_module`` set, the boundary a feature), trained on module rows only.

**Split.** Per device, leave-one-architecture-out: the held-out architecture's rows (every model, batch and
sequence) are out of training. Architectures, not model ids, are held out because models that share an
architecture run the same modules at the same shapes: RoBERTa's layers are BERT's (only the embeddings differ),
distilgpt2's blocks are GPT-2's; holding out one model id would leave its identical modules in training. The
leave-model-out figure (by model id) is reported beside it. IrEne repeats one measured value for every layer of
a model, so rows that share (configuration, boundary, module path with the layer index removed, joules) are
fitted once with their count as the weight (the same fit, fewer rows); every figure is over all rows.

Why this module is long: the mapping, the pricing of a module's kernels, its split and its report section are
one figure; apart, each would re-derive the same row bookkeeping (distinct measurements and their weights).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.cost.kernels import MATRIX_KINDS
from estimator.energy.hardware import HardwareProfile, load_profile
from estimator.energy.physics import kernel_arrays
from estimator.energy.prior_v2 import STREAM_ONCHIP_J_PER_BYTE_7NM, assemble, device_terms, subset_terms
from estimator.energy.runtimes import get_runtime
from estimator.errors import EstimatorError
from estimator.learn.featurize import REPO_ROOT
from estimator.learn.gpu_features import GraphAggregates, gpu_feature_row, graph_aggregates
from estimator.learn.gpu_training import _kernels, fit_gpu
from estimator.learn.training import metrics, metrics_table

#: The module and op rows of IrEne's runs (data/README.md).
MODULE_TABLE = "data/irene_modules.csv.gz"
#: Model id -> architecture: models that run the same modules at the same shapes share one (held out together).
ARCHITECTURE = {
    "bert-base-uncased": "BERT encoder (bert-base, roberta-base)",
    "roberta-base": "BERT encoder (bert-base, roberta-base)",
    "distilbert-base-uncased": "DistilBERT encoder",
    "gpt2": "GPT-2 decoder (gpt2, distilgpt2)",
    "distilgpt2": "GPT-2 decoder (gpt2, distilgpt2)",
    "openai-gpt": "OpenAI-GPT decoder",
}
#: IrEne's functional ops (no module of their own) -> the ONNX op type that runs them.
FUNCTIONAL_OPS = {"Softmax": "Softmax", "MatMul": "MatMul"}


def node_module(node_name: str) -> str:
    """The dotted module path of an exporter-style node name (``/encoder/layer.3/attention/matmul_7`` ->
    ``encoder.layer.3.attention``; ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``); ``""`` without one.
    The same rule as :func:`estimator.report.modules.module_name` (a scope that extends its parent's name adds
    only its own part)."""
    if "/" not in node_name:
        return ""
    name, previous = "", ""
    for scope in [p for p in node_name.split("/") if p][:-1]:
        if previous and scope.startswith(previous + "."):
            name += scope[len(previous) :]
        else:
            name = f"{name}.{scope}" if name else scope
        previous = scope
    return name


@dataclass(frozen=True)
class GraphModules:
    """Per launched kernel of a graph: its module path ("" when its nodes span modules) and its op types."""

    modules: tuple[str, ...]
    op_types: tuple[str, ...]


def graph_modules(kernels) -> GraphModules:
    """The module path and op types of every kernel of a fused ``KernelReport``."""
    graph = kernels.costs.graph
    mods, ops = [], []
    for k in kernels.kernels:
        paths = {node_module(graph.nodes[i].name) for i in k.nodes}
        mods.append(paths.pop() if len(paths) == 1 else "")
        ops.append("+".join(graph.nodes[i].op_type for i in k.nodes))
    return GraphModules(tuple(mods), tuple(ops))


def map_row(gm: GraphModules, launches: np.ndarray, module: str, level: str) -> tuple[np.ndarray | None, str]:
    """Kernels implementing one IrEne row (``module`` = ``<path>:<class>``) and the reason when none do.

    Returns (boolean kernel mask, "mapped") or (None, reason).
    """
    path, _, cls = module.rpartition(":")
    mods = np.array(gm.modules)
    launched = launches > 0
    inside = launched & np.array([m == path or m.startswith(path + ".") for m in gm.modules], dtype=bool)
    if level == "op" and cls in FUNCTIONAL_OPS:
        inside = launched & (mods == path) & (np.array(gm.op_types) == FUNCTIONAL_OPS[cls])
        if inside.sum() > 1:
            return None, f"functional op {cls}: {int(inside.sum())} kernels in its module (ambiguous)"
    if not inside.any():
        return None, "no kernel of the graph under this module path"
    return inside, "mapped"


def subset_aggregates(kernels, agg: GraphAggregates, mask: np.ndarray, dtype: str | None) -> GraphAggregates:
    """The GPU feature aggregates of the kernels in ``mask`` (a module), device terms from the whole graph's
    ``agg``. Peak live bytes: the largest single kernel's reads and writes (the module's own liveness is not
    tracked). Input elements: the graph's (the tokens of the batch)."""
    ka = kernel_arrays(kernels, dtype)
    moved = (ka.weight_bytes + ka.activation_bytes + ka.write_bytes)[mask]
    flops = ka.flops[mask]
    with np.errstate(divide="ignore", invalid="ignore"):
        intensity = np.where(moved > 0, flops / np.maximum(moved, 1e-30), np.inf)
    matrix = np.array([k.kind in MATRIX_KINDS for k in kernels.kernels], dtype=bool)[mask]
    total_f, total_b = float(flops.sum()), float(moved.sum())
    scale_c = agg.ideal_compute_s / agg.flops if agg.flops > 0 else 0.0
    return GraphAggregates(
        flops=total_f,
        bytes_moved=total_b,
        matrix_flops=float(flops[matrix].sum()),
        flops_below_ridge=float(flops[intensity < agg.ridge].sum()),
        weight_bytes=float(ka.weight_bytes[mask].sum()),
        peak_live_bytes=float((ka.activation_bytes + ka.write_bytes)[mask].max(initial=0.0)),
        launches=float(ka.launches[mask].sum()),
        batch=agg.batch,
        input_elements=agg.input_elements,
        dtype_bits=agg.dtype_bits,
        ridge=agg.ridge,
        l2_bytes=agg.l2_bytes,
        ideal_compute_s=total_f * scale_c,
        ideal_memory_s=total_b * agg.ideal_memory_s / max(agg.bytes_moved, 1.0),
    )


def pattern_of(module: str) -> str:
    """A module path with its layer indices replaced by ``N`` (IrEne repeats one value for every layer)."""
    return re.sub(r"\.\d+(?=[.:])", ".N", module)


@dataclass
class ModuleSet:
    """Mapped rows (one per distinct measurement, ``weight`` = rows it stands for) with the v2 prior and the
    GPU features; ``unmapped`` counts the rows left out by reason."""

    table: pd.DataFrame
    log_prior: np.ndarray
    prior_seconds: np.ndarray
    flops: np.ndarray
    X: np.ndarray
    unmapped: dict[str, int]


def load_module_rows(root: Path = REPO_ROOT, level: str = "module") -> pd.DataFrame:
    """IrEne's rows of ``level`` (``module`` or ``op``)."""
    from estimator.data.measurements import read_measurements

    t = read_measurements(root / MODULE_TABLE)
    return t[t["level"].astype(str) == level].reset_index(drop=True)


def build_module_set(
    rows: pd.DataFrame,
    *,
    root: Path = REPO_ROOT,
    progress: Callable[[str], None] | None = None,
    stream_onchip_j_per_byte: float = STREAM_ONCHIP_J_PER_BYTE_7NM,
    graphs: dict | None = None,
) -> ModuleSet:
    """Map every row of ``rows`` (IrEne module or op rows) and price the mapped ones with the v2 prior
    (``stream_onchip_j_per_byte``, J/B at 7 nm, as shipped unless a fit tries another; ``graphs`` keeps built
    graphs between calls)."""
    say = progress or (lambda _line: None)
    t = rows.assign(
        pattern=rows["module"].astype(str).map(pattern_of),
        dtype=rows["dtype"].fillna("float32").astype(str) if "dtype" in rows else "float32",
    )
    keys = ["model_ref", "batch", "dtype", "hardware", "runtime", "boundary", "level", "pattern"]
    t = t.assign(joules_per_inference=t["joules_per_inference"].astype(float))
    grouped = t.groupby([*keys, "joules_per_inference", "latency_s"], dropna=False, sort=False)
    t = grouped.agg(module=("module", "first"), group=("group", "first"), weight=("module", "size"))
    t = t.reset_index()
    unmapped: dict[str, int] = {}
    keep, log_prior, seconds, flops, feats = [], [], [], [], []
    configs = sorted(t.groupby(["model_ref", "batch", "dtype", "hardware", "runtime"]).indices.items())
    keep_all = graphs is not None
    graphs = {} if graphs is None else graphs
    for n, ((ref, batch, dtype, hardware, runtime_name), idx) in enumerate(configs):
        runtime, hw = get_runtime(runtime_name), _profile(hardware)
        try:
            gkey = (ref, int(batch), str(dtype), runtime.fusion)
            if gkey not in graphs:
                if not keep_all:
                    graphs.clear()
                kernels = _kernels(root, str(ref), int(batch), str(dtype), "", runtime.fusion)
                graphs[gkey] = (kernels, graph_modules(kernels))
            kernels, gm = graphs[gkey]
        except EstimatorError as exc:
            for i in idx:
                _count(unmapped, f"graph not built ({type(exc).__name__})", t["weight"].iat[i])
            continue
        terms = device_terms(kernels, hw, runtime, stream_onchip_j_per_byte=stream_onchip_j_per_byte)
        agg = graph_aggregates(kernels, hw)
        priced: dict[str, tuple] = {}
        for i in idx:
            module, level = str(t["module"].iat[i]), str(t["level"].iat[i])
            if module not in priced:
                mask, reason = map_row(gm, terms.launches, module, level)
                if mask is None:
                    priced[module] = (None, reason)
                else:
                    prior = assemble(subset_terms(terms, hw, mask), hw, runtime)
                    priced[module] = (prior, subset_aggregates(kernels, agg, mask, None))
            prior, sub = priced[module]
            if prior is None:
                _count(unmapped, sub, t["weight"].iat[i])
                continue
            keep.append(i)
            log_prior.append(math.log(prior.joules))
            seconds.append(prior.seconds)
            flops.append(sub.flops)
            feats.append(
                gpu_feature_row(sub, prior, hw, runtime, boundary=str(t["boundary"].iat[i]), level=level)
            )
        if (n + 1) % 50 == 0 or n + 1 == len(configs):
            say(f"mapped and priced IrEne {t['level'].iat[0]} rows of {n + 1}/{len(configs)} configurations")
    return ModuleSet(
        t.iloc[keep].reset_index(drop=True),
        np.array(log_prior),
        np.array(seconds),
        np.array(flops),
        np.array(feats).reshape(len(keep), -1),
        unmapped,
    )


def _count(d: dict[str, int], reason: str, n) -> None:
    d[reason] = d.get(reason, 0) + int(n)


_PROFILES: dict[str, HardwareProfile] = {}


def _profile(name: str) -> HardwareProfile:
    if name not in _PROFILES:
        _PROFILES[name] = load_profile(name)
    return _PROFILES[name]


#: ``prior_v2_scaled``: v2 times the median measured / predicted of the training rows of the same boundary.
SYSTEMS = ("model", "prior_v2_scaled", "prior_v2_shipped", "flops_linear")


def split_masks(ms: ModuleSet, device: str, by: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(held-out unit, train, test) masks of one device: leave-one-architecture-out (``by="architecture"``)
    or leave-one-model-out (``by="model"``). No row of the held-out unit is in train."""
    on = (ms.table["hardware"].astype(str) == device).to_numpy()
    groups = ms.table["group"].astype(str)
    units = (groups.map(ARCHITECTURE).fillna(groups) if by == "architecture" else groups).to_numpy()
    return [(u, on & (units != u), on & (units == u)) for u in sorted(set(units[on]))]


def _flops_linear(ms: ModuleSet, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """a * FLOPs + b per boundary, weighted least squares on the training rows."""
    out = np.full(test.sum(), np.nan)
    b = ms.table["boundary"].astype(str).to_numpy()
    y, w = ms.table["joules_per_inference"].to_numpy(float), ms.table["weight"].to_numpy(float)
    for boundary in set(b[test]):
        tr, te = train & (b == boundary), (b == boundary)[test]
        if tr.sum() < 2:
            continue
        sw = np.sqrt(w[tr])
        coef, *_ = np.linalg.lstsq(
            np.stack([ms.flops[tr], np.ones(tr.sum())], 1) * sw[:, None], y[tr] * sw, None
        )
        out[te] = np.maximum(coef[0] * ms.flops[test][te] + coef[1], 1e-12)
    return out


def predict_folds(ms: ModuleSet, folds: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Held-out predictions (J) of every system on the test rows of ``folds``."""
    n = len(ms.table)
    pred = {s: np.full(n, np.nan) for s in SYSTEMS}
    y = np.log(ms.table["joules_per_inference"].to_numpy(float))
    w = ms.table["weight"].to_numpy(float)
    for _unit, train, test in folds:
        if np.any(train & test):
            raise ValueError("a row is in both the training and the test rows")
        reg = fit_gpu(ms.X[train], y[train] - ms.log_prior[train], weights=w[train] / w[train].mean())
        pred["model"][test] = np.exp(ms.log_prior[test] + reg.predict(ms.X[test]))
        pred["flops_linear"][test] = _flops_linear(ms, train, test)
        b = ms.table["boundary"].astype(str).to_numpy()
        for boundary in set(b[test]):
            tr, te = train & (b == boundary), test & (b == boundary)
            resid = np.repeat(y[tr] - ms.log_prior[tr], ms.table["weight"].to_numpy(int)[tr])
            pred["prior_v2_scaled"][te] = (
                np.exp(ms.log_prior[te] + np.median(resid)) if len(resid) else np.nan
            )
    pred["prior_v2_shipped"] = np.exp(ms.log_prior)
    return pred


def _metrics(ms: ModuleSet, rows: np.ndarray, pred: dict[str, np.ndarray]) -> dict:
    """Metrics over every measured row (a distinct measurement repeated ``weight`` times)."""
    reps = ms.table["weight"].to_numpy(int)[rows]
    measured = np.repeat(ms.table["joules_per_inference"].to_numpy(float)[rows], reps)
    tasks = np.repeat(ms.table["pattern"].astype(str).str.rpartition(":")[2].to_numpy()[rows], reps)
    out = {}
    for system in SYSTEMS:
        p = np.repeat(pred[system][rows], reps)
        ok = ~np.isnan(p)
        out[system] = metrics(measured[ok], p[ok], tasks[ok]) if ok.sum() > 1 else None
    return out


def run_module_evaluation(progress: Callable[[str], None] | None = None, root: Path = REPO_ROOT) -> dict:
    """Issue 8's module-level figure: per device and boundary, leave-one-architecture-out (the target's split)
    and leave-one-model-out, with the mapping's coverage. Returns a JSON-ready dict."""
    say = progress or (lambda _line: None)
    rows = load_module_rows(root)
    ms = build_module_set(rows, root=root, progress=say)
    mapped = int(ms.table["weight"].sum())
    report: dict = {
        "rows": len(rows),
        "rows_mapped": mapped,
        "unmapped": ms.unmapped,
        "distinct_measurements": len(ms.table),
        "splits": {},
    }
    boundary = ms.table["boundary"].astype(str).to_numpy()
    for by in ("architecture", "model"):
        for device in sorted(set(ms.table["hardware"].astype(str))):
            folds = split_masks(ms, device, by)
            say(f"IrEne modules on {device}: leave-one-{by}-out over {len(folds)} units")
            pred = predict_folds(ms, folds)
            on = np.any([test for _u, _tr, test in folds], axis=0)
            report["splits"][f"{device}/{by}"] = {
                "split": f"leave-one-{by}-out ({len(folds)} units: {', '.join(u for u, _, _ in folds)})",
                "by_boundary": {
                    b: _metrics(ms, on & (boundary == b), pred) for b in sorted(set(boundary[on]))
                },
            }
    return report


#: The target of issue 8 at module level.
MODULE_TARGET_MAPE = 0.10


def module_target_lines(report: dict | None) -> list[str]:
    """Rows of the targets table: the model's MAPE per device and boundary, leave-one-architecture-out."""
    if not report:
        return ["| IrEne module level: MAPE <= 10% | not evaluated | NOT met |"]
    lines = []
    for name, entry in report["splits"].items():
        device, by = name.split("/")
        if by != "architecture":
            continue
        for boundary, e in entry["by_boundary"].items():
            m = e["model"]
            ok = m is not None and m["mape"] <= MODULE_TARGET_MAPE
            figure = "-" if m is None else f"{100 * m['mape']:.1f}% ({m['n']} rows)"
            scaled = e.get("prior_v2_scaled")
            if scaled is not None:
                figure += f"; v2 scaled {100 * scaled['mape']:.1f}%"
            lines.append(
                f"| IrEne module level, irene/{device} {boundary}, {entry['split'].split(' (')[0]}: MAPE <= 10% | "
                f"{figure} | {'met' if ok else 'NOT met'} |"
            )
    return lines


def _table(by_boundary: dict) -> list[str]:
    lines = []
    for boundary, entry in by_boundary.items():
        lines += [f"Boundary `{boundary}`:", "", *metrics_table(entry, SYSTEMS, "module classes"), ""]
    return lines


def module_markdown(report: dict | None) -> list[str]:
    """The module-level section of docs/evaluation_gpu.md."""
    if not report:
        return []
    lines = [
        "## IrEne at module level (`estimator/learn/gpu_modules.py`)",
        "",
        f"{report['rows']} module rows; {report['rows_mapped']} mapped to the kernels of their module "
        f"({report['distinct_measurements']} distinct measurements: IrEne repeats one value for every layer). "
        "Not mapped: "
        + (", ".join(f"{k}: {v}" for k, v in sorted(report["unmapped"].items())) or "none")
        + ". `model` = the GPU residual over the v2 prior of the module's kernels, trained on the module rows of "
        "the held-in units of the same device; `prior_v2_scaled` = v2 times the median measured / predicted of "
        "those rows (one factor per boundary); `prior_v2_shipped` = v2 alone on the module's kernels; "
        "`flops_linear` = a * FLOPs + b on the same training rows.",
        "",
    ]
    for name, entry in report["splits"].items():
        lines += [f"### irene/{name.split('/')[0]}: {entry['split']}", ""]
        lines += _table(entry["by_boundary"])
    return lines
