"""IrEne module level: zoo node names -> modules -> kernels, the v2 prior on a module, the leave-out split, and
the streaming power of memory-bound kernels (closed forms)."""

from __future__ import annotations

import dataclasses

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
    node_energy_scale,
    subset_terms,
)
from estimator.energy.profile import PowerModel
from estimator.energy.runtimes import get_runtime
from estimator.errors import ProfileError
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


def _hand_profile():
    """gtx1070 with round numbers: node scale 2 (L1 at twice the 7 nm SRAM read), DRAM 100 pJ/B, 1 TB/s at f_b
    0.5, 300 W TDP over 100 W busy static power (headroom 200 W: at most 400 pJ/B at the full rate)."""
    base = load_profile("gtx1070")
    l1 = dataclasses.replace(base.caches[0], energy_per_byte_j=2 * 8.5e-12 / 8)
    power = PowerModel(tdp_w=300.0, static_w=100.0, idle_w=10.0, idle_with_context_w=100.0)
    return dataclasses.replace(
        base,
        caches=(l1, *base.caches[1:]),
        power=power,
        dram_energy_per_byte_j=100e-12,
        dram_bandwidth_bytes_per_s=1e12,
        achievable_bandwidth_fraction=0.5,
    )


def test_streaming_energy_closed_form():
    """moved + onchip x node scale x bytes, capped at the TDP headroom over the full-rate time (numbers by hand)."""
    hw = _hand_profile()
    assert node_energy_scale(hw) == pytest.approx(2.0)
    nbytes, moved = np.array([1e9, 1e9]), np.array([0.1, 0.1])
    # 100 pJ/B at 7 nm x 2 = 200 pJ/B over 1 GB = 0.2 J, plus the 0.1 J of per-level energy; the cap is 0.4 J
    assert memory_stream_joules(nbytes, moved, hw, 100e-12) == pytest.approx([0.3, 0.3])
    # 200 pJ/B x 2 = 0.4 J + 0.1 J is above the cap: 200 W x 1 GB / 500 GB/s = 0.4 J, the TDP over the kernel
    assert memory_stream_joules(nbytes, moved, hw, 200e-12) == pytest.approx([0.4, 0.4])
    assert memory_stream_joules(nbytes, moved, hw, 0.0) == pytest.approx([0.1, 0.1])
    with pytest.raises(ProfileError, match="per-unit cache"):
        node_energy_scale(dataclasses.replace(hw, caches=hw.caches[1:]))


def test_streaming_energy_raises_an_elementwise_kernel():
    """An elementwise Add of two 16M-float tensors: its dynamic energy is the streaming energy of its bytes, the
    raise counted on the DRAM level; with no on-chip energy the per-level energies alone are left."""
    hw = load_profile("gtx1070")
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[4096, 4096] x, float[4096, 4096] y) => (float[4096, 4096] z) { z = Add(x, y) }"""
    )
    kernels = _kernels(model)
    rt = get_runtime("pytorch-cuda")
    terms = device_terms(kernels, hw, rt, stream_onchip_j_per_byte=100e-12)
    plain = device_terms(kernels, hw, rt, stream_onchip_j_per_byte=0.0)
    nbytes = terms.beyond_l1_bytes[0]
    assert nbytes == pytest.approx(3 * 4096 * 4096 * 4)  # two reads and one write, none of it in L1
    # gtx1070: TSMC 16FF, node scale 1.5 (its L1: 8.5 pJ per 64 bit x 1.5); the cap (115 W over 204.8 GB/s =
    # 562 pJ/B) does not bind at 150 pJ/B + its per-level energies (at most 112 pJ/B)
    onchip = 100e-12 * hw.caches[0].energy_per_byte_j / (8.5e-12 / 8) * nbytes
    assert hw.caches[0].energy_per_byte_j / (8.5e-12 / 8) == pytest.approx(1.5, rel=0.01)
    assert terms.dynamic_joules[0] == pytest.approx(plain.kernel_memory_joules[0] + onchip)
    assert plain.dynamic_joules[0] < terms.dynamic_joules[0]
    assert terms.memory_joules[-1] - plain.memory_joules[-1] == pytest.approx(
        terms.dynamic_joules[0] - plain.dynamic_joules[0]
    )


def test_streaming_at_the_tdp_cap_keeps_the_time_and_the_clamp():
    """On the H100 the shipped streaming energy per byte exceeds the TDP headroom over the sustained bandwidth, so
    a streaming kernel draws exactly the TDP at the full rate: the prior neither throttles nor moves its time, and
    busy power stays at or below the TDP (the clamp holds)."""
    hw = load_profile("h100")
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[8192, 8192] x, float[8192, 8192] y) => (float[8192, 8192] z) { z = Add(x, y) }"""
    )
    kernels = _kernels(model)
    rt = get_runtime("pytorch-cuda")
    terms = device_terms(kernels, hw, rt)
    rate = hw.dram_bandwidth_bytes_per_s * hw.achievable_bandwidth_fraction
    headroom = hw.tdp_w - static_power_w(hw, hw.compute_units)
    assert terms.dynamic_joules[0] == pytest.approx(headroom * terms.beyond_l1_bytes[0] / rate)
    full = energy_prior_v2(kernels, hw, runtime=rt)
    plain = assemble(device_terms(kernels, hw, rt, stream_onchip_j_per_byte=0.0), hw, rt)
    assert not full.throttled
    assert full.seconds == pytest.approx(plain.seconds)
    busy = full.seconds - full.wait_seconds
    assert (full.joules - hw.idle_with_context_w * full.wait_seconds) / busy <= hw.tdp_w * (1 + 1e-9)


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
