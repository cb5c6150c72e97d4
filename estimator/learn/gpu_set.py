"""The GPU measurement rows and their costed configurations (:class:`GpuSet`): which committed tables train,
which rows have a graph, and each (network, batch, dtype, device, runtime) costed once into the v2 prior's
device terms and the GPU feature aggregates (cached on disk, :mod:`estimator.learn.gpu_cache`).

Split out of :mod:`estimator.learn.gpu_training` (which re-exports every name here) to keep both under the
module size limit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.hardware import HardwareProfile, load_profile
from estimator.energy.physics import DTYPE_CHOICES, desislavov_joules, energy_prior
from estimator.energy.prior_v2 import DeviceTerms, device_terms
from estimator.energy.runtimes import get_runtime
from estimator.errors import EstimatorError
from estimator.graph.load import load_graph
from estimator.learn.featurize import REPO_ROOT, build_model
from estimator.learn.gpu_cache import ConfigCache
from estimator.learn.gpu_features import GraphAggregates, graph_aggregates

#: The committed GPU training tables (whole networks); module/op rows are reported apart.
GPU_TABLES: tuple[tuple[str, str], ...] = (
    ("irene", "data/irene.csv.gz"),
    ("fischer_eff22", "data/fischer_eff22.csv.gz"),
    ("fischer_rtx4090", "data/fischer_rtx4090.csv.gz"),
)
#: Committed GPU tables left out of training and evaluation unless asked for (``--with-source NAME``), and why.
#: Power Hungry Processing (A100-SXM4-80GB, transformers pipelines at batch 1): trained on, it made every held-out
#: GPU worse in leave-one-device-out on 2026-12-02 (RTX 4090 median APE 124% -> 381%, Quadro 43% -> 51%, GTX
#: 1080 Ti board 16% -> 22%, A100-40GB 52% -> 56%), and inside its own source the learned model (median APE 65%)
#: lost to the v2 prior alone (47%): its pipelines' CPU pre-processing (image decoding and resizing, 800 x 1066
#: detection inputs) is most of a query and no graph feature sees it. docs/evaluation_gpu_power_hungry.md.
#: MLPerf Power (ResNet-50 and BERT-large under TensorRT on 11 GPUs, whole box at the wall, 89 rows): no product
#: answer moves with it - every GPU profile answers at gpu-board-nvml, where the cross-device answer is the v2
#: prior fitted on board rows, which wall rows never enter (ResNet-50 --hw a100 / l4 / h100: 604 / 197 / 611 mJ
#: with and without, 2026-12-02) - while it moves the learned residual on the old GPUs both ways (leave-one-device-
#: out, 2026-12-02): RTX 4090 codecarbon-total median APE 144.9% -> 85.2% (90% coverage 61.5% -> 79.5%), GTX 1070
#: machine-total 26.7% -> 22.7%, but GTX 1080 Ti machine-total 7.4% -> 32.2% (14.5% with each source weighing the
#: same, tried and not used). Its own GPUs at wall-system: median APE 8.5-70% (pooled 20.8%, v2 prior 60.1%),
#: intervals x4-x7 wide covering 100% on 7 of 11 GPUs; with the whole chip held out (every GA100 / GH100 / Ada
#: board) the tails grow (A100 P90 32.5% -> 59.8%, H200 median 8.5% -> 58.4%). Not judged-only: no other source
#: reads the wall, so judged only it would test a residual that never saw a wall-system row.
#: docs/evaluation_gpu_mlperf.md.
OPTIONAL_GPU_TABLES: dict[str, str] = {
    "power_hungry": "data/power_hungry.csv.gz",
    "mlperf_power": "data/mlperf_power.csv.gz",
}
#: Committed GPU tables that every held-out split judges but that train nothing unless asked for
#: (``--with-source NAME`` trains on them too): ``estimate evaluate --gpu`` and ``estimate train-gpu`` load them
#: marked ``judged_only``. Their rows are never in a leave-one-device-out or leave-one-source-out training fold,
#: fit no host constant and train no shipped model; their one other use is the interval of the cross-device answer
#: at the prior's boundary, as units (GPUs) that time one forward pass, where neither their GPU nor their source is
#: held out (``judged_calibration`` in ``estimator/learn/gpu_cross.py``). Their own per-source split (the device's
#: other networks train) is reported like any source's.
#: ML.ENERGY v2 diffusion (one UNet forward pass per row, fp16, A100-40GB and H100): trained on, it moved the
#: learned residual on the other GPUs (2026-12-02, against the 825-row run without it): RTX 4090
#: codecarbon-total median APE 144.9% -> 204.6% (P90 337.8% -> 469.8%), GTX 1080 Ti machine-total 7.4% -> 11.8%,
#: GTX 1070 machine-total 26.7% -> 23.1%; every gpu-board-nvml figure of the old GPUs within 0.4 points. Judged
#: only, it tests the cross-device answer on the first Ampere and Hopper forward passes at the board.
JUDGED_GPU_TABLES: dict[str, str] = {
    "mlenergy_diffusion": "data/mlenergy_diffusion.csv.gz",
}


@dataclass(frozen=True)
class Config:
    """A network on a device as a runtime runs it (prior-independent): the v2 device terms and aggregates.

    Attributes:
        terms: the v2 prior's device terms.
        agg: the GPU feature aggregates.
        v1_joules: the v1 prior's joules (a baseline), J.
        desislavov_joules: Desislavov et al.'s baseline, J.
    """

    terms: DeviceTerms
    agg: GraphAggregates
    v1_joules: float
    desislavov_joules: float


@dataclass
class GpuSet:
    """Featurisable GPU rows and their configurations, rows aligned with ``table``.

    Attributes:
        table: the measurement rows kept (one boundary each), with a ``config`` key column.
        configs: config key -> :class:`Config`.
        missing: rows dropped, by "source: reason" (graph not committed, or not costed and why).
    """

    table: pd.DataFrame
    configs: dict[tuple, Config]
    missing: dict[str, int]

    @property
    def trainable(self) -> np.ndarray:
        """Per row: whether it may train (False for a judged-only table's rows, :data:`JUDGED_GPU_TABLES`)."""
        if "judged_only" not in self.table:
            return np.ones(len(self.table), bool)
        return ~self.table["judged_only"].fillna(False).to_numpy(dtype=bool)

    @property
    def measured_j(self) -> np.ndarray:
        """Measured joules per inference."""
        return self.table["joules_per_inference"].to_numpy(dtype=float)


def config_key(row: pd.Series | dict, root: Path = REPO_ROOT) -> tuple:
    """The key of a row's configuration: (model_ref, batch, dtype, hardware, runtime, variant). The variant is
    the graph file's digest (empty for zoo specs: a re-exported graph is never served from the cache) and, for
    an ONNX graph with a symbolic sequence, ``;seq=N`` from the row's ``seq_len``."""
    dtype = row.get("dtype")
    dtype = "float32" if dtype is None or (isinstance(dtype, float) and math.isnan(dtype)) else str(dtype)
    ref = str(row["model_ref"])
    variant = _file_digest(root / ref) if ref.endswith(".onnx") else ""
    seq = row.get("seq_len")
    if ref.endswith(".onnx") and seq is not None and not pd.isna(seq):
        variant += f";seq={int(seq)}"
    return (ref, int(row["batch"]), dtype, str(row["hardware"]), str(row["runtime"]), variant)


def _kernels(root: Path, model_ref: str, batch: int, dtype: str, variant: str, fuse: bool | str):
    """Fused kernels of a configuration's graph (a zoo spec, or an ONNX file bound at ``batch`` and ``seq``)."""
    return fuse_kernels(count_costs(config_graph(root, model_ref, batch, dtype, variant)), fuse=fuse)


def config_graph(root: Path, model_ref: str, batch: int, dtype: str, variant: str):
    """The shaped graph of a configuration: a zoo spec built at ``batch`` / ``dtype``, or an ONNX file bound at
    ``batch`` and, when ``variant`` carries ``;seq=N``, its symbolic ``sequence`` dimension at N tokens."""
    if model_ref.endswith(".onnx"):
        # a symbolic dimension is bound by name with a 1-tuple (load_graph's ``{dim_param: (value,)}``)
        shapes = {"sequence": (int(variant.split(";seq=")[1]),)} if ";seq=" in variant else None
        return load_graph(root / model_ref, batch=batch, shapes=shapes)
    return load_graph(build_model(model_ref, batch, dtype))


_DIGESTS: dict[Path, str] = {}


def _file_digest(path: Path) -> str:
    if path not in _DIGESTS:
        _DIGESTS[path] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return _DIGESTS[path]


def graph_available(model_ref: str, root: Path = REPO_ROOT) -> bool:
    """Whether the graph a row names can be built here (a zoo ``hf:`` spec, or a committed ONNX file)."""
    if model_ref.endswith(".onnx"):
        return (root / model_ref).exists()
    return model_ref.startswith("hf:")


def load_gpu_table(
    root: Path = REPO_ROOT,
    tables: tuple[tuple[str, str], ...] = GPU_TABLES,
    with_sources: Sequence[str] = (),
    judged: bool = False,
) -> pd.DataFrame:
    """The whole-network rows of the committed GPU tables (``level`` empty or ``model``), plus those of the
    :data:`OPTIONAL_GPU_TABLES` and :data:`JUDGED_GPU_TABLES` named in ``with_sources`` (DataError for a name
    that is neither), and with ``judged`` every judged-only table, its rows marked ``judged_only`` (never trained
    on: :attr:`GpuSet.trainable`)."""
    from estimator.data.measurements import read_measurements
    from estimator.errors import DataError

    named = {**OPTIONAL_GPU_TABLES, **JUDGED_GPU_TABLES}
    unknown = sorted(set(with_sources) - set(named))
    if unknown:
        raise DataError(
            f"--with-source {unknown[0]!r} is not an optional GPU source; choose from {', '.join(sorted(named))}"
        )
    extra = dict.fromkeys(with_sources)
    tables = (*tables, *((name, named[name]) for name in extra))
    judged_only = [(name, path) for name, path in JUDGED_GPU_TABLES.items() if judged and name not in extra]
    frames = []
    for (_name, path), only in [*((t, False) for t in tables), *((t, True) for t in judged_only)]:
        t = read_measurements(root / path)
        if "level" in t:
            t = t[t["level"].isna() | (t["level"].astype(str) == "model")]
        frames.append(t.assign(judged_only=only))
    return pd.concat(frames, ignore_index=True)


def build_gpu_set(
    table: pd.DataFrame,
    *,
    root: Path = REPO_ROOT,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> GpuSet:
    """Cost every configuration of ``table`` whose graph is available (cached on disk)."""
    say = progress or (lambda _line: None)
    table = table.reset_index(drop=True)
    ok = np.array([graph_available(str(m), root) for m in table["model_ref"]], dtype=bool)
    missing = {
        f"{s}: graph not committed": n for s, n in table[~ok]["source"].astype(str).value_counts().items()
    }
    table = table[ok].reset_index(drop=True)
    keys = [config_key(r, root) for r in table.to_dict("records")]
    table = table.assign(config=keys)
    cache = ConfigCache(cache_dir)
    configs = cache.load()
    todo = [k for k in dict.fromkeys(keys) if k not in configs]
    by_graph: dict[tuple, object] = {}
    failed: dict[tuple, str] = {}
    for i, key in enumerate(todo):
        model_ref, batch, dtype, hardware, runtime_name, variant = key
        runtime = get_runtime(runtime_name)
        gkey = (model_ref, batch, dtype, runtime.fusion, variant)
        try:
            if gkey not in by_graph:
                if len(by_graph) > 64:
                    by_graph.clear()
                by_graph[gkey] = _kernels(root, model_ref, batch, dtype, variant, runtime.fusion)
            kernels = by_graph[gkey]
        except EstimatorError as exc:
            failed[key] = type(exc).__name__
            continue
        hw = _profile(hardware)
        element = DTYPE_CHOICES.get(dtype, dtype) if dtype != "float32" else None
        configs[key] = Config(
            terms=device_terms(kernels, hw, runtime, element),
            agg=graph_aggregates(kernels, hw, element),
            v1_joules=energy_prior(kernels, hw, dtype=element, runtime=runtime).joules,
            desislavov_joules=desislavov_joules(kernels, hw, element),
        )
        if (i + 1) % 25 == 0 or i + 1 == len(todo):
            say(f"costed {i + 1}/{len(todo)} GPU configurations")
            cache.save(configs)
    cache.save(configs)
    bad = table["config"].isin(set(failed))
    for (source, key), n in table[bad].groupby([table["source"].astype(str), table["config"]]).size().items():
        reason = f"{source}: graph not costed ({failed[key]})"
        missing[reason] = missing.get(reason, 0) + int(n)
    table = table[~bad].reset_index(drop=True)
    return GpuSet(table, configs, missing)


def feature_boards(gs: GpuSet) -> np.ndarray:
    """Per row, the boards the ``log_boards`` feature counts: the ``boards`` summed in the energy
    (``gpu-boards-summed``; 1 elsewhere), and at ``wall-system`` the ``accelerators`` behind the wall reading
    (MLPerf: one board's forward pass plus 1/accelerators of the host, so the host's share per sample falls
    with it). The ``boards`` column itself (the power floor's count) is never replaced by ``accelerators``."""
    t = gs.table
    boards = (t["boards"] if "boards" in t else pd.Series(1, index=t.index)).astype("Float64").fillna(1.0)
    if "accelerators" in t:
        wall = t["boundary"].astype(str).eq("wall-system") & t["accelerators"].notna()
        boards = boards.where(~wall, t["accelerators"].astype("Float64"))
    return np.maximum(boards.to_numpy(dtype=float), 1.0).astype(int)


def held_out_split(
    devices: np.ndarray, held_out: str, trainable: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) masks of leave-one-device-out: every row of ``held_out`` is in test, none in train, and no
    row that may not train (``trainable`` False: a judged-only source, :attr:`GpuSet.trainable`) either."""
    test = devices == held_out
    return (~test if trainable is None else ~test & trainable), test


def device_folds(
    devices: np.ndarray, trainable: np.ndarray, groups: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Leave-one-device-out folds (train, test, inner labels), one per device in sorted order. A device is a
    hardware profile: every row of the held-out profile, whatever source measured it (Fischer's and MLPerf's
    A100-SXM4-40GB, ML.ENERGY's and MLPerf's H100 SXM), is in test and none in train; rows that may not train
    (``trainable`` False) never do. The interval's inner split is by device when two or more train."""
    folds = []
    for device in sorted(set(devices)):
        train, test = held_out_split(devices, device, trainable)
        inner = devices if len(set(devices[train])) >= 2 else groups
        folds.append((train, test, inner))
    return folds


_PROFILES: dict[str, HardwareProfile] = {}


def _profile(name: str) -> HardwareProfile:
    if name not in _PROFILES:
        _PROFILES[name] = load_profile(name)
    return _PROFILES[name]


__all__ = [
    "GPU_TABLES",
    "JUDGED_GPU_TABLES",
    "OPTIONAL_GPU_TABLES",
    "Config",
    "GpuSet",
    "build_gpu_set",
    "config_graph",
    "config_key",
    "device_folds",
    "feature_boards",
    "graph_available",
    "held_out_split",
    "load_gpu_table",
]
