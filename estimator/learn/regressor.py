"""The learned correction: an xgboost model of ``log(measured J) - log(prior J)`` on the feature schema.

Follows scikit-learn's contract (parameters in ``__init__``, fitted attributes end in ``_``, ``fit`` returns
self). Saved in xgboost's native binary format (UBJSON) plus a JSON sidecar (feature names and order, library versions,
training-data hash, metrics, boundary, interval quantiles, the model file's own hash), checked on load with a
clear :class:`~estimator.errors.ModelArtifactError` on any mismatch. Never imports onnx.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from estimator.errors import ModelArtifactError
from estimator.fileio import atomic_write_bytes
from estimator.learn import ubjson
from estimator.learn.forest import Forest

SIDECAR_SCHEMA = "estimator.trained-model/1"


@dataclass
class ResidualRegressor:
    """Gradient-boosted trees on the log residual of the physics prior.

    Args:
        n_estimators, max_depth, learning_rate, subsample, colsample_bytree, min_child_weight, reg_lambda:
            xgboost's hyper-parameters.
        n_jobs: threads for training and prediction.
        random_state: seed.
    """

    n_estimators: int = 600
    max_depth: int = 6
    learning_rate: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 2.0
    reg_lambda: float = 1.0
    n_jobs: int = 2
    random_state: int = 0
    n_features_in_: int = field(default=0, init=False)
    #: The booster's trees as numpy arrays (:class:`Forest`), built on the first prediction (or from the model
    #: file when loaded); False when the booster is of a kind the forest does not walk.
    _forest_: Any = field(default=None, init=False, repr=False, compare=False)
    _booster_: Any = field(default=None, init=False, repr=False, compare=False)
    #: The saved model (UBJSON) a loaded regressor makes its xgboost booster from, only when one is asked for.
    _raw_: bytes | None = field(default=None, init=False, repr=False, compare=False)
    #: Predictions of rows seen by :meth:`predict_distinct` (row bytes -> prediction), at most
    #: :data:`MEMO_ROWS`; emptied when the booster changes, never pickled.
    _memo_: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_memo_"] = {}
        return state

    @property
    def booster_(self) -> Any:
        """The fitted ``xgboost.Booster`` (None before ``fit``); a loaded model imports xgboost only here."""
        if self._booster_ is None and self._raw_ is not None:
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(bytearray(self._raw_))
            # One row (or one per kernel) per estimate: one thread is fastest, estimate_many parallelises.
            booster.set_param({"nthread": 1})
            self._booster_ = booster
        return self._booster_

    @booster_.setter
    def booster_(self, booster: Any) -> None:
        self._booster_, self._raw_, self._forest_ = booster, None, None
        self._memo_ = {}

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> ResidualRegressor:
        """Fit on features ``X`` (rows x FEATURE_NAMES) and log residuals ``y`` (rows weighted by
        ``sample_weight``, equal when None); returns self."""
        import xgboost as xgb

        X = np.asarray(X, dtype=np.float32)
        dtrain = xgb.DMatrix(X, label=np.asarray(y, dtype=np.float32), weight=sample_weight)
        params = {
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "nthread": self.n_jobs,
            "seed": self.random_state,
            "objective": "reg:squarederror",
            "tree_method": "hist",
        }
        self.booster_ = xgb.train(params, dtrain, num_boost_round=self.n_estimators)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted log residuals for rows ``X``."""
        if self._forest_ is None and self.booster_ is None:
            raise ModelArtifactError("the residual regressor is not fitted; train it or load a trained model")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ModelArtifactError(
                f"feature matrix has {X.shape[-1]} columns, the model was trained on {self.n_features_in_}"
            )
        if self._forest_ is None:
            self._forest_ = Forest.of(self.booster_) or False
        if self._forest_ is not False:
            return self._forest_.predict(X)
        # In-place prediction skips building a DMatrix; the predictions are bit-identical to
        # ``predict(DMatrix(X))``.
        return self.booster_.inplace_predict(X)

    def predict_distinct(self, X: np.ndarray) -> np.ndarray:
        """:meth:`predict`, walking each distinct row once - a network's repeated blocks give equal rows, and so
        do the kernels that candidates of an architecture search share - and remembering up to
        :data:`MEMO_ROWS` rows' predictions for later calls; the same numbers (a row's prediction does not
        depend on the other rows)."""
        X = np.asarray(X, dtype=np.float32)
        keys = [row.tobytes() for row in X]
        memo = self._memo_
        new = {key: i for i, key in enumerate(keys) if key not in memo}
        if not new:
            return np.array([memo[key] for key in keys], dtype=np.float32)
        fresh = dict(zip(new, self.predict(X[list(new.values())]).tolist(), strict=True))
        out = np.array([fresh[key] if key in fresh else memo[key] for key in keys], dtype=np.float32)
        if len(memo) + len(fresh) > MEMO_ROWS:
            memo.clear()
        if len(fresh) <= MEMO_ROWS:
            memo.update(fresh)
        return out


