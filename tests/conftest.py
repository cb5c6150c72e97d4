"""Shared helpers for tests: tiny ONNX graphs written as text."""

from __future__ import annotations

import onnx
import onnx.parser
import pytest


def parse(text: str, check: bool = True) -> onnx.ModelProto:
    """An ONNX model from its textual form (``onnx.parser``), checked by onnx unless ``check`` is False
    (for tests that add initializers afterwards)."""
    model = onnx.parser.parse_model(text)
    if check:
        onnx.checker.check_model(model)
    return model


@pytest.fixture
def light_dir():
    """Folder of the light real-world models shipped inside the onnx wheel."""
    from pathlib import Path

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's features cache."""
    monkeypatch.setenv("ESTIMATOR_CACHE_DIR", str(tmp_path_factory.mktemp("estimator-cache")))
