"""hf: specs rebuild Hugging Face base models from published configs; parameter counts match the published ones."""

from __future__ import annotations

import math

import pytest

from estimator.errors import DataError
from estimator.zoo import build_from_spec

# Parameter counts of the base models (AutoModel, no task head) as Hugging Face reports them
# (model.num_parameters() on the published checkpoints), in millions, rounded to 0.01 M.
PUBLISHED_MILLIONS = {
    "bert-base-uncased": 109.48,
    "distilbert-base-uncased": 66.36,
    "roberta-base": 124.65,
    "gpt2": 124.44,
    "distilgpt2": 81.91,
    "openai-gpt": 116.53,
}


@pytest.mark.parametrize(("model_id", "millions"), PUBLISHED_MILLIONS.items())
def test_parameter_count_matches_the_published_model(model_id: str, millions: float) -> None:
    graph = build_from_spec(f"hf:{model_id};seq=32", 2)
    weights = sum(math.prod(t.dims) for t in graph.graph.initializer if t.external_data)
    assert weights / 1e6 == pytest.approx(millions, abs=0.01)
    ids = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in ids] == [2, 32]


def test_unknown_model_and_too_long_sequence_are_one_line_errors() -> None:
    with pytest.raises(DataError, match="no torch-free builder"):
        build_from_spec("hf:t5-small;seq=32", 1)
    with pytest.raises(DataError, match="at most 512"):
        build_from_spec("hf:bert-base-uncased;seq=600", 1)
    with pytest.raises(DataError, match="seq"):
        build_from_spec("hf:gpt2", 1)
