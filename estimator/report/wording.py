"""Words for users: what each measurement boundary covers, readable names of the baselines, and the interval
said plainly. JSON keys stay the stable internal names; these are for text and HTML only."""

from __future__ import annotations

#: One sentence per measurement boundary on what the joules cover and what they leave out.
BOUNDARY_TEXT: dict[str, str] = {
    "soc-core-rail-dynamic": (
        "Only the SoC core rail's power above idle, as its power-management chip reports it: board idle, "
        "DRAM, USB, fans and power-supply losses are excluded, so a wall meter reads several watts more."
    ),
    "cpu-package-rapl": (
        "The CPU package(s) as RAPL counts it (cores, caches, uncore, idle included): DRAM, the rest of the "
        "machine and power-supply losses are excluded."
    ),
    "gpu-board-nvml": (
        "The whole GPU board as NVML reports it (GPU, its memory, board idle power): the host CPU, host DRAM "
        "and the rest of the server are excluded."
    ),
    "gpu-boards-summed": (
        "Several GPU boards summed as NVML reports them while one works (idle boards included): host CPU "
        "and the rest of the server excluded."
    ),
    "wall-system": (
        "The whole machine at the wall socket (power-supply losses, fans, idle included): the most "
        "complete boundary, comparable with a plug-in power meter."
    ),
    "codecarbon-total": (
        "CodeCarbon's estimate of CPU + GPU + RAM energy (RAPL/NVML readings or TDP-based guesses): not "
        "a wall measurement; power-supply losses and the rest of the machine are excluded."
    ),
    "machine-total": "The whole machine's energy as the IrEne benchmark measured it (its ground truth).",
}

#: Readable names of the baselines, by their stable JSON key.
BASELINE_NAMES: dict[str, str] = {
    "desislavov_flops_over_peak_per_watt": "FLOPs x TDP / peak FLOP/s (Desislavov et al.)",
    "tdp_x_roofline_time": "TDP x roofline time",
}


def boundary_sentence(boundary: str) -> str:
    """What ``boundary`` covers, in one sentence (says so when the boundary is not known here)."""
    return BOUNDARY_TEXT.get(boundary, f"Boundary '{boundary}' is not described here; see docs/hardware.md.")


def baseline_name(key: str) -> str:
    """A readable name for a baseline's JSON key (the key itself when unknown)."""
    return BASELINE_NAMES.get(key, key.replace("_", " "))


def interval_sentence(
    joules: float, interval: tuple[float, float], level: float, calibrated: bool, correction: str = ""
) -> str:
    """Where the estimate sits in its interval, and what the interval rests on, in plain words
    (``correction``: ``cross-device`` for the GPU model trained on other GPUs)."""
    lo, hi = interval
    if correction == "cross-device":
        source = (
            f"a {level:.0%} range from the cross-device answer's errors on GPUs it had not seen (leave-one-device-"
            "out: one GPU's bias plus the spread inside a GPU, every GPU weighted equally); there are no "
            "measurements of this device, and on the GPUs with data its coverage ranged widely "
            "(docs/evaluation_gpu.md)"
        )
    elif calibrated:
        source = (
            f"the trained model's held-out errors on measurements of this device put {level:.0%} of "
            "true values in this range"
        )
    else:
        source = (
            f"the physics prior's errors on public measurements of other devices put "
            f"{level:.0%} of true values in this range; it was not calibrated on this device"
        )
    if joules < lo:
        where = "the estimate lies below the range: the prior tends to under-estimate, so expect more"
    elif joules > hi:
        where = "the estimate lies above the range: the prior tends to over-estimate, so expect less"
    else:
        where = "the estimate lies inside it"
    return f"{source}; {where}."
