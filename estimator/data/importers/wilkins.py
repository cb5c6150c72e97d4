"""Wilkins, Keshav and Mortier (e-Energy 2024): Llama-2, Mistral, Falcon, Mixtral on A100 and V100, no KV cache.

Source: github.com/grantwilkins/energy-inference @ 5c2cfa4 (no licence file: figures only, no text), the
processed tables ``plots/{input-test,output-test,parameter-scale-input-test,parameter-scale-output-test}/
all-*-stats.csv``. Each request is one Hugging Face ``text-generation`` pipeline call on one prompt
(``batch_size=32`` is passed but one prompt makes a batch of 1) in bfloat16 with ``use_cache=False``: every
generated token recomputes the whole sequence. ``min_new_tokens`` is 0.9 x the limit, so a request generates
90-100 % of the limit. GPU energy is pyJoules' NVML counter per board, summed over the run's GPUs
(``device_map="auto"`` splits the layers over them, one GPU working at a time).

Rows: one per (test, model, system, GPUs, prompt tokens, token limit), the mean over its timed iterations
(iteration 0, the first call after loading, is dropped as warm-up; ``repeats`` counts the rest,
``spread_rel`` = (max - min) / median of their energies). ``joules_per_sample`` is the GPU energy per
request, ``latency_s`` the mean pipeline time, ``output_tokens`` the mean generated tokens (total tokens minus
prompt tokens, clamped to 90-100 % of the limit: the input tests' prompt counts are nominal), extra column
``prompt_tokens``. Boundary ``gpu-board-nvml`` for one GPU, ``gpu-boards-summed``
for several. Runtime ``hf-pipeline``. Systems: Palmetto (Clemson) A100 40GB -> profile ``a100-pcie`` (PCIe
40GB assumed, the paper names only "A100 40GB"), Argonne Swing A100 40GB -> ``a100-40gb`` (SXM4, ALCF Swing
nodes), Palmetto V100 16GB -> ``v100`` (the profile is the 32GB SXM2, same clocks and bandwidth). The Apple
M1 Pro rows are not imported (no profile).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.data.importers.benchlab import _significant
from estimator.data.measurements import BOUNDARIES, SCHEMA
from estimator.errors import DataError, InputFileError

CITATION = (
    "G. Wilkins, S. Keshav, R. Mortier, 'Offline Energy-Optimal LLM Serving: Workload-Based Energy Models for "
    "LLM Inference on Heterogeneous Systems', e-Energy 2024; github.com/grantwilkins/energy-inference @ 5c2cfa4"
)
_FILES = {
    "input-test": "plots/input-test/all-input-stats.csv",
    "output-test": "plots/output-test/all-output-stats.csv",
    "scale-input-test": "plots/parameter-scale-input-test/all-input-scale-stats.csv",
    "scale-output-test": "plots/parameter-scale-output-test/all-output-scale-stats.csv",
}
#: System name -> hardware profile.
SYSTEMS = {
    "Palmetto Intel+A100": "a100-pcie",
    "Palmetto Intel+V100": "v100",
    "Swing AMD+A100": "a100-40gb",
    "argonne-swing": "a100-40gb",
}
#: Model name in the tables -> (Hugging Face id, zoo spec or "" when the zoo cannot build it).
MODELS = {
    "Llama-2 (7B)": ("meta-llama/Llama-2-7b-chat-hf", "zoo:llama-2-7b;cache=0;dtype=bfloat16"),
    "Llama-2 (13B)": ("meta-llama/Llama-2-13b-chat-hf", "zoo:llama-2-13b;cache=0;dtype=bfloat16"),
    "Llama-2 (70B)": ("meta-llama/Llama-2-70b-chat-hf", "zoo:llama-2-70b;cache=0;dtype=bfloat16"),
    "Mistral (7B)": ("mistralai/Mistral-7B-v0.1", "zoo:mistral-7b;cache=0;dtype=bfloat16"),
    "Falcon (7B)": ("tiiuae/falcon-7b", ""),
    "Falcon (40B)": ("tiiuae/falcon-40b", ""),
    "Mixtral (8x7B)": ("mistralai/Mixtral-8x7B-v0.1", ""),
}
_LIMIT = ("Output Token Limit", "Number of Output Tokens")


def import_wilkins(path: Path) -> pd.DataFrame:
    """The Wilkins et al. request tables as validation rows (see the module docstring)."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parents[2] if folder.parent.parent.name == "plots" else folder.parent
    if not (folder / "plots").is_dir():
        raise InputFileError(f"{folder} has no plots/ folder; give the wilkins_energy_inference folder")
    parts = []
    for test, rel in _FILES.items():
        file = folder / rel
        if not file.is_file():
            raise InputFileError(f"{file} does not exist; is {folder} the Wilkins data set?")
        frame = pd.read_csv(file)
        limit = next((c for c in _LIMIT if c in frame.columns), None)
        need = ["Phase", "Runtime (s)", "GPU Energy (J)", "Number of Input Tokens", "Total Number of Tokens"]
        if limit is None or any(c not in frame.columns for c in need):
            raise DataError(f"{file} lacks the expected columns; is it the Wilkins table?")
        parts.append(frame.assign(test=test, limit=frame[limit]))
    raw = pd.concat(parts, ignore_index=True)
    log: Counter[str] = Counter(rows_in=len(raw))
    raw = raw[raw["Phase"].astype(str).str.startswith("start-inference")]
    log["dropped: tokenizer / model-load phases"] = log["rows_in"] - len(raw)
    warm = raw["Iteration"] == 0
    log["dropped: iteration 0 (warm-up)"] = int(warm.sum())
    raw = raw[~warm]
    known = raw["System"].isin(SYSTEMS)
    for system, count in raw.loc[~known, "System"].value_counts().items():
        log[f"dropped: no profile for {system}"] = int(count)
    raw = raw[known & raw["Model"].isin(MODELS)]
    if "gpu-boards-summed" not in BOUNDARIES:  # schemas before the boundary existed
        several = raw["Number of GPUs"] > 1
        log["dropped: several GPUs, boundary gpu-boards-summed unknown to this schema"] = int(several.sum())
        raw = raw[~several]
    # Generated tokens lie in [0.9, 1] x the limit (min_new_tokens, max_new_tokens); the tables' token counts
    # (re-encoded text, nominal prompt sizes in the input tests) can fall outside, so they are clamped to it.
    counted = raw["Total Number of Tokens"] - raw["Number of Input Tokens"]
    raw = raw.assign(generated=counted.clip(lower=0.9 * raw["limit"], upper=raw["limit"]))
    keys = ["test", "Model", "System", "Number of GPUs", "Number of Input Tokens", "limit"]
    rows = []
    for (test, model, system, gpus, prompt, limit), g in raw.groupby(keys, sort=True):
        energy = g["GPU Energy (J)"].astype(float)
        median = float(energy.median())
        hf_id, spec = MODELS[model]
        gpus = int(gpus)
        rows.append(
            {
                "model_ref": spec or f"hf:{hf_id}",
                "group": hf_id,
                "family": model.split(" ")[0].lower(),
                "task": "text-generation-no-cache",
                "batch": 1,
                "dtype": "bfloat16",
                "hardware": SYSTEMS[system],
                "runtime": "hf-pipeline",
                "boundary": "gpu-board-nvml" if gpus == 1 else "gpu-boards-summed",
                "joules_per_sample": float(energy.mean()),
                "latency_s": float(g["Runtime (s)"].mean()),
                "idle_subtracted": False,
                "repeats": len(g),
                "spread_rel": (float(energy.max()) - float(energy.min())) / median if median > 0 else np.nan,
                "source": "wilkins",
                "citation": CITATION,
                "notes": f"{test}; HF pipeline, bfloat16, use_cache=False; token limit {int(limit)}",
                "device_name": system,
                "accelerators": gpus,
                "submission": f"{test}:{model}:{system}:{int(prompt)}:{int(limit)}",
                "output_tokens": float(g["generated"].mean()),
                "prompt_tokens": int(prompt),
            }
        )
    frame = pd.DataFrame(rows)
    for name in ("joules_per_sample", "latency_s", "spread_rel", "output_tokens"):
        frame[name] = _significant(frame[name])
    log["rows_out"] = len(frame)
    order = [c.name for c in SCHEMA if c.name in frame.columns]
    frame = frame[order + [c for c in frame.columns if c not in order]]
    frame = frame.sort_values(["submission"], kind="mergesort").reset_index(drop=True)
    frame.attrs["import_log"] = dict(log)
    return frame
