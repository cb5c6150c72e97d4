"""The diffusion-transformer denoisers ML.ENERGY v3 measured (``data/graphs/dit-*.onnx``, ``diffusion_v3.csv``).

Built by ``scripts/dit_graphs.py`` from diffusers classes with published configurations, weights never
materialised. Checked here without torch: the table's columns and rows, every node costed, FLOPs against PyTorch's
``FlopCounterMode`` (in the manifest) and, for PixArt-Sigma and FLUX.1-dev, parameters and FLOPs against closed
forms written from the architectures (not from the graphs) and against the published parameter counts.
"""

from __future__ import annotations

import csv
import re
from functools import cache
from pathlib import Path

import pytest

from estimator.cost.nodes import CostReport, count_costs
from estimator.graph.load import load_graph

GRAPHS = Path(__file__).resolve().parents[1] / "data" / "graphs"
TABLE = GRAPHS / "diffusion_v3.csv"
COLUMNS = [
    "model_id",
    "graph",
    "image_px",
    "latent",
    "text_tokens",
    "passes_per_step",
    "dtype",
    "vae_graph",
    "difference",
]


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


ROWS = _csv(TABLE)
MANIFEST = {row["name"]: row for row in _csv(GRAPHS / "manifest.csv")}
NAMES = [Path(row["graph"]).stem for row in ROWS]


@cache
def _report(name: str) -> CostReport:
    return count_costs(load_graph(GRAPHS / f"{name}.onnx", batch=1))