#: Rows whose predictions a regressor remembers (:meth:`ResidualRegressor.predict_distinct`): ~0.5 kB each.
MEMO_ROWS = 20_000


@dataclass(frozen=True)
class TrainedModel:
    """A fitted residual regressor with everything needed to use and audit it.

    Attributes:
        regressor: the fitted :class:`ResidualRegressor`.
        sidecar: the metadata saved beside it (see :func:`save_model`).
    """

    regressor: ResidualRegressor
    sidecar: dict

    @cached_property
    def domain_check(self) -> DomainCheck:
        """The widened training range of the model's features (its sidecar's ``domain``), as arrays."""
        return DomainCheck.of(self.sidecar.get("domain", {}), self.sidecar["feature_names"])

    @property
    def interval_quantiles(self) -> tuple[float, float]:
        """(low, high) log-residual quantiles of the nominal interval (split-conformal, grouped)."""
        q = self.sidecar["interval"]
        return float(q["low_log"]), float(q["high_log"])


def library_versions() -> dict[str, str]:
    """Versions of the libraries a trained model depends on."""
    import sklearn
    import xgboost

    from estimator import __version__

    return {
        "estimator": __version__,
        "xgboost": xgboost.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def group_hashes(groups: Sequence[str]) -> list[str]:
    """Short SHA-256 digests (12 hex digits) of architecture group names, sorted and unique: what a sidecar
    records of the groups a model was trained on, so that a later comparison scores it on unseen groups only."""
    return sorted({hashlib.sha256(str(g).encode("utf-8")).hexdigest()[:12] for g in groups})


def data_hash(rows: Sequence[str]) -> str:
    """SHA-256 of the training rows' canonical text lines (order-independent)."""
    digest = hashlib.sha256()
    for line in sorted(rows):
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def model_paths(directory: Path, hardware: str, runtime: str) -> tuple[Path, Path]:
    """(legacy model file, sidecar file) of the model for ``hardware`` and ``runtime`` in ``directory``.

    The sidecar is the store's single commit point: it names the model file it belongs to (``model_file``).
    """
    stem = f"{hardware}__{runtime}"
    return directory / f"{stem}.ubj", directory / f"{stem}.json"


def save_model(model: TrainedModel, directory: Path) -> tuple[Path, Path]:
    """Store the model and its sidecar as one unit; returns (model file, sidecar file).

    The model goes to a new file named by its content hash (``<hw>__<runtime>.<sha12>.ubj``), written and
    flushed first; then one atomic rename puts the sidecar that names it in place. A kill at any moment leaves
    either the old sidecar naming the old, untouched model file, or the new pair: never a mismatched pair.
    Model files no sidecar names any more are removed afterwards (an interrupted clean-up only leaves garbage).
    """
    directory.mkdir(parents=True, exist_ok=True)
    sc = model.sidecar
    legacy_path, sidecar_path = model_paths(directory, sc["hardware"], sc["runtime"])
    raw = bytes(model.regressor.booster_.save_raw(raw_format="ubj"))
    digest = hashlib.sha256(raw).hexdigest()
    model_path = legacy_path.with_name(f"{legacy_path.stem}.{digest[:12]}.ubj")
    sidecar = dict(sc, model_file=model_path.name, model_sha256=digest)
    atomic_write_bytes(model_path, raw)
    atomic_write_bytes(sidecar_path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    _remove_unnamed_models(directory, legacy_path.stem, keep=model_path.name)
    return model_path, sidecar_path


def _remove_unnamed_models(directory: Path, stem: str, keep: str) -> None:
    """Delete ``stem``'s model files (legacy ``stem.ubj`` or ``stem.<sha12>.ubj``) other than ``keep``."""
    pattern = re.compile(rf"{re.escape(stem)}(\.[0-9a-f]{{12}})?\.ubj")
    for path in directory.iterdir():
        if path.name != keep and pattern.fullmatch(path.name):
            path.unlink(missing_ok=True)


def load_model(
    directory: Path, hardware: str, runtime: str, feature_names: Sequence[str]
) -> TrainedModel | None:
    """The trained model for ``hardware``/``runtime`` in ``directory``, None when there is none.

    Raises ModelArtifactError when the sidecar does not match the model file, the feature schema of this code,
    or is unreadable.
    """
    model_path, sidecar_path = model_paths(directory, hardware, runtime)
    if not sidecar_path.exists():
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelArtifactError(
            f"{sidecar_path}: unreadable sidecar ({exc}); retrain with `estimate train`"
        ) from None
    if sidecar.get("schema") != SIDECAR_SCHEMA:
        raise ModelArtifactError(
            f"{sidecar_path}: not a {SIDECAR_SCHEMA} sidecar; retrain with `estimate train`"
        )
    if list(sidecar.get("feature_names", [])) != list(feature_names):
        raise ModelArtifactError(
            f"{sidecar_path}: the model was trained on a different feature schema than this code computes; "
            f"retrain it with `estimate train`"
        )
    named = sidecar.get("model_file", model_path.name)
    if not isinstance(named, str) or Path(named).name != named:
        raise ModelArtifactError(f"{sidecar_path}: names no valid model file; retrain with `estimate train`")
    model_path = directory / named  # the sidecar names its model (a legacy sidecar names <hw>__<runtime>.ubj)
    try:
        raw = model_path.read_bytes()
    except OSError:
        raise ModelArtifactError(
            f"{model_path}: the model file named by its sidecar is missing; retrain it"
        ) from None
    if hashlib.sha256(raw).hexdigest() != sidecar.get("model_sha256"):
        raise ModelArtifactError(
            f"{model_path}: does not match its sidecar (hash differs); retrain or restore both"
        )
    reg = ResidualRegressor(**sidecar.get("hyperparameters", {}))
    reg._raw_ = raw  # xgboost (with scikit-learn, ~1-2 s to import) only if the booster itself is asked for
    reg.n_features_in_ = len(feature_names)
    try:
        reg._forest_ = Forest.of_model(ubjson.loads(raw))
    except (ubjson.UBJSONError, KeyError, TypeError, ValueError):
        reg._forest_ = None
    if reg._forest_ is None:
        _ = reg.booster_  # not a forest: xgboost reads the model now, so that its errors surface at load
    return TrainedModel(reg, sidecar)


@dataclass(frozen=True)
class DomainCheck:
    """Each feature's training range widened by ``tolerance`` of the range on each side (``low``, ``high``, in
    the order of ``names``; +-inf for a feature without a recorded range), to check rows against at once."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    @staticmethod
    def of(domain: dict[str, list[float]], names: Sequence[str], tolerance: float = 0.05) -> DomainCheck:
        """The check of ``domain`` (name -> [low, high]) for features ``names``."""
        low, high = [], []
        for name in names:
            lo, hi = domain.get(name, (-np.inf, np.inf))
            with np.errstate(invalid="ignore"):  # inf - inf for an unbounded range: +-inf either way
                pad = tolerance * (np.float64(hi) - np.float64(lo))
            low.append(lo - pad if np.isfinite(lo) else -np.inf)
            high.append(hi + pad if np.isfinite(hi) else np.inf)
        return DomainCheck(tuple(names), np.array(low, dtype=float), np.array(high, dtype=float))

    def outside(self, rows: np.ndarray) -> list[str]:
        """Names of the features outside the range in ``rows`` (one row, or any of n x len(names) rows), in
        feature order; a missing value (NaN) is outside."""
        if rows.ndim == 2:  # inside for every row: the least and the largest inside (NaN propagates: outside)
            inside = (self.low <= rows.min(axis=0)) & (rows.max(axis=0) <= self.high)
        else:
            inside = (self.low <= rows) & (rows <= self.high)
        return [self.names[i] for i in np.flatnonzero(~inside)]


def outside_domain(
    row: np.ndarray, domain: dict[str, list[float]], names: Sequence[str], tolerance: float = 0.05
) -> list[str]:
    """Names of the features of ``row`` (ordered as ``names``) outside the training range ``domain``
    (name -> [low, high]), widened by ``tolerance`` of the range on each side (see :class:`DomainCheck`,
    which a caller checking many rows against one domain keeps)."""
    return DomainCheck.of(domain, names, tolerance).outside(np.asarray(row))


def outside_domain_any(
    rows: np.ndarray, domain: dict[str, list[float]], names: Sequence[str], tolerance: float = 0.05
) -> list[str]:
    """Sorted names of the features outside the widened training range in any of ``rows`` (n x len(names));
    the vectorised form of :func:`outside_domain` over many rows."""
    if not len(rows):
        return []
    return sorted(DomainCheck.of(domain, names, tolerance).outside(np.asarray(rows)))


def default_models_dir() -> Path:
    """Where trained models are read and written: ``$ESTIMATOR_MODELS_DIR``; else the models installed with the
    package (``estimator/trained_models`` in a wheel); else the repository's top-level ``trained_models/``
    (a source checkout or an editable install)."""
    env = os.environ.get("ESTIMATOR_MODELS_DIR")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent.parent
    installed = package / "trained_models"
    return installed if installed.is_dir() else package.parent / "trained_models"
