"""Hugging Face transformers rebuilt torch-free from their published configs (``hf:<model id>;seq=N`` specs).

Each entry names the builder of estimator.zoo.transformers and the published config values (the model card's
``config.json``: layers, hidden size, heads, FFN size, vocabulary, positions). The graph is what
``transformers.AutoModel.from_config(config)`` runs in one forward pass: the base model without a task head
(IrEne measured exactly that). Every known difference from the real model is written in ``differences``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import onnx

from estimator.errors import DataError
from estimator.zoo.transformers import bert_encoder, gpt2_decoder

__all__ = ["HF_MODELS", "HfModel", "hf_model"]

_FUSED_GELU = "GELU as one com.microsoft Gelu node (eager F.gelu is one kernel); "
_COMMON_DIFFERENCES = (
    "no attention-mask Add (all tokens valid, as in a padded-free batch); dropout absent (inference); "
    "LayerNorm epsilon 1e-5 for all"
)


@dataclass(frozen=True)
class HfModel:
    """One rebuilt Hugging Face model: how to build it for (batch, seq) and what differs from the original."""

    build: Callable[[int, int], onnx.ModelProto]
    differences: str


HF_MODELS: Mapping[str, HfModel] = {
    "bert-base-uncased": HfModel(
        lambda batch, seq: bert_encoder(
            12, 768, 12, 3072, 30522, 512, batch, seq, token_types=2, pooler=True, fused_gelu=True
        ),
        "BertModel: 12 x 768, 12 heads, FFN 3072, vocab 30522, 512 positions, 2 token types, pooler; "
        + _FUSED_GELU
        + _COMMON_DIFFERENCES,
    ),
    "distilbert-base-uncased": HfModel(
        lambda batch, seq: bert_encoder(
            6, 768, 12, 3072, 30522, 512, batch, seq, naming="distilbert", fused_gelu=True
        ),
        "DistilBertModel: 6 x 768, 12 heads, FFN 3072, vocab 30522, 512 positions, no token types, no pooler; "
        + _FUSED_GELU
        + _COMMON_DIFFERENCES,
    ),
    "roberta-base": HfModel(
        lambda batch, seq: bert_encoder(
            12, 768, 12, 3072, 50265, 514, batch, seq, token_types=1, pooler=True, fused_gelu=True
        ),
        "RobertaModel: 12 x 768, 12 heads, FFN 3072, vocab 50265, 514 positions, 1 token type, pooler; "
        "position ids from a Range instead of RoBERTa's cumulative sum over the padding mask (offset 2); "
        + _FUSED_GELU
        + _COMMON_DIFFERENCES,
    ),
    "gpt2": HfModel(
        lambda batch, seq: gpt2_decoder(12, 768, 12, 50257, 1024, batch, seq, lm_head=False),
        "GPT2Model: 12 x 768, 12 heads, FFN 3072, vocab 50257, 1024 positions, final LayerNorm, no LM head; "
        "GELU written with Erf where GPT-2 uses the tanh approximation; " + _COMMON_DIFFERENCES,
    ),
    "distilgpt2": HfModel(
        lambda batch, seq: gpt2_decoder(6, 768, 12, 50257, 1024, batch, seq, lm_head=False),
        "GPT2Model with 6 layers (distilgpt2): as gpt2 otherwise; GELU written with Erf; "
        + _COMMON_DIFFERENCES,
    ),
    "openai-gpt": HfModel(
        lambda batch, seq: gpt2_decoder(12, 768, 12, 40478, 512, batch, seq, lm_head=False, post_ln=True),
        "OpenAIGPTModel: 12 x 768, 12 heads, FFN 3072, vocab 40478, 512 positions, LayerNorm after each "
        "residual Add, no final LayerNorm, no LM head; GELU written with Erf; " + _COMMON_DIFFERENCES,
    ),
}


def hf_model(model_id: str, batch: int, seq: int) -> onnx.ModelProto:
    """The rebuilt base model ``model_id`` for ``batch`` sequences of ``seq`` tokens (static shapes).

    Raises DataError for an id not in `HF_MODELS` or a sequence longer than the model's positions.
    """
    try:
        entry = HF_MODELS[model_id]
    except KeyError:
        raise DataError(
            f"Hugging Face model {model_id!r} has no torch-free builder; known: {', '.join(HF_MODELS)}"
        ) from None
    if batch < 1 or seq < 1:
        raise DataError(f"batch and seq must be at least 1 (got batch={batch}, seq={seq})")
    limit = 512 if model_id in ("bert-base-uncased", "distilbert-base-uncased", "openai-gpt") else 1024
    if model_id == "roberta-base":
        limit = 512  # 514 positions, two reserved by the padding offset
    if seq > limit:
        raise DataError(f"{model_id} takes at most {limit} tokens; got seq={seq}")
    return entry.build(batch, seq)
