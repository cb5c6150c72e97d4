"""Transformer graph builders: parameters and MACs equal the closed forms of the architectures."""

from __future__ import annotations

import pytest

from estimator.cost.nodes import count_costs
from estimator.graph.load import load_graph
from estimator.zoo.transformers import bert_encoder, gpt2_decoder


def _bert_params(layers, hidden, ffn, vocab, positions):
    per_layer = 4 * (hidden * hidden + hidden) + 2 * hidden * ffn + ffn + hidden + 4 * hidden
    return vocab * hidden + positions * hidden + 2 * hidden + layers * per_layer


@pytest.mark.parametrize(
    ("layers", "hidden", "heads", "ffn", "seq"), [(12, 768, 12, 3072, 128), (2, 256, 4, 1024, 64)]
)
def test_bert_params_and_macs(layers, hidden, heads, ffn, seq):
    batch = 2
    report = count_costs(
        load_graph(bert_encoder(layers, hidden, heads, ffn), batch=batch, shapes={"seq": (seq,)})
    )
    assert report.totals.params == _bert_params(layers, hidden, ffn, 30522, 512)
    dense = batch * seq * layers * (4 * hidden * hidden + 2 * hidden * ffn)
    attention = batch * layers * 2 * seq * seq * hidden
    assert report.totals.macs == dense + attention
    assert report.not_costed == {}


def test_bert_base_matches_huggingface_count_without_pooler_and_token_types():
    # Hugging Face bert-base-uncased: 109,482,240 parameters, of which the pooler has 590,592 and the
    # token-type embeddings 1,536; this builder has neither.
    report = count_costs(load_graph(bert_encoder(), batch=1, shapes={"seq": (16,)}))
    assert report.totals.params == 109_482_240 - 590_592 - 1_536


def test_gpt2_small_parameters_and_macs():
    seq = 128
    report = count_costs(load_graph(gpt2_decoder(seq=seq), batch=1))
    # Hugging Face gpt2: 124,439,808 parameters (tied LM head). The constant causal mask [seq, seq] is the
    # one extra constant the estimator sees as a tensor of the graph.
    assert abs(report.totals.params - 124_439_808) / 124_439_808 < 2e-4
    h, layers, vocab = 768, 12, 50257
    dense = seq * layers * (4 * h * h + 2 * h * 4 * h)
    attention = layers * 2 * seq * seq * h
    assert report.totals.macs == dense + attention + seq * h * vocab
