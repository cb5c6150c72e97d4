"""Decoder builders with a KV cache: published parameter counts, the optimum layout, and (with onnxruntime)
that decoding with the cache gives the same logits as recomputing the whole sequence."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import onnx
import pytest

from estimator.cost.nodes import count_costs
from estimator.errors import DataError
from estimator.graph.load import load_graph
from estimator.llm.steps import bind, read_layout
from estimator.zoo.decoders import (
    DECODERS,
    DecoderConfig,
    decoder,
    decoder_from_spec,
    parse_decoder_spec,
    tensor_parallel_shard,
)


@pytest.mark.parametrize(
    ("name", "unit", "digits", "published"),
    [
        # Published sizes, compared at the precision they are published with: Llama 3.1 model card (8.03B,
        # 70.6B), Llama 2 (6.74B, 13.0B, 69.0B in Meta's model cards), GPT-2 (124M, Hugging Face).
        ("llama-3.1-8b", 1e9, 2, 8.03),
        ("llama-3.1-70b", 1e9, 1, 70.6),
        ("llama-2-7b", 1e9, 2, 6.74),
        ("llama-2-13b", 1e9, 1, 13.0),
        ("llama-2-70b", 1e9, 1, 69.0),
        ("gpt2", 1e6, 0, 124),
    ],
)
def test_parameter_counts_match_published_figures(name, unit, digits, published):
    assert round(DECODERS[name].params() / unit, digits) == published


@pytest.mark.parametrize("name", ["gpt2", "llama-3.1-8b"])
def test_graph_parameters_equal_the_closed_form(name):
    cfg = replace(DECODERS[name], layers=2)
    model = decoder(cfg, cache=True)
    costs = count_costs(load_graph(model, shapes=bind(read_layout(model), 1, 1, 4)))
    # Llama's rotary inverse frequencies (head_dim / 2 constants) are the graph's only extra constant.
    extra = 0 if cfg.family == "gpt2" else cfg.head_dim // 2
    assert costs.totals.params == cfg.params() + extra
    assert not costs.not_costed


def test_optimum_layout_and_weights_absent():
    model, _ = decoder_from_spec("zoo:llama-3.1-8b;layers=2")
    names = [i.name for i in model.graph.input]
    assert names[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert names[3:] == [f"past_key_values.{i}.{kv}" for i in range(2) for kv in ("key", "value")]
    past = model.graph.input[3].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in past] == ["batch_size", 8, "past_sequence_length", 128]
    outs = [o.name for o in model.graph.output]
    assert outs == ["logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"]
    assert all(
        t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer if len(t.dims) > 1
    )
    assert len(model.SerializeToString()) < 100_000
    layout = read_layout(model)
    assert (layout.has_cache, layout.layers, layout.kv_heads, layout.head_dim) == (True, 2, 8, 128)
    plain = read_layout(decoder_from_spec("zoo:gpt2;cache=0;layers=1")[0])
    assert not plain.has_cache and plain.layers == 0


def test_int4_weights_are_counted_at_their_packed_size():
    cfg = replace(DECODERS["llama-2-7b"], layers=1)
    fp16 = count_costs(
        load_graph(decoder(cfg, dtype="float16"), shapes=bind(read_layout(decoder(cfg)), 1, 1, 4))
    )
    q = decoder(cfg, dtype="float16", quant="int4", block=32, quantize_head=False)
    int4 = count_costs(load_graph(q, shapes=bind(read_layout(q), 1, 1, 4)))
    linear = 4 * 4096 * 4096 + 3 * 4096 * 11008  # the block's quantised weights
    blocks = linear // 32
    # packed 4-bit weights + one fp16 scale per block + 4-bit zero points per block (rounded up per row)
    zero_points = sum(
        n * -(-(k // 32) * 4 // 8) for k, n in [(4096, 4096)] * 4 + [(4096, 11008)] * 2 + [(11008, 4096)]
    )
    expected = fp16.totals.param_bytes - 2 * linear + linear // 2 + 2 * blocks + zero_points
    assert int4.totals.param_bytes == expected


def test_tensor_parallel_shard_and_bad_specs():
    shard = tensor_parallel_shard(DECODERS["llama-2-70b"], 4)
    assert (shard.heads, shard.kv_heads, shard.ffn, shard.head_dim) == (16, 2, 7168, 128)
    assert tensor_parallel_shard(DECODERS["llama-3.1-8b"], 16).kv_heads == 1  # replicated KV heads
    with pytest.raises(DataError):
        tensor_parallel_shard(DECODERS["gpt2"], 5)
    for bad in [
        "zoo:nope",
        "zoo:gpt2;cache=2",
        "zoo:gpt2;quant=int3",
        "zoo:gpt2;layers=x",
        "gpt2",
        "zoo:gpt2;x",
    ]:
        with pytest.raises(DataError):
            parse_decoder_spec(bad)


def _with_random_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every absent external weight replaced by seeded random values (same name, same values)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        rng = np.random.default_rng(zlib.crc32(t.name.encode()))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        values = (rng.standard_normal(tuple(t.dims)) * 0.2).astype(dtype)
        if "norm" in t.name or t.name.endswith(("ln1.weight", "ln2.weight")):
            values = (1 + values).astype(dtype)
        t.CopyFrom(onnx.numpy_helper.from_array(values, t.name))
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        DecoderConfig("gpt2", 2, 32, 4, 4, 64, 50, 64, True),
        DecoderConfig("llama", 2, 32, 4, 2, 48, 50),
    ],
    ids=["gpt2", "llama-gqa"],
)
def test_cached_decoding_equals_recomputing_the_sequence(cfg):
    ort = pytest.importorskip("onnxruntime")
    with_cache = _with_random_weights(decoder(cfg, cache=True, dtype="float32"))
    plain = _with_random_weights(decoder(cfg, cache=False, dtype="float32"))
    ids = np.array([[3, 7, 1, 9, 4, 2]], np.int64)
    full = ort.InferenceSession(plain.SerializeToString()).run(
        ["logits"],
        {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(6)[None]},
    )[0]
    sess = ort.InferenceSession(with_cache.SerializeToString())
    empty = np.zeros((1, cfg.kv_heads, 0, cfg.head_dim), np.float32)
    feed = {
        "input_ids": ids[:, :5],
        "attention_mask": np.ones((1, 5), np.int64),
        "position_ids": np.arange(5)[None],
    }
    feed |= {f"past_key_values.{i}.{kv}": empty for i in range(cfg.layers) for kv in ("key", "value")}
    outputs = sess.run(None, feed)
    np.testing.assert_allclose(outputs[0], full[:, :5], rtol=1e-4, atol=1e-4)  # prefill = the plain graph
    presents = outputs[1:]
    assert presents[0].shape == (1, cfg.kv_heads, 5, cfg.head_dim)
    step = {"input_ids": ids[:, 5:], "attention_mask": np.ones((1, 6), np.int64), "position_ids": [[5]]}
    step |= {
        f"past_key_values.{i}.{kv}": presents[2 * i + j]
        for i in range(cfg.layers)
        for j, kv in enumerate(("key", "value"))
    }
    step["position_ids"] = np.array(step["position_ids"], np.int64)
    logits = sess.run(["logits"], step)[0]
    np.testing.assert_allclose(logits[:, 0], full[:, 5], rtol=1e-4, atol=1e-4)


def test_every_node_of_a_deep_int4_decoder_is_shaped_and_costed():
    """Each block chains 4 MatMulNBits, each shaped by the project's contrib rule before ONNX can go on."""
    cfg = DecoderConfig("llama", 6, 64, 4, 2, 128, 100)
    model = decoder(cfg, quant="int4", block=32)
    costs = count_costs(load_graph(model, shapes=bind(read_layout(model), 2, 16, 8)))
    assert not costs.not_costed
    assert sum(n.op_type == "MatMulNBits" for n in costs.nodes) == 6 * 7 + 1
