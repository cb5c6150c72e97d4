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
- ``mlenergy``: ML.ENERGY leaderboard v1-v3, GPU energy of LLM and diffusion serving (validation table;
  boundary gpu-board-nvml).

Run ``python -m estimator.data.importers SOURCE RAW_PATH OUT_PATH`` to write a table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from estimator.data.importers._common import SIGNIFICANT_DIGITS
from estimator.data.importers.getzner import GETZNER_CITATION, LayerSpec, getzner_layer_specs, import_getzner
from estimator.data.importers.hwnasbench360 import HWNAS_CITATION, import_hwnasbench360
from estimator.data.importers.mlenergy import MLENERGY_CITATION, import_mlenergy
from estimator.data.importers.mlperf_power import MLPERF_CITATION, import_mlperf_power
from estimator.data.measurements import TableKind, write_measurements
from estimator.errors import DataError

__all__ = [
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
    "import_mlperf_power",
    "import_source",
    "main",
]


# -------------------------------------------------------------------------------------------- dispatch

IMPORTERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "hwnasbench360": import_hwnasbench360,
    "getzner": import_getzner,
    "mlperf_power": import_mlperf_power,
    "mlenergy": import_mlenergy,
}
TABLE_KINDS: dict[str, TableKind] = {
    "hwnasbench360": "training",
    "getzner": "training",
    "mlperf_power": "validation",
    "mlenergy": "validation",
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
