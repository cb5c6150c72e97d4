"""Training from measurement files into the store of trained models, keeping the better model.

``train_and_store`` reads tables (malformed rows are reported by line and column), trains one model per
runtime, and writes it atomically. When a model already exists for that hardware and runtime, both are scored
on the new data's held-out groups (the new model's out-of-fold predictions against the old model's
predictions); the old model stays unless the new one scores better or ``force`` is given. The old model may
have been trained on some of these rows, which favours it: ``force`` overrides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.measurements import read_measurements
from estimator.energy.runtimes import get_runtime
from estimator.errors import DataError
from estimator.learn.evaluation import layer_signatures, single_kernel_mask
from estimator.learn.features import FEATURE_NAMES
from estimator.learn.regressor import load_model, save_model
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
    frames = [read_measurements(Path(t)) for t in tables]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty or hardware not in set(table["hardware"]):
        raise DataError(f"the tables hold no rows of hardware '{hardware}'")
    table = table[table["hardware"] == hardware]
    if runtime is not None:
        get_runtime(runtime)
        table = table[table["runtime"] == runtime]
        if table.empty:
            raise DataError(f"the tables hold no rows of hardware '{hardware}' and runtime '{runtime}'")
    directory = models_dir or default_models_dir()
    say = progress or (lambda _line: None)
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
            old_pred = np.exp(predict_log(old.regressor, ts, old.sidecar.get("granularity", "graph")))
            old_mape = metrics(ts.measured_j, old_pred)["mape"]
            if old_mape <= new_mape:
                lines.append(
                    f"{hardware}/{rt}: kept the old model (MAPE {old_mape:.2%} on these rows) over the new "
                    f"one ({new_mape:.2%} on held-out groups); use --force to replace it"
                )
                continue
        paths = save_model(model, directory)
        lines.append(
            f"{hardware}/{rt}: grouped-CV MAPE {new_mape:.2%}, hit +-10% "
            f"{cv['grouped_cv']['hit_10']:.1%}; wrote {paths[0]} and {paths[1].name}"
        )
    return lines


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