def test_table_has_exactly_the_agreed_columns():
    with TABLE.open(newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == COLUMNS


def test_table_rows_name_committed_graphs_and_what_was_run():
    assert len(ROWS) >= 2
    for row in ROWS:
        name = Path(row["graph"]).stem
        assert row["graph"] == f"data/graphs/{name}.onnx" and (GRAPHS / f"{name}.onnx").exists()
        assert not (GRAPHS / f"{name}.onnx.data").exists(), f"{name}: weights must stay stripped"
        assert MANIFEST[name]["measured_as"] == row["model_id"]
        assert row["image_px"] == "1024" and row["dtype"] == "bfloat16"
        # the VAE decoder that prices the window's non-denoiser work, where one is committed (not SANA's DC-AE)
        assert row["vae_graph"] in ("", "data/graphs/vae-decoder-1024.onnx")
        assert bool(row["vae_graph"]) == ("SANA" not in row["model_id"]), row["model_id"]
        assert re.fullmatch(r"\d+x\d+x\d+", row["latent"]) and int(row["text_tokens"]) > 0
        # Classifier-free guidance batches two passes per step; FLUX.1-dev is guidance-distilled (one).
        expected = 1 if row["model_id"] == "black-forest-labs/FLUX.1-dev" else 2
        assert int(row["passes_per_step"]) == expected, row["model_id"]


def test_latent_is_what_the_graph_takes():
    for row in ROWS:
        graph = load_graph(GRAPHS / row["graph"].removeprefix("data/graphs/"), batch=1)
        c, h, w = (int(v) for v in row["latent"].split("x"))
        first = graph.inputs[0]
        dims = tuple(graph.tensors[first].shape)
        assert dims in ((1, c, h, w), (1, h * w, c)), f"{row['graph']}: {dims} vs {row['latent']}"


@pytest.mark.parametrize("name", NAMES)
def test_every_node_is_costed(name: str):
    report = _report(name)
    assert report.coverage == 1.0, f"{name}: not costed {report.not_costed}"


@pytest.mark.parametrize("name", NAMES)
def test_flops_match_pytorch(name: str):
    reference = int(MANIFEST[name]["reference_flops"])
    flops = 2 * _report(name).totals.macs
    assert abs(flops - reference) <= 0.01 * reference, f"{name}: {flops} vs {reference}"


# ----------------------------------------------------------------------------------------------------------
# Closed forms, written from the architectures (diffusers' classes with the published configurations)
# ----------------------------------------------------------------------------------------------------------


def linear(n_in: int, n_out: int) -> int:
    """Parameters of a Linear layer with bias."""
    return n_in * n_out + n_out


def pixart_sigma_xl2() -> tuple[int, int, int]:
    """(parameters, stored position-embedding floats, MACs at batch 1) of PixArt-Sigma XL/2 at 1024 px.

    D = 1152 (16 heads x 72), 28 blocks, T = 64 x 64 patch tokens, L = 300 T5 tokens of 4096 channels.
    """
    d, blocks, t, text, caption = 1152, 28, 64 * 64, 300, 4096
    embed = 4 * 2 * 2 * d + d  # 2x2 patch convolution from 4 latent channels
    timestep = linear(256, d) + linear(d, d) + linear(d, 6 * d)  # sinusoid MLP, then 6 modulation vectors
    captions = linear(caption, d) + linear(d, d)
    block = 4 * linear(d, d) + 4 * linear(d, d) + linear(d, 4 * d) + linear(4 * d, d) + 6 * d
    # scale-shift table; 8 output channels (learned sigma) per patch pixel
    final = 2 * d + linear(d, 2 * 2 * 8)
    params = embed + timestep + captions + blocks * block + final
    block_macs = 4 * t * d * d + 2 * t * t * d  # self-attention projections, scores and values
    block_macs += 2 * t * d * d + 2 * text * d * d + 2 * t * text * d  # cross-attention
    block_macs += 8 * t * d * d  # MLP 4x
    macs = blocks * block_macs + t * 16 * d + text * (caption * d + d * d) + 256 * d + 7 * d * d + t * d * 32
    return params, t * d, macs


def flux_dev() -> tuple[int, int]:
    """(parameters, MACs at batch 1) of FLUX.1-dev: D = 3072 (24 heads x 128), 19 double-stream blocks and 38
    single-stream blocks, 4096 image tokens of 64 channels and 512 T5 tokens of 4096, guidance embedding."""
    d, head, double, single, t, text = 3072, 128, 19, 38, 4096, 512
    embeds = linear(64, d) + linear(4096, d)
    embeds += 2 * (linear(256, d) + linear(d, d)) + linear(768, d) + linear(d, d)  # time, guidance, pooled
    stream = linear(d, 6 * d) + 3 * linear(d, d) + linear(d, d) + linear(d, 4 * d) + linear(4 * d, d)
    double_block = 2 * stream + 4 * head  # two streams; RMSNorm scales of q, k and the text q, k
    single_block = linear(d, 3 * d) + 3 * linear(d, d) + 2 * head + linear(d, 4 * d) + linear(5 * d, d)
    final = linear(d, 2 * d) + linear(d, 64)
    params = embeds + double * double_block + single * single_block + final
    n = t + text  # joint attention runs over image and text tokens together
    # double: qkv 3 + out 1 + MLP 8 per stream; single: qkv 3 + MLP 4 + out 5 (x n d^2); scores and values 2 n^2 d
    per_block = 12 * n * d * d + 2 * n * n * d
    # per-sample shift, scale and gate vectors
    modulation = 2 * 6 * d * d * double + 3 * d * d * single + 2 * d * d
    macs = (double + single) * per_block + modulation
    macs += t * 64 * d + text * 4096 * d + 2 * (256 * d + d * d) + 768 * d + d * d + t * d * 64
    return params, macs


def test_pixart_sigma_matches_its_closed_form_and_published_size():
    name = "dit-pixart-sigma-xl-2-1024"
    if name not in NAMES:
        pytest.skip(f"{name} not built")
    params, stored_positions, macs = pixart_sigma_xl2()
    totals = _report(name).totals
    # Besides the learned parameters the graph stores the sin-cos position table (a buffer), the scale input of
    # LayerNormalization that the exporter adds to each of the 57 affine-free LayerNorms (two per block and the
    # final one), and the 128 frequencies of the timestep sinusoid.
    assert totals.params == params + stored_positions + 57 * 1152 + 128
    assert int(MANIFEST[name]["reference_params"]) == params
    assert abs(params - 0.6e9) <= 0.05 * 0.6e9  # PixArt-Sigma: 0.6B
    assert abs(totals.macs - macs) <= 0.001 * macs


def test_flux_dev_matches_its_closed_form_and_published_size():
    name = "dit-flux.1-dev"
    if name not in NAMES:
        pytest.skip(f"{name} not built")
    params, macs = flux_dev()
    assert int(MANIFEST[name]["reference_params"]) == params
    assert abs(params - 12e9) <= 0.05 * 12e9  # Black Forest Labs: 12B
    assert abs(_report(name).totals.macs - macs) <= 0.001 * macs


def test_graphs_name_no_file_of_the_exporting_machine():
    # The dynamo exporter records stack traces per node; the export script clears that metadata.
    for name in NAMES:
        data = (GRAPHS / f"{name}.onnx").read_bytes()
        for marker in (b"site-packages", b"/work/", b"/tmp/", b"/home/", b"stack_trace"):
            assert marker not in data, f"{name}: {marker!r}"
