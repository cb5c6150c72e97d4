"""Training from measurement files into the store of trained models, keeping the better model.

``train_and_store`` checks the models folder is writable, reads tables (malformed rows are reported by line
and column, rows of another hardware or runtime are counted aloud), trains one model per runtime, and stores it
as a unit (see :func:`~estimator.learn.regressor.save_model`: a kill at any point leaves a working store). When a
model already exists for that hardware and runtime, both are scored on the same held-out groups: the new model's
grouped out-of-fold predictions and the old model's predictions, on the groups the old model's sidecar says it
never saw. The old model stays unless the new one scores better or ``force`` is given.

Rows of a GPU profile train the GPU model kind instead, the one GPU estimates load
(:func:`estimator.learn.gpu_store.train_gpu_measurements`): a calibrated residual over the v2 prior on the GPU
feature schema; an older GPU model of that device and runtime stays unless ``force``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.measurements import read_measurements
from estimator.energy.hardware import list_profiles, load_profile
from estimator.energy.physics import runs_on_gpu
from estimator.energy.runtimes import get_runtime
from estimator.errors import DataError, InputFileError
from estimator.learn.evaluation import layer_signatures, single_kernel_mask
from estimator.learn.features import FEATURE_NAMES
from estimator.learn.regressor import group_hashes, load_model, save_model
from estimator.learn.training import default_models_dir, featurize_cached, metrics, predict_log, train_model


def train_and_store(
    tables: Sequence[Path],
    hardware: str,
    *,
    runtime: str | None = None,
    granularity: str = "graph",
    force: bool = False,
    models_dir: Path | None = None,
    params: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Train and store models for ``hardware`` (one per runtime); returns one summary line per runtime."""
    directory = Path(models_dir) if models_dir is not None else default_models_dir()
    check_writable_folder(directory)  # before hours of training, not after
    say = progress or (lambda _line: None)
    frames = [read_measurements(Path(t)) for t in tables]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty or hardware not in set(table["hardware"]):
        raise DataError(f"the tables hold no rows of hardware '{hardware}'")
    _say_left_out(say, table["hardware"], hardware, "hardware")
    table = table[table["hardware"] == hardware]
    if runtime is not None:
        get_runtime(runtime)
        _say_left_out(say, table["runtime"], runtime, "runtime")
        table = table[table["runtime"] == runtime]
        if table.empty:
            raise DataError(f"the tables hold no rows of hardware '{hardware}' and runtime '{runtime}'")
    if hardware in list_profiles() and runs_on_gpu(load_profile(hardware)):
        # a GPU's rows train the GPU model kind that GPU estimates load (estimator.learn.gpu_model)
        from estimator.learn.gpu_store import train_gpu_measurements

        if granularity != "graph":
            raise DataError("GPU models are trained on whole networks: use --granularity graph")
        return train_gpu_measurements(
            table.reset_index(drop=True),
            hardware,
            directory,
            root=Path.cwd(),
            runtime=runtime,
            force=force,
            progress=say,
        )
    bar = _Progress(say)
    ts_all = featurize_cached(table, hardware, kernel_rows=granularity == "kernel", progress=bar)
    lines = []
    for rt in sorted(set(table["runtime"])):
        ts = ts_all.subset(ts_all.table["runtime"].to_numpy() == rt)
        if granularity == "kernel":
            # Layer-level rows: trained on single layers, grouped by layer signature (as in the evaluation)
            # so that the cross-validated metrics and the interval never see a layer on both sides.
            ts = ts.subset(single_kernel_mask(ts))
            ts = dataclasses.replace(ts, table=ts.table.assign(group=layer_signatures(ts)))
        say(f"training {hardware}/{rt} on {len(ts.y_log)} rows, {len(np.unique(ts.groups))} groups")
        model, cv = train_model(
            ts,
            hardware=hardware,
            runtime=rt,
            granularity=granularity,
            params=params,
        )
        model.sidecar["training_tables"] = [Path(t).name for t in tables]
        model.sidecar["domain"] = training_domain(ts.X)
        new_mape = cv["grouped_cv"]["mape"]
        old = load_model(directory, hardware, rt, FEATURE_NAMES)
        if old is not None and not force:
            verdict = _compare_with_old(old, ts, cv["oof_log"], hardware, rt)
            if verdict is not None:
                lines.append(verdict)
                continue
        paths = save_model(model, directory)
        lines.append(
            f"{hardware}/{rt}: grouped-CV MAPE {new_mape:.2%}, hit +-10% "
            f"{cv['grouped_cv']['hit_10']:.1%}; wrote {paths[0]} and {paths[1].name}"
        )
    return lines


def _compare_with_old(old, ts, oof_log: np.ndarray, hardware: str, runtime: str) -> str | None:
    """Score the old and the new model on the same held-out groups; a line when the old one stays, else None.

    The new model's score is its grouped out-of-fold prediction (each row predicted by a model that never saw
    its group). The old model is scored on the same rows, restricted to groups its sidecar says it was not
    trained on; a legacy sidecar records none, and then it may have seen them (the comparison favours it).
    """
    seen = set(old.sidecar.get("trained_group_hashes", ()))
    held = np.array([h not in seen for h in map(_one_hash, ts.groups)], dtype=bool)
    if not held.any():
        return (
            f"{hardware}/{runtime}: kept the old model: it was trained on every group of these rows, so no "
            f"held-out comparison is possible; use --force to replace it"
        )
    rows = ts.subset(held)
    new_mape = metrics(rows.measured_j, np.exp(oof_log[held]))["mape"]
    old_pred = np.exp(predict_log(old.regressor, rows, old.sidecar.get("granularity", "graph")))
    old_mape = metrics(rows.measured_j, old_pred)["mape"]
    basis = f"{held.sum()} rows of {len(np.unique(rows.groups))} held-out groups" + (
        "" if seen else ", which the old model may have seen (its sidecar does not list its groups)"
    )
    if old_mape <= new_mape:
        return (
            f"{hardware}/{runtime}: kept the old model (MAPE {old_mape:.2%}) over the new one ({new_mape:.2%}), "
            f"both on {basis}; use --force to replace it"
        )
    return None


def _one_hash(group: str) -> str:
    return group_hashes([group])[0]


def _say_left_out(say: Callable[[str], None], values: pd.Series, wanted: str, what: str) -> None:
    """Say how many rows are left out because their ``what`` is not ``wanted``, and which values they have."""
    other = values[values != wanted].astype(str).value_counts()
    if len(other):
        shown = ", ".join(f"{name!r} x{count}" for name, count in other.head(5).items())
        more = ", ..." if len(other) > 5 else ""
        say(f"left out {int(other.sum())} rows of another {what} than '{wanted}' ({shown}{more})")


def check_writable_folder(directory: Path) -> None:
    """InputFileError unless ``directory`` is (or can be created as) a folder this process may write into."""
    directory = Path(directory)
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputFileError(
            f"--models-dir {directory}: {probe} is not a folder; give a folder for the models"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputFileError(
            f"--models-dir {directory}: {probe} is not writable; give a folder you may write to"
        )


def training_domain(X: np.ndarray) -> dict[str, list[float]]:
    """Per feature, the [min, max] seen in training: estimates outside it are flagged as extrapolated."""
    return {name: [float(X[:, i].min()), float(X[:, i].max())] for i, name in enumerate(FEATURE_NAMES)}


class _Progress:
    """A progress line every 10% of the featurisation."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        step = int(10 * done / max(total, 1))
        if step != self.last:
            self.last = step
            self.say(f"featurising graphs: {done}/{total} ({100 * done // max(total, 1)}%)")
