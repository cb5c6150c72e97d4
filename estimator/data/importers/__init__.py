"""Importers: turn the shared raw data sets into compact measurement tables (see estimator.data.measurements).

One importer per source, registered in `IMPORTERS`; `import_source(source, path)` dispatches. `path` is the
source's folder under shared/datasets/ or its main file. Every importer is deterministic: the same input
gives the same rows, in the same (sorted) order, with floats rounded to `SIGNIFICANT_DIGITS` significant
digits. What an importer dropped and why is recorded in ``frame.attrs["import_log"]`` (counts by reason).

Sources and what they become (data/PROVENANCE.md has the details):

- ``hwnasbench360``: NAS-Bench-201 networks on a Raspberry Pi 5 core, three runtimes, three tasks
  (training table; boundary soc-core-rail-dynamic).
- ``getzner``: single PyTorch layers and AlexNet / VGG11 / VGG13 on 2x Xeon Gold 5120, RAPL package energy
  (training table; boundary cpu-package-rapl).
- ``mlperf_power``: MLPerf Inference (datacenter, edge) and Tiny power results, whole system at the wall
  (validation table; boundary wall-system).
- ``mlperf_power_gpu``: the part of it a GPU model can learn from: ResNet-50 and BERT-large under NVIDIA's
  TensorRT harness on GPUs with a profile, SingleStream / MultiStream / Offline, one row per system, network,
  accuracy target and scenario (training table ``mlperf_power.csv.gz``, source ``mlperf_power``; wall-system,
  one accelerator's forward pass plus its share of the host, ``accelerators`` GPUs at the wall).
- ``mlenergy``: ML.ENERGY leaderboard v1-v3, GPU energy of LLM and diffusion serving (validation table;
  boundary gpu-board-nvml).
- ``mlenergy_diffusion``: ML.ENERGY text-to-image runs (A100-40GB, H100; v3 H100 / B200 where a graph table
  lists the model) as one denoiser forward pass each (training table; boundary gpu-board-nvml).
- ``irene`` / ``irene_modules``: Hugging Face transformers in PyTorch eager on two desktop GPUs, whole models /
  modules and primitive ops (training tables; boundaries gpu-board-nvml and machine-total, one row each).
- ``fischer_eff22``: Keras / torchvision CNNs at batch 32 on 8x A100-40GB and a Quadro RTX 5000 (training
  table; gpu-board-nvml, the A100 figure per working board).
- ``fischer_rtx4090``: 40 Keras CNNs at batch 1-64 on an RTX 4090 (training table; codecarbon-total).
- ``fischer_validation``: 30 Keras CNNs on an RTX 4090, CodeCarbon beside a wall meter (validation table;
  codecarbon-total and wall-system rows of the same runs).
- ``power_hungry`` / ``power_hungry_generative``: Hugging Face pipelines at batch 1 on an A100-SXM4-80GB of an
  8-board node (training table for single-pass tasks, validation table for generative ones; gpu-boards-summed
  as logged and gpu-board-nvml after subtracting 7 idle boards).
- ``benchlab``: Llama-3.1-8B fp32 on one H100, per-request prefill and decode GPU energy (validation table;
  gpu-board-nvml).
- ``wilkins``: Llama-2 / Mistral / Falcon / Mixtral requests without a KV cache on A100 / V100 (validation
  table; gpu-board-nvml, gpu-boards-summed for several GPUs).

Run ``python -m estimator.data.importers SOURCE RAW_PATH OUT_PATH`` to write a table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from estimator.data.importers._common import SIGNIFICANT_DIGITS
from estimator.data.importers.benchlab import import_benchlab
from estimator.data.importers.fischer import (
    import_fischer_eff22,
    import_fischer_rtx4090,
    import_fischer_validation,
)
from estimator.data.importers.getzner import GETZNER_CITATION, LayerSpec, getzner_layer_specs, import_getzner
from estimator.data.importers.hwnasbench360 import HWNAS_CITATION, import_hwnasbench360
from estimator.data.importers.irene import import_irene, import_irene_modules
from estimator.data.importers.mlenergy import MLENERGY_CITATION, import_mlenergy
from estimator.data.importers.mlenergy_diffusion import import_mlenergy_diffusion
from estimator.data.importers.mlperf_power import MLPERF_CITATION, import_mlperf_power
from estimator.data.importers.mlperf_power_gpu import import_mlperf_power_gpu
from estimator.data.importers.power_hungry import import_power_hungry, import_power_hungry_generative
from estimator.data.importers.wilkins import import_wilkins
from estimator.data.measurements import TableKind, write_measurements
from estimator.errors import DataError

__all__ = [
    "DEFAULT_FILES",
    "GETZNER_CITATION",
    "HWNAS_CITATION",
    "IMPORTERS",
    "MLENERGY_CITATION",
    "MLPERF_CITATION",
    "SIGNIFICANT_DIGITS",
    "TABLE_KINDS",
    "LayerSpec",
    "getzner_layer_specs",
    "import_getzner",
    "import_hwnasbench360",
    "import_mlenergy",
    "import_mlenergy_diffusion",
    "import_mlperf_power",
    "import_mlperf_power_gpu",
    "import_source",
    "main",
]


# -------------------------------------------------------------------------------------------- dispatch

IMPORTERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "hwnasbench360": import_hwnasbench360,
    "getzner": import_getzner,
    "mlperf_power": import_mlperf_power,
    "mlperf_power_gpu": import_mlperf_power_gpu,
    "mlenergy": import_mlenergy,
    "mlenergy_diffusion": import_mlenergy_diffusion,
    "irene": import_irene,
    "irene_modules": import_irene_modules,
    "fischer_eff22": import_fischer_eff22,
    "fischer_rtx4090": import_fischer_rtx4090,
    "fischer_validation": import_fischer_validation,
    "power_hungry": import_power_hungry,
    "power_hungry_generative": import_power_hungry_generative,
    "benchlab": import_benchlab,
    "wilkins": import_wilkins,
}
TABLE_KINDS: dict[str, TableKind] = {
    "hwnasbench360": "training",
    "getzner": "training",
    "mlperf_power": "validation",
    "mlperf_power_gpu": "training",
    "mlenergy": "validation",
    "mlenergy_diffusion": "training",
    "irene": "training",
    "irene_modules": "training",
    "fischer_eff22": "training",
    "fischer_rtx4090": "training",
    "fischer_validation": "validation",
    "power_hungry": "training",
    "power_hungry_generative": "validation",
    "benchlab": "validation",
    "wilkins": "validation",
}
#: The committed table of each source under data/ (`estimate data import` writes there by default).
DEFAULT_FILES: dict[str, str] = {
    "hwnasbench360": "hwnasbench360.csv.gz",
    "getzner": "getzner.csv.gz",
    "mlperf_power": "validation_mlperf.csv.gz",
    "mlperf_power_gpu": "mlperf_power.csv.gz",
    "mlenergy": "validation_mlenergy.csv.gz",
    "mlenergy_diffusion": "mlenergy_diffusion.csv.gz",
    "irene": "irene.csv.gz",
    "irene_modules": "irene_modules.csv.gz",
    "fischer_eff22": "fischer_eff22.csv.gz",
    "fischer_rtx4090": "fischer_rtx4090.csv.gz",
    "fischer_validation": "validation_fischer.csv.gz",
    "power_hungry": "power_hungry.csv.gz",
    "power_hungry_generative": "validation_power_hungry.csv.gz",
    "benchlab": "validation_benchlab.csv.gz",
    "wilkins": "validation_wilkins.csv.gz",
}


def import_source(source: str, path: Path) -> pd.DataFrame:
    """Import one shared data set as a measurement table (energies in J, latencies in s).

    `source` is one of `IMPORTERS`; `path` is the data set folder or its main file. The counts of what was
    dropped and why are in ``frame.attrs["import_log"]``.
    """
    try:
        importer = IMPORTERS[source]
    except KeyError:
        raise DataError(f"unknown data source {source!r}; choose one of {', '.join(IMPORTERS)}") from None
    return importer(Path(path))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m estimator.data.importers SOURCE RAW_PATH OUT_PATH``: import and write one table."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        sys.stderr.write("usage: python -m estimator.data.importers SOURCE RAW_PATH OUT_PATH\n")
        return 2
    source, raw_path, out_path = args
    frame = import_source(source, Path(raw_path))
    write_measurements(frame, Path(out_path), table=TABLE_KINDS[source])
    for reason, count in frame.attrs.get("import_log", {}).items():
        sys.stdout.write(f"{reason}: {count}\n")
    sys.stdout.write(f"wrote {len(frame)} rows to {out_path}\n")
    return 0
