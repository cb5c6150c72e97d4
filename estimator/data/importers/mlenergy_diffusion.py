"""ML.ENERGY text-to-image runs as GPU training rows: one denoiser forward pass each (gpu-board-nvml).

ML.ENERGY v2 (2024: one A100-SXM4-40GB, one H100 80GB HBM3) and v3 (2025-26: H100, B200) measured diffusers
text-to-image pipelines with Zeus (NVML energy counter, one GPU board). A measured window is one whole pipeline
call on a batch of prompts: text encoding, ``steps`` denoising steps (each one denoiser forward pass at batch
``batch_size x passes_per_step``; 2 passes with classifier-free guidance, batched by diffusers) and one VAE
decode. What each model runs (denoiser graph, resolution, passes per step, dtype, VAE-decoder graph) is in
``data/graphs/diffusion*.csv`` (every such table is read, so tables written for other ML.ENERGY versions join).

Conversion to one denoiser pass (documented assumption, not a measurement):

* the window's energy and time are shared between the denoiser and the VAE decode in proportion to their FLOPs
  (``reference_flops`` of both graphs in ``data/graphs/manifest.csv``: matmul and convolution FLOPs at batch 1,
  counted by PyTorch's FlopCounterMode), i.e. equal joules and seconds per FLOP in both;
* the text encoders are not subtracted. v2's UNets: CLIP ViT-L/14 (123M parameters) and, for SDXL, OpenCLIP
  ViT-bigG/14 (695M) over 77 tokens, prompt and negative prompt, are <= 2 x 2 x 818e6 x 77 = 0.25 TFLOPs per
  image, below 0.3% of the 25-step denoiser work of every model here (e.g. SD 1.5 at 512 px: 50 x 0.80
  TFLOPs). v3's transformers add T5-XXL's encoder (4.76e9 parameters) over 256-512 tokens: at most 3% of the
  denoising FLOPs, for the smallest denoiser (PixArt-Sigma: 2 x 2 x 4.76e9 x 300 = 5.7 TFLOPs against 40
  passes of about 5 TFLOPs), under 0.5% for the others, so those labels are up to 3% high;
* joules_per_inference = J/image x batch_size x (1 - VAE share) / steps; latency_s likewise from the batch
  latency. Where the VAE decode ran in float32 (SDXL's ``force_upcast``) it takes more time per FLOP than the
  float16 denoiser, so the share subtracted there is a lower bound.

Rows whose model has no entry in a diffusion table, whose entry has no VAE-decoder graph (the non-denoiser work
could not be priced), or whose GPU has no profile are dropped, counted by reason in the import log.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.importers._common import _finish, _need, _read_csv, _round
from estimator.data.importers.mlenergy import MLENERGY_CITATION, MLENERGY_GPUS
from estimator.errors import DataError, InputFileError

#: The repository's graph folder: diffusion*.csv tables and manifest.csv.
GRAPHS = Path(__file__).resolve().parents[3] / "data" / "graphs"
TABLE_COLUMNS = (
    "model_id",
    "graph",
    "image_px",
    "latent",
    "text_tokens",
    "passes_per_step",
    "dtype",
    "difference",
)
MEASURED_AT = {"v2": "2024", "v3": "2025"}
#: diffusers ran its default attention processor (AttnProcessor2_0, PyTorch's scaled_dot_product_attention)
#: eagerly: v2 diffusers 0.29.2, v3 diffusers 0.35.2 on torch 2.9.1 (each benchmark's pinned versions).
RUNTIME = "pytorch-cuda-sdpa"


def read_diffusion_tables(graphs: Path = GRAPHS) -> pd.DataFrame:
    """Every ``diffusion*.csv`` under ``graphs`` joined into one table, one row per model_id.

    Columns are :data:`TABLE_COLUMNS` plus ``vae_graph`` (empty where a table has none) and ``table`` (the file
    name). Raises DataError when a table lacks a column or two tables name the same model_id.
    """
    parts = []
    for file in sorted(Path(graphs).glob("diffusion*.csv")):
        table = _read_csv(file, dtype={"vae_graph": str, "difference": str})
        _need(table, TABLE_COLUMNS, file)
        if "vae_graph" not in table.columns:
            table["vae_graph"] = ""
        parts.append(table.assign(table=file.name))
    if not parts:
        return pd.DataFrame(columns=[*TABLE_COLUMNS, "vae_graph", "table"])
    joined = pd.concat(parts, ignore_index=True)
    joined["vae_graph"] = joined["vae_graph"].fillna("")
    joined["difference"] = joined["difference"].fillna("")
    twice = joined["model_id"][joined["model_id"].duplicated()]
    if len(twice):
        raise DataError(f"model_id listed in two diffusion tables: {', '.join(sorted(set(twice)))}")
    return joined


def reference_flops(graphs: Path = GRAPHS) -> dict[str, float]:
    """``data/graphs/<name>.onnx`` -> its manifest ``reference_flops`` (FLOPs at batch 1)."""
    manifest = _read_csv(Path(graphs) / "manifest.csv", dtype={"reference_flops": float})
    _need(manifest, ["name", "reference_flops"], Path(graphs) / "manifest.csv")
    return {
        f"data/graphs/{n}.onnx": float(f)
        for n, f in zip(manifest["name"], manifest["reference_flops"], strict=True)
    }


def denoiser_pass(
    joules_per_image: float,
    batch_latency_s: float,
    batch_size: int,
    steps: int,
    passes_per_step: int,
    denoiser_flops: float,
    vae_flops: float,
) -> tuple[float, float, float]:
    """One denoiser forward pass from one measured pipeline call (see the module docstring).

    Args:
        joules_per_image: measured energy per image, J.
        batch_latency_s: measured time of the pipeline call, s.
        batch_size: images per call.
        steps: denoising steps.
        passes_per_step: denoiser passes per step (2 with classifier-free guidance, batched into one pass of
            twice the batch, so the pass counted here has batch ``batch_size x passes_per_step``).
        denoiser_flops: FLOPs of one denoiser pass at batch 1.
        vae_flops: FLOPs of one VAE decode of one image.

    Returns:
        (joules of one pass, seconds of one pass, the VAE decode's FLOP share of the call).
    """
    denoise = steps * passes_per_step * batch_size * denoiser_flops
    vae = batch_size * vae_flops
    share = vae / (denoise + vae)
    return (
        joules_per_image * batch_size * (1.0 - share) / steps,
        batch_latency_s * (1.0 - share) / steps,
        share,
    )


def _measured(folder: Path) -> pd.DataFrame:
    """Single-GPU text-to-image rows of v2 and v3: version, model_id, GPU, J/image, latency, batch, steps, px."""
    v2_file = folder / "v2_configs_flat_DERIVED.csv"
    v2 = _read_csv(v2_file)
    _need(
        v2,
        ["task", "Model", "GPU", "Energy/image (J)", "Batch latency (s)", "Batch size", "Denoising steps"],
        v2_file,
    )
    v2 = v2[v2["task"] == "text-to-image"]
    parts = [
        pd.DataFrame(
            {
                "version": "v2",
                "model_id": v2["Model"],
                "device_name": v2["GPU"],
                "joules_per_image": v2["Energy/image (J)"],
                "batch_latency_s": v2["Batch latency (s)"],
                "batch_size": v2["Batch size"],
                "steps": v2["Denoising steps"],
                "image_px": np.nan,
                "num_gpus": 1,
            }
        )
    ]
    v3_file = folder / "v3_tasks_flat_DERIVED.csv"
    if v3_file.is_file():
        v3 = _read_csv(v3_file)
        need = ["task", "model_id", "gpu_model", "num_gpus", "energy_per_image_joules", "batch_latency_s"]
        _need(v3, [*need, "batch_size", "inference_steps", "image_height", "image_width"], v3_file)
        v3 = v3[v3["task"] == "text-to-image"]
        square = v3["image_height"].where(v3["image_height"] == v3["image_width"])
        parts.append(
            pd.DataFrame(
                {
                    "version": "v3",
                    "model_id": v3["model_id"],
                    "device_name": v3["gpu_model"],
                    "joules_per_image": v3["energy_per_image_joules"],
                    "batch_latency_s": v3["batch_latency_s"],
                    "batch_size": v3["batch_size"],
                    "steps": v3["inference_steps"],
                    "image_px": square,
                    "num_gpus": v3["num_gpus"],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _family(graph: str) -> str:
    """The architecture family of a denoiser graph: its file stem without a trailing size (``-<pixels>``,
    ``-medium`` / ``-large``, ``-<N>b``), so that the sizes of one architecture leave a split together."""
    return re.sub(r"-(\d+|medium|large|\d+(\.\d+)?b)$", "", Path(graph).stem)


def import_mlenergy_diffusion(path: Path, graphs: Path = GRAPHS) -> pd.DataFrame:
    """ML.ENERGY text-to-image runs (v2, and v3 where present) as one-denoiser-pass training rows.

    `path` is the mlenergy_leaderboard folder (or a file in it); `graphs` holds the diffusion*.csv tables and the
    manifest. Energies in J per pass at batch ``batch_size x passes_per_step``, latencies in s.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise InputFileError(f"{folder} does not exist; give the mlenergy_leaderboard folder")
    raw = _measured(folder)
    log: Counter[str] = Counter(rows_in=len(raw))
    tables = read_diffusion_tables(graphs).set_index("model_id")
    flops = reference_flops(graphs)
    keep = []
    for row in raw.itertuples(index=False):
        reason = None
        entry = tables.loc[row.model_id] if row.model_id in tables.index else None
        hardware = MLENERGY_GPUS.get(row.device_name)
        if row.num_gpus != 1:
            reason = "more than one GPU"
        elif entry is None:
            reason = f"no denoiser graph for {row.model_id}"
        elif not entry["vae_graph"]:
            reason = f"no VAE-decoder graph for {row.model_id} (non-denoiser work not priced)"
        elif entry["graph"] not in flops or entry["vae_graph"] not in flops:
            reason = f"graph of {row.model_id} not in manifest.csv"
        elif hardware is None:
            reason = f"no profile for {row.device_name}"
        elif not np.isnan(row.image_px) and int(row.image_px) != int(entry["image_px"]):
            reason = (
                f"{row.model_id} measured at {int(row.image_px)} px, graph at {int(entry['image_px'])} px"
            )
        elif not (row.joules_per_image > 0 and row.batch_latency_s > 0 and row.steps > 0):
            reason = "no energy, latency or steps"
        if reason:
            log[f"dropped: {reason}"] += 1
            continue
        passes = int(entry["passes_per_step"])
        joules, seconds, share = denoiser_pass(
            row.joules_per_image,
            row.batch_latency_s,
            int(row.batch_size),
            int(row.steps),
            passes,
            flops[entry["graph"]],
            flops[entry["vae_graph"]],
        )
        batch = int(row.batch_size) * passes
        keep.append(
            {
                "model_ref": entry["graph"],
                "group": row.model_id,
                "family": _family(entry["graph"]),
                "task": "text-to-image-denoiser",
                "batch": batch,
                "dtype": entry["dtype"],
                "hardware": hardware,
                "runtime": RUNTIME,
                "boundary": "gpu-board-nvml",
                "joules_per_inference": joules,
                "joules_per_sample": joules / batch,
                "latency_s": seconds,
                "idle_subtracted": False,
                "repeats": 1,
                "source": "mlenergy_diffusion",
                "citation": MLENERGY_CITATION,
                "measured_at": MEASURED_AT[row.version],
                "notes": (
                    f"{row.version}: one denoiser pass of a diffusers pipeline call, {int(row.batch_size)} "
                    f"prompt(s) x {passes} pass(es) per step, {int(row.steps)} steps, "
                    f"{int(entry['image_px'])} px; J/image x batch / steps x (1 - VAE-decode FLOP share "
                    f"{share:.4f}); text encoders (at most 3%) not subtracted; {entry['difference']}"
                ).rstrip("; "),
                "device_name": row.device_name,
                "accelerators": 1,
                "boards": 1,
                "submission": f"{row.version}:{row.model_id}/bs{int(row.batch_size)}+steps{int(row.steps)}",
            }
        )
    frame = pd.DataFrame(keep)
    if frame.empty:
        raise DataError(
            f"no ML.ENERGY text-to-image row in {folder} has a graph; see data/graphs/diffusion*.csv"
        )
    for name in ["joules_per_inference", "joules_per_sample", "latency_s"]:
        frame[name] = _round(frame[name]).to_numpy()
    log["rows_out"] = len(frame)
    return _finish(frame, ["source", "group", "hardware", "batch", "submission"], log)
