"""IrEne module level: zoo node names -> modules -> kernels, the v2 prior on a module, the leave-out split, and
the streaming power of memory-bound kernels (closed forms)."""

from __future__ import annotations

import numpy as np
import onnx.parser
import pandas as pd
import pytest

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.hardware import load_profile
from estimator.energy.physics import static_power_w
from estimator.energy.prior_v2 import (
    assemble,
    device_terms,
    energy_prior_v2,
    memory_stream_joules,
    subset_terms,
)
from estimator.energy.runtimes import get_runtime
from estimator.graph.load import load_graph
from estimator.learn.gpu_modules import (
    ModuleSet,
    graph_modules,
    map_row,
    node_module,
    pattern_of,
    predict_folds,
    split_masks,
)
from estimator.zoo.transformers import bert_encoder, gpt2_decoder

B, S, H, HEADS, F = 2, 8, 64, 4, 128


def _kernels(model):
    return fuse_kernels(count_costs(load_graph(model)), fuse=False)


@pytest.fixture(scope="module")
def bert():
    return _kernels(bert_encoder(2, H, HEADS, F, 100, 16, B, S, token_types=2, pooler=True))


def test_node_module_follows_the_exporter_rule():
    assert (
        node_module("/encoder/layer.3/attention/self/query/matmul_41")
        == "encoder.layer.3.attention.self.query"
    )
    assert node_module("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert node_module("/layer1/layer1.0/downsample/downsample.0/Conv") == "layer1.0.downsample.0"
    assert node_module("Conv_12") == ""
    assert (
        pattern_of("encoder.layer.11.attention.self:BertSelfAttention")
        == "encoder.layer.N.attention.self:BertSelfAttention"
    )


def _macs(kernels, mask):
    return sum(k.macs for k, m in zip(kernels.kernels, mask, strict=True) if m)


def test_module_rows_map_to_their_kernels(bert):
    gm = graph_modules(bert)
    launches = np.array([k.launches for k in bert.kernels])
    layer, reason = map_row(gm, launches, "encoder.layer.1:BertLayer", "module")
    assert reason == "mapped"
    # one post-LN layer: Q, K, V, O projections, FFN in and out, QK^T and PV (closed form)
    assert _macs(bert, layer) == B * S * (4 * H * H + 2 * H * F) + 2 * B * S * S * H
    attention, _ = map_row(gm, launches, "encoder.layer.1.attention:BertAttention", "module")
    output, _ = map_row(gm, launches, "encoder.layer.1.attention.output:BertSelfOutput", "module")
    assert _macs(bert, output) == B * S * H * H
    assert np.all(layer[attention]) and np.all(attention[output])
    pooler, _ = map_row(gm, launches, "pooler:BertPooler", "module")
    embeddings, _ = map_row(gm, launches, "embeddings:BertEmbeddings", "module")
    assert _macs(bert, pooler) == B * H * H and _macs(bert, embeddings) == 0
    encoder, _ = map_row(gm, launches, "encoder:BertEncoder", "module")
    assert _macs(bert, encoder) + _macs(bert, pooler) == sum(k.macs for k in bert.kernels)


def test_op_rows_map_to_one_kernel_or_say_why(bert):
    gm = graph_modules(bert)
    launches = np.array([k.launches for k in bert.kernels])
    softmax, reason = map_row(gm, launches, "encoder.layer.0.attention.self:Softmax", "op")
    assert reason == "mapped" and softmax.sum() == 1
    assert gm.op_types[int(np.argmax(softmax))] == "Softmax"
    norm, _ = map_row(gm, launches, "encoder.layer.0.output.LayerNorm:LayerNorm", "op")
    assert [gm.op_types[i] for i in np.flatnonzero(norm)] == ["LayerNormalization"]
    mask, reason = map_row(gm, launches, "encoder.layer.0.attention.self:MatMul", "op")
    assert mask is None and "ambiguous" in reason
    mask, reason = map_row(gm, launches, "decoder.block.0:T5Block", "module")
    assert mask is None and reason == "no kernel of the graph under this module path"


def test_names_do_not_change_costs():
    a = count_costs(load_graph(bert_encoder(2, H, HEADS, F, 100, 16, B, S)))
    b = count_costs(load_graph(bert_encoder(2, H, HEADS, F, 100, 16, B, S, naming="distilbert")))
    assert [(n.op_type, n.flops, n.macs) for n in a.nodes] == [(n.op_type, n.flops, n.macs) for n in b.nodes]
    gpt = _kernels(gpt2_decoder(2, H, HEADS, 100, 16, B, S, lm_head=False))
    gm = graph_modules(gpt)
    mlp, _ = map_row(gm, np.array([k.launches for k in gpt.kernels]), "h.1.mlp:MLP", "module")
    assert _macs(gpt, mlp) == 2 * B * S * H * 4 * H


def test_the_whole_graph_as_a_subset_is_the_whole_prior(bert):
    hw, rt = load_profile("gtx1080ti"), get_runtime("pytorch-cuda")
    terms = device_terms(bert, hw, rt)
    whole = energy_prior_v2(bert, hw, runtime=rt)
    part = assemble(subset_terms(terms, hw, np.ones(len(bert.kernels), bool)), hw, rt)
    assert part.joules == pytest.approx(whole.joules, rel=1e-12)
    assert part.seconds == pytest.approx(whole.seconds, rel=1e-12)
    assert float(np.sum(part.memory_joules)) + part.compute_joules == pytest.approx(
        float(np.sum(whole.memory_joules)) + whole.compute_joules, rel=1e-9
    )


def test_streaming_power_closed_form():
    hw = load_profile("gtx1070")
    nbytes = 64e6
    expected = 0.5 * (hw.tdp_w - static_power_w(hw, hw.compute_units)) * nbytes
    expected /= hw.dram_bandwidth_bytes_per_s * hw.achievable_bandwidth_fraction
    assert memory_stream_joules(nbytes, hw, 0.5) == pytest.approx(expected)
    # an elementwise Add of two 16M-float tensors: its dynamic energy is the streaming power over its bytes
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[4096, 4096] x, float[4096, 4096] y) => (float[4096, 4096] z) { z = Add(x, y) }"""
    )
    kernels = _kernels(model)
    rt = get_runtime("pytorch-cuda")
    terms = device_terms(kernels, hw, rt, memory_power_fraction=0.5)
    stream = memory_stream_joules(terms.beyond_l1_bytes, hw, 0.5)
    assert terms.dynamic_joules[0] == pytest.approx(stream[0])
    plain = device_terms(kernels, hw, rt, memory_power_fraction=0.0)
    assert plain.dynamic_joules[0] < stream[0]  # the per-byte energies alone: the rule raises it
    assert terms.memory_joules[-1] - plain.memory_joules[-1] == pytest.approx(
        stream[0] - plain.dynamic_joules[0]
    )


def _toy_set() -> ModuleSet:
    groups = [
        "bert-base-uncased",
        "roberta-base",
        "gpt2",
        "distilgpt2",
        "openai-gpt",
        "distilbert-base-uncased",
    ]
    rows = [
        {
            "group": g,
            "hardware": d,
            "boundary": "gpu-board-nvml",
            "joules_per_inference": 1.0 + i,
            "weight": 2,
            "pattern": "m:Block",
        }
        for i, (g, d) in enumerate((g, d) for g in groups for d in ("gtx1070", "gtx1080ti"))
    ]
    n = len(rows)
    rng = np.random.default_rng(0)
    return ModuleSet(
        pd.DataFrame(rows), np.zeros(n), np.ones(n), np.arange(1.0, n + 1), rng.normal(size=(n, 5)), {}
    )


def test_leave_out_splits_never_train_on_the_held_out_unit():
    ms = _toy_set()
    for by in ("architecture", "model"):
        for device in ("gtx1070", "gtx1080ti"):
            folds = split_masks(ms, device, by)
            for _unit, train, test in folds:
                assert not np.any(train & test)
                assert set(ms.table["group"][test]).isdisjoint(ms.table["group"][train])
                assert set(ms.table["hardware"][train | test]) == {device}
    arch = split_masks(ms, "gtx1070", "architecture")
    # roberta is bert's architecture: held out together
    assert [
        sorted(set(ms.table["group"][t]))
        for _u, _tr, t in arch
        if "roberta-base" in set(ms.table["group"][t])
    ] == [["bert-base-uncased", "roberta-base"]]
    with pytest.raises(ValueError, match="both"):
        everything = np.ones(len(ms.table), bool)
        predict_folds(ms, [("all", everything, everything)])


def test_fused_gelu_keeps_flops_and_launches_one_kernel_per_gelu():
    erf = _kernels(bert_encoder(2, H, HEADS, F, 100, 16, B, S))
    fused = _kernels(bert_encoder(2, H, HEADS, F, 100, 16, B, S, fused_gelu=True))
    assert sum(k.flops for k in fused.kernels) == sum(k.flops for k in erf.kernels)
    launched = lambda ks: sum(k.launches for k in ks.kernels)  # noqa: E731
    assert launched(erf) - launched(fused) == 2 * 4  # two layers, five nodes -> one
    gm = graph_modules(fused)
    inter, _ = map_row(
        gm, np.array([k.launches for k in fused.kernels]), "encoder.layer.0.intermediate:X", "module"
    )
    assert [gm.op_types[i] for i in np.flatnonzero(inter)] == ["MatMul", "Add", "Gelu"]
