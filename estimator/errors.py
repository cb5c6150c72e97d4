"""The one exception hierarchy of the estimator.

Every error the library raises on bad input derives from :class:`EstimatorError`, so the CLI catches a
single type and prints one line. The message of each error says what is wrong and what to do.

    EstimatorError
    ├── InputFileError          the path is missing, a directory, unreadable
    ├── ModelFormatError        not ONNX, truncated or corrupted protobuf, unknown opset domain
    ├── GraphStructureError     cycles, dangling tensors, malformed nodes
    ├── ShapeError              shapes cannot be determined
    │   ├── UnboundDimensionError   a symbolic dimension needs --batch / --shape
    │   └── InvalidDimensionError   zero, negative or absurd dimensions
    ├── UnsupportedOpError      an op has no cost rule and --strict was asked for
    ├── RegistryError           a cost rule registered twice (a programming error)
    ├── ProfileError            unknown hardware profile or a malformed / incomplete profile file
    ├── ModelArtifactError      a trained model whose sidecar does not match this code or its file
    ├── DataError               malformed measurement tables (with line and column)
    └── MeasurementError        no usable energy counter, or a measurement that cannot be trusted
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EstimatorError(Exception):
    """Base of every error the estimator raises on bad input or state."""


class InputFileError(EstimatorError):
    """The given path is missing, is a directory or cannot be read."""


class ModelFormatError(EstimatorError):
    """The bytes are not a readable ONNX model (not ONNX, truncated, corrupted, unknown domain)."""


class GraphStructureError(EstimatorError):
    """The graph is structurally invalid (a cycle, a tensor with no producer, a malformed node)."""


class ShapeError(EstimatorError):
    """Tensor shapes cannot be determined."""


class UnboundDimensionError(ShapeError):
    """A symbolic input dimension is needed and was not bound by --batch or --shape."""


class InvalidDimensionError(ShapeError):
    """A dimension is zero, negative or so large that the tensor cannot exist."""


class UnsupportedOpError(EstimatorError):
    """An op has no cost rule and strict mode was requested."""


class RegistryError(EstimatorError):
    """A cost rule was registered twice for the same (domain, op type, since version)."""


class ProfileError(EstimatorError):
    """A hardware profile is unknown, malformed, or lacks a value that is needed."""


class ModelArtifactError(EstimatorError):
    """A trained model file or its sidecar is missing, corrupted or does not match this code."""


class DataError(EstimatorError):
    """A measurement table is malformed; the message names the line and the column."""


class MeasurementError(EstimatorError):
    """An energy measurement cannot be made or trusted (no counter, counter wrapped, too short a window)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` - did you mean 'a100'?`` when ``name`` is close to one of ``choices`` (case-insensitive), else ``''``."""
    options = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(options), n=1, cutoff=0.6)
    return f" - did you mean '{options[close[0]]}'?" if close else ""
