"""The cost engine on real networks exported from timm and Hugging Face transformers (``data/graphs``).

Each graph was exported by ``scripts/export_graphs.py``, weights stripped, with PyTorch's own counts in
``data/graphs/manifest.csv``: FLOPs from ``FlopCounterMode`` under the math attention backend (2 per
multiply-add of matmuls and convolutions) and the learned parameters that reach the graph. No torch needed.

Targets (issue 9): every node costed, folded or known free; 2 x MACs within 1 % of PyTorch's FLOPs;
parameters within 0.5 %. By default a representative subset (one network per family) runs; all graphs with
``ESTIMATOR_ALL_EXPORTS=1 pytest tests/test_real_exports.py``.
"""

from __future__ import annotations

import csv
import os
from functools import cache
from pathlib import Path

import pytest

from estimator.cost.nodes import CostReport, count_costs
from estimator.graph.load import load_graph

GRAPHS = Path(__file__).resolve().parents[1] / "data" / "graphs"
MANIFEST = GRAPHS / "manifest.csv"
FLOP_TOLERANCE = 0.01
PARAM_TOLERANCE = 0.005
#: One network per family, for the default run.
REPRESENTATIVE = frozenset(
    {
        "resnet50",
        "mobilenetv3_large_100",
        "tf_efficientnet_b0",
        "regnety_016",
        "convnext_tiny",
        "densenet121",
        "inception_v3",
        "keras-nasnet-mobile",
        "larq-quicknet",
        "ghostnet_100",
        "repvgg_a2",
        "vit_tiny_patch16_224",
        "swin_tiny_patch4_window7_224",
        "levit_128s",
        "efficientvit_b0",
        "mixer_b16_224",
        "bert-base-uncased",
        "distilbert-base-uncased",
        "gpt2",
        "llama-gqa-tiny",
        "php-detr-resnet-50",
        "php-roberta-base-qa",
    }
)


def _rows() -> dict[str, dict[str, str]]:
    if not MANIFEST.exists():
        return {}
    with MANIFEST.open(newline="", encoding="utf-8") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


ROWS = _rows()
ALL = os.environ.get("ESTIMATOR_ALL_EXPORTS") == "1"
NAMES = sorted(n for n in ROWS if ALL or n in REPRESENTATIVE)


@cache
def _report(name: str) -> CostReport:
    shapes = {"input_ids": (1, 128)} if ROWS[name]["input"].startswith("input_ids=") else None
    return count_costs(load_graph(GRAPHS / f"{name}.onnx", batch=1, shapes=shapes))


def test_every_manifest_row_has_its_graph_and_references():
    assert len(ROWS) >= 30, f"only {len(ROWS)} graphs in {MANIFEST.name}"
    for name, row in ROWS.items():
        assert (GRAPHS / f"{name}.onnx").exists(), name
        assert not (GRAPHS / f"{name}.onnx.data").exists(), f"{name}: weights must stay stripped"
        assert int(row["reference_flops"]) > 0 and int(row["reference_params"]) > 0, name


@pytest.mark.parametrize("name", NAMES)
def test_every_node_is_costed(name: str):
    report = _report(name)
    assert report.coverage == 1.0, f"{name}: not costed {report.not_costed}"


@pytest.mark.parametrize("name", NAMES)
def test_flops_match_pytorch(name: str):
    reference = int(ROWS[name]["reference_flops"])
    flops = 2 * _report(name).totals.macs
    assert abs(flops - reference) <= FLOP_TOLERANCE * reference, f"{name}: {flops} vs {reference}"


#: Known misses, each with its cause (reported in docs/real_exports.md; the test fails if one starts passing).
PARAM_MISSES = {
    "swin_tiny_patch4_window7_224": (
        "the exporter folds each relative-position-bias gather into a stored 2401 x heads table (+1.09 %) and "
        "stores the shifted-window masks (0 / -100) as float buffers read by Add (+0.78 %); the graph no longer "
        "says which stored floats were learned"
    ),
}
#: Masked-LM graphs of Power Hungry Processing: the decoder is tied to the word embeddings (one parameter in
#: PyTorch); the exporter stores the decoder's transposed copy as a second initializer (+ vocabulary x width).
TIED_DECODER = (
    "the masked-LM decoder is tied to the word embeddings in PyTorch; the graph stores its transposed copy"
)
PARAM_MISSES.update({n: TIED_DECODER for n in ROWS if n.startswith("php-") and n.endswith("-mlm")})
#: Position embeddings computed from parameters or from the all-ones pixel mask fold into stored tables at the
#: exported image size (FLOPs match).
FOLDED_POSITIONS = "position embeddings fold into stored tables at the exported image size"
PARAM_MISSES.update(
    {n: FOLDED_POSITIONS for n in ("php-yolos-tiny", "php-yolos-small", "php-deformable-detr")}
)
#: Diffusion transformers (scripts/dit_graphs.py) whose fixed sin-cos position table is a buffer, not a parameter,
#: that the graph stores (SD3: 384^2 or 192^2 positions x width, cropped at run time; PixArt: 4096 x 1152).
STORED_POSITIONS = "the sin-cos position table is a buffer in PyTorch and an initializer in the graph"
PARAM_MISSES.update(
    {n: STORED_POSITIONS for n in ("dit-sd3.5-medium", "dit-sd3.5-large", "dit-pixart-sigma-xl-2-1024")}
)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=PARAM_MISSES[n], strict=True))
        if n in PARAM_MISSES
        else n
        for n in NAMES
    ],
)
def test_params_match_pytorch(name: str):
    reference = int(ROWS[name]["reference_params"])
    params = _report(name).totals.params
    assert abs(params - reference) <= PARAM_TOLERANCE * reference, f"{name}: {params} vs {reference}"
