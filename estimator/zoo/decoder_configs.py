"""Published architectures of decoder-only LLMs for the torch-free builders of :mod:`estimator.zoo.decoders`.

Configurations are those of the models' ``config.json``; docs/llm.md lists each with its parameter count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderConfig:
    """Architecture of a decoder-only LM (the fields of its published ``config.json``).

    Attributes:
        family: ``gpt2`` or ``llama``.
        layers, hidden, heads, kv_heads, ffn, vocab: sizes (``ffn`` is the MLP's inner width).
        max_positions: learned position table length (GPT-2 only).
        tied_embeddings: the LM head reuses the token embedding table.
        rope_theta: rotary base (Llama only).
        head_size: elements per head when it is not ``hidden / heads`` (a tensor-parallel shard).
    """

    family: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    max_positions: int = 0
    tied_embeddings: bool = False
    rope_theta: float = 10000.0
    head_size: int = 0

    @property
    def head_dim(self) -> int:
        """Elements per attention head (``head_size``, or ``hidden / heads`` when it is 0)."""
        return self.head_size or self.hidden // self.heads

    def params(self) -> int:
        """Parameter count from the architecture alone (closed form, independent of the graph)."""
        h, d, kv, q = self.hidden, self.head_dim, self.kv_heads, self.heads * self.head_dim
        if self.family == "gpt2":
            attn = (h * 3 * q + 3 * q) + (q * h + h)
            block = 4 * h + attn + (h * self.ffn + self.ffn) + (self.ffn * h + h)
            return self.vocab * h + self.max_positions * h + self.layers * block + 2 * h
        attn = h * q + 2 * h * kv * d + q * h
        block = attn + 3 * h * self.ffn + 2 * h
        head = 0 if self.tied_embeddings else self.vocab * h
        return self.vocab * h + self.layers * block + h + head


#: Published configurations (the models' ``config.json`` on the Hugging Face hub).
DECODERS: Mapping[str, DecoderConfig] = {
    "gpt2": DecoderConfig("gpt2", 12, 768, 12, 12, 3072, 50257, 1024, True),
    "gpt2-medium": DecoderConfig("gpt2", 24, 1024, 16, 16, 4096, 50257, 1024, True),
    "gpt2-large": DecoderConfig("gpt2", 36, 1280, 20, 20, 5120, 50257, 1024, True),
    "gpt2-xl": DecoderConfig("gpt2", 48, 1600, 25, 25, 6400, 50257, 1024, True),
    "llama-2-7b": DecoderConfig("llama", 32, 4096, 32, 32, 11008, 32000),
    "llama-2-13b": DecoderConfig("llama", 40, 5120, 40, 40, 13824, 32000),
    "llama-2-70b": DecoderConfig("llama", 80, 8192, 64, 8, 28672, 32000),
    "llama-3.1-8b": DecoderConfig("llama", 32, 4096, 32, 8, 14336, 128256, rope_theta=500000.0),
    "llama-3.1-70b": DecoderConfig("llama", 80, 8192, 64, 8, 28672, 128256, rope_theta=500000.0),
    "llama-3.2-1b": DecoderConfig("llama", 16, 2048, 32, 8, 8192, 128256, tied_embeddings=True),
    "llama-3.2-3b": DecoderConfig("llama", 28, 3072, 24, 8, 8192, 128256, tied_embeddings=True),
    "llama-3.1-405b": DecoderConfig("llama", 126, 16384, 128, 8, 53248, 128256, rope_theta=500000.0),
    "mistral-7b": DecoderConfig("llama", 32, 4096, 32, 8, 14336, 32000, rope_theta=1000000.0),
    "mistral-7b-v0.3": DecoderConfig("llama", 32, 4096, 32, 8, 14336, 32768, rope_theta=1000000.0),
    "mistral-nemo-12b": DecoderConfig("llama", 40, 5120, 32, 8, 14336, 131072, rope_theta=1e6, head_size=128),
    "mistral-large-2407": DecoderConfig("llama", 88, 12288, 96, 8, 28672, 32768, rope_theta=1000000.0),
    "codellama-7b": DecoderConfig("llama", 32, 4096, 32, 32, 11008, 32016, rope_theta=1000000.0),
    "codellama-13b": DecoderConfig("llama", 40, 5120, 40, 40, 13824, 32016, rope_theta=1000000.0),
    "codellama-34b": DecoderConfig("llama", 48, 8192, 64, 8, 22016, 32000, rope_theta=1000000.0),
    "codellama-70b": DecoderConfig("llama", 80, 8192, 64, 8, 28672, 32016, rope_theta=1000000.0),
}


__all__ = ["DECODERS", "DecoderConfig"]
