"""benchlab (J. Delavande, Hugging Face AI Energy Score team): Llama-3.1-8B-Instruct on one H100, per request.

Source: github.com/JulienDelavande/benchlab @ 4ca20a9, ``thank_you/ultrachat_energy_measurements.csv`` (no
licence file: figures only, no text). 100 UltraChat conversations, Hugging Face ``generate`` at batch 1 in
float32 (the script's default dtype), 5 warm-up and 10 timed runs averaged. Energies are CodeCarbon's per
task in kWh; its GPU figure reads NVML on GPU 0 only, so the boundary is ``gpu-board-nvml`` (idle not
subtracted).

Each conversation becomes two validation rows (``task``):

* ``llm-prefill``: ``generate(max_new_tokens=1)`` - the prefill pass and one sampled token;
* ``llm-decode``: full generation minus that prefill - ``response_tokens - 2`` decode steps with the KV cache
  (``response_tokens`` counts one token more than were generated: the script re-tokenises the decoded output,
  whose text already starts with ``<|begin_of_text|>``, and the tokenizer adds another one in front).

``joules_per_sample`` is the phase's GPU energy per request (kWh x 3.6e6), ``latency_s`` its duration;
``output_tokens`` the response tokens; the extra column ``prompt_tokens`` the prompt tokens. ``model_ref`` is
the zoo spec of the rebuilt model (``zoo:llama-3.1-8b;dtype=float32``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.measurements import SCHEMA
from estimator.errors import DataError, InputFileError

CITATION = (
    "J. Delavande, benchlab (Hugging Face AI Energy Score experiments), github.com/JulienDelavande/benchlab "
    "@ 4ca20a9, thank_you/ultrachat_energy_measurements.csv"
)
#: Joules per kilowatt-hour.
J_PER_KWH = 3.6e6
_FILE = "ultrachat_energy_measurements.csv"
_COLUMNS = (
    "prompt_tokens",
    "response_tokens",
    "duration_prefill",
    "duration_decode",
    "energy_prefill_gpu",
    "energy_gpu_decode",
)


def _significant(values: pd.Series, digits: int = 6) -> pd.Series:
    array = values.to_numpy(dtype=float)
    out = array.copy()
    finite = np.isfinite(array) & (array != 0)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(array[finite]))))
    out[finite] = np.round(array[finite] * scale) / scale
    return pd.Series(out, index=values.index)


def import_benchlab(path: Path) -> pd.DataFrame:
    """The benchlab UltraChat table as validation rows (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        path = path / _FILE
    if not path.is_file():
        raise InputFileError(f"{path} does not exist; give the benchlab_delavande folder or its {_FILE}")
    try:
        raw = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not the expected CSV ({err})") from err
    missing = [c for c in _COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{path} lacks columns {', '.join(missing)}; is it the benchlab UltraChat table?")
    log: Counter[str] = Counter(rows_in=len(raw))
    rows = []
    for i, r in raw.reset_index(drop=True).iterrows():
        for phase, energy, duration in (
            ("llm-prefill", "energy_prefill_gpu", "duration_prefill"),
            ("llm-decode", "energy_gpu_decode", "duration_decode"),
        ):
            joules = float(r[energy]) * J_PER_KWH
            if not (np.isfinite(joules) and joules > 0):
                log[f"dropped: no {phase} energy"] += 1
                continue
            rows.append(
                {
                    "model_ref": "zoo:llama-3.1-8b;dtype=float32",
                    "group": "meta-llama/Llama-3.1-8B-Instruct",
                    "family": "llama",
                    "task": phase,
                    "batch": 1,
                    "dtype": "float32",
                    "hardware": "h100",
                    "runtime": "pytorch-cuda",
                    "boundary": "gpu-board-nvml",
                    "joules_per_sample": joules,
                    "latency_s": float(r[duration]),
                    "idle_subtracted": False,
                    "repeats": 10,
                    "source": "benchlab",
                    "citation": CITATION,
                    "notes": (
                        "prefill = generate(max_new_tokens=1)"
                        if phase == "llm-prefill"
                        else "decode = full generate minus the prefill run (response_tokens - 1 steps, KV cache)"
                    )
                    + "; HF transformers, float32, batch 1; CodeCarbon GPU energy (NVML, GPU 0)",
                    "device_name": "NVIDIA H100 80GB HBM3",
                    "accelerators": 1,
                    "submission": f"ultrachat:{i}",
                    "output_tokens": float(r["response_tokens"]),
                    "prompt_tokens": int(r["prompt_tokens"]),
                }
            )
    frame = pd.DataFrame(rows)
    for name in ("joules_per_sample", "latency_s"):
        frame[name] = _significant(frame[name])
    log["rows_out"] = len(frame)
    order = [c.name for c in SCHEMA if c.name in frame.columns]
    frame = frame[order + [c for c in frame.columns if c not in order]]
    frame = frame.sort_values(["task", "submission"], kind="mergesort").reset_index(drop=True)
    frame.attrs["import_log"] = dict(log)
    return frame
