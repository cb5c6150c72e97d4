"""benchlab (J. Delavande, Hugging Face AI Energy Score team): Llama-3.1-8B-Instruct on one H100, per request.

Source: github.com/JulienDelavande/benchlab @ 4ca20a9, ``thank_you/ultrachat_energy_measurements.csv`` (no
licence file: figures only, no text). 100 UltraChat conversations, Hugging Face ``generate`` at batch 1 in
float32 (no dtype passed; the notebook's ``nvidia-smi`` shows the process holding 31,722 MiB: 8.03 B
parameters x 4 bytes are 29.9 GiB, plus the CUDA context).

**Which code wrote the table.** Not ``thank_you/measure_energy.py`` (its columns are named
``energy_decode_gpu``, it writes RAM energies, and its default is 256 new tokens), but the "code carbon
measures" cell of ``thank_you/playground.ipynb`` in the same commit: it writes ``OUT_CSV =
"ultrachat_energy_measurements.csv"`` with exactly this table's columns in this order, generates at most 128
tokens (the table's largest ``response_tokens`` is 129) and printed the table's first row (683 prompt
tokens). The saved cell decodes without special tokens and for one conversation, where the table's responses
keep them: the table came from an earlier state of the same cell. It measures **one** run per phase, without
a warm-up loop, and reads CodeCarbon's accumulated totals (``tracker._total_gpu_energy``) after each
``tracker.stop()``:

* prefill: ``tracker.start()``, timer, ``generate(max_new_tokens=1)``, timer, ``tracker.stop()``;
* generate: ``tracker.start()`` again on the same tracker, timer, ``generate(max_new_tokens=128)``, timer,
  ``tracker.stop()``; the CSV's ``energy_gpu_decode`` is the generate total minus the prefill total.

What CodeCarbon 3.0.2 (the version the blog post of the same study names) does with that
(github.com/mlco2/codecarbon @ v3.0.2, ``codecarbon/emissions_tracker.py``): ``start()`` (line 416) returns at
once ("Already started tracking", line 437) when the tracker has been started before - ``stop()`` (line 560)
does not clear its start time - and ``stop()`` resets none of the totals. So the second window runs from the
prefill's last counter read to the generate's, and ``energy_gpu_decode`` is the energy of the **whole**
``generate`` call, its own prefill pass included, while ``duration_decode`` (generate time minus prefill time)
excludes that pass. The data show it: regressed on ``duration_decode`` alone the recorded decode energy has an
intercept of 284 J (R^2 0.71); on the prefill energy and ``duration_decode``, -80 J + 1.2 x prefill + 357 W x
s (R^2 0.994).

Each window also runs past its timer: ``stop()`` measures RAM, then the CPU, then reads the GPU counter
(``_do_measurements``, line 727, over the hardware in the order ``core/resource_tracker.py`` adds them,
lines 220-222), and the CPU in load mode (``external/hardware.py``, ``_get_power_from_cpu_load``, line 213)
calls ``psutil.cpu_percent(interval=0.5)``, which waits 0.5 s (the 2.x releases have no such wait; 3.0.0
added it). The CPU columns confirm load mode and the wait: the CPU energy is 45.0 W x its window in every row
(load mode's floor, 10% of the TDP it assumed; R^2 1.000), and the prefill's CPU window is the timer plus
0.505 s (``CPU.start``, line 299, waits the same 0.5 s inside ``start()``, before the GPU's first read). The
GPU counter therefore holds ``POST_TIMER_S`` = 0.5 s of the board after each timed call.

Rows (``task``):

* ``llm-prefill``: ``generate(max_new_tokens=1)``, the prefill pass and one sampled token, as recorded: its
  energy includes the 0.5 s after the call (extra column ``counter_after_s``; the validation adds the
  board's idle-with-context power over it to the prediction);
* ``llm-decode``: the decode steps alone, ``energy_gpu_decode - energy_prefill_gpu``: both windows hold one
  prefill pass of the same prompt and the same 0.5 s after it, which cancel (``counter_after_s`` 0; the
  recorded figure in ``recorded_joules``). ``response_tokens - 2`` steps with the KV cache:
  ``response_tokens`` counts one token more than were generated (the output is decoded with its special
  tokens, its text starts with the prompt's ``<|begin_of_text|>``, and re-tokenising adds another).

``joules_per_sample`` is the phase's GPU energy per request (kWh x 3.6e6), ``latency_s`` its timed duration,
``repeats`` 1; ``output_tokens`` the response tokens; extra columns ``prompt_tokens``, ``counter_after_s``,
``recorded_joules``. ``model_ref`` is the zoo spec of the rebuilt model (``zoo:llama-3.1-8b;dtype=float32``).
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
#: Seconds the GPU counter's window runs past each timed call: CodeCarbon's ``stop()`` measures the CPU
#: in load mode, ``psutil.cpu_percent(interval=0.5)``, before it reads the GPU counter (module docstring).
POST_TIMER_S = 0.5
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
        prefill_j = float(r["energy_prefill_gpu"]) * J_PER_KWH
        recorded_decode_j = float(r["energy_gpu_decode"]) * J_PER_KWH
        decode_j = recorded_decode_j - prefill_j if prefill_j > 0 else float("nan")
        phases = (
            ("llm-prefill", prefill_j, prefill_j, float(r["duration_prefill"]), POST_TIMER_S),
            # The recorded decode window is the whole generate call (its prefill included) and the same
            # 0.5 s after it: the prefill window, same prompt, removes both.
            ("llm-decode", decode_j, recorded_decode_j, float(r["duration_decode"]), 0.0),
        )
        for phase, joules, recorded, duration, after_s in phases:
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
                    "latency_s": duration,
                    "idle_subtracted": False,
                    "repeats": 1,
                    "source": "benchlab",
                    "citation": CITATION,
                    "notes": (
                        "prefill = generate(max_new_tokens=1); the energy window runs 0.5 s past the call"
                        if phase == "llm-prefill"
                        else "decode steps = recorded decode (the whole generate call) minus the prefill"
                        " window (response_tokens - 2 steps, KV cache)"
                    )
                    + "; HF transformers, float32, batch 1, one run;"
                    " CodeCarbon 3.0.2 GPU energy (NVML, GPU 0)",
                    "device_name": "NVIDIA H100 80GB HBM3",
                    "accelerators": 1,
                    "submission": f"ultrachat:{i}",
                    "output_tokens": float(r["response_tokens"]),
                    "prompt_tokens": int(r["prompt_tokens"]),
                    "counter_after_s": after_s,
                    "recorded_joules": recorded,
                }
            )
    frame = pd.DataFrame(rows)
    for name in ("joules_per_sample", "latency_s", "recorded_joules"):
        frame[name] = _significant(frame[name])
    log["rows_out"] = len(frame)
    order = [c.name for c in SCHEMA if c.name in frame.columns]
    frame = frame[order + [c for c in frame.columns if c not in order]]
    frame = frame.sort_values(["task", "submission"], kind="mergesort").reset_index(drop=True)
    frame.attrs["import_log"] = dict(log)
    return frame
