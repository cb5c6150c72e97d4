"""The Markdown of the GPU evaluation (``docs/evaluation_gpu.md``), from the report
:func:`estimator.learn.gpu_evaluation.run_gpu_evaluation` returns: the targets of issue 8, the per-source,
leave-one-device-out and leave-one-source-out tables, and what the systems and intervals are.
"""

from __future__ import annotations

import pandas as pd

from estimator.learn.gpu_cross import CROSS_DEVICE_ANSWER
from estimator.learn.gpu_kshot import kshot_markdown
from estimator.learn.gpu_modules import module_markdown, module_target_lines
from estimator.learn.gpu_set import OPTIONAL_GPU_TABLES
from estimator.learn.training import metrics_table
from estimator.learn.training import pct as _pct

#: ``cross_device`` (the product's answer on a GPU without data, :mod:`estimator.learn.gpu_cross`) exists in
#: leave-one-device-out and leave-one-source-out only.
SYSTEMS = (
    "cross_device",
    "model",
    "prior_v2_fitted",
    "prior_v2_shipped",
    "prior_v1",
    "flops_linear",
    "desislavov",
)


def _table(by_boundary: dict) -> list[str]:
    lines = []
    for boundary, entry in by_boundary.items():
        iv = entry["interval"]
        others = [
            f"`{name}`'s: {_pct(o['coverage'])}, mean width x{o['mean_width_factor']:.2f}"
            for name, o in entry.get("intervals", {}).items()
            if name != iv.get("system", "model")
        ]
        lines += [
            f"Boundary `{boundary}`: 90% interval of `{iv.get('system', 'model')}` covers {_pct(iv['coverage'])} "
            f"of {iv['rows']} rows, mean width x{iv['mean_width_factor']:.2f}"
            + (f" ({'; '.join(others)})" if others else "")
            + f"; the power floor raised {entry.get('power_floor_binds', 0)} of its predictions.",
            "",
        ]
        lines += metrics_table(entry, [s for s in SYSTEMS if s in entry], "tasks")
        lines.append("")
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _targets(report: dict) -> list[str]:
    """Issue 8's targets beside the figures reached (the model's, on held-out rows)."""
    lines = ["## Targets of issue 8", "", "| target | figure reached | |", "|---|---|---|"]
    for name, entry in report["per_source"].items():
        goal = 0.07 if name.startswith("irene/") else 0.10 if name.startswith("fischer_rtx4090/") else None
        for boundary, e in entry["by_boundary"].items():
            if goal is None or e["model"] is None:
                continue
            mape = e["model"]["mape"]
            lines.append(
                f"| {name} {boundary}, {entry['split']}: MAPE <= {goal:.0%} | {_pct(mape)} "
                f"({e['model']['n']} rows) | {_met(mape <= goal)} |"
            )
    lines += module_target_lines(report.get("module_level"))
    for device, entry in report["leave_one_device_out"].items():
        for boundary, e in entry["by_boundary"].items():
            iv = e["interval"]
            m = e[iv.get("system", "model")]
            ok = m["median_ape"] <= 0.2 and m["p90_ape"] <= 0.5 and 0.85 <= iv["coverage"] <= 0.95
            lines.append(
                f"| leave-one-device-out {device} {boundary} (`{iv.get('system', 'model')}`): median APE <= 20%, "
                f"P90 <= 50%, 90% interval covers 85-95% | {_pct(m['median_ape'])}, {_pct(m['p90_ape'])}, "
                f"{_pct(iv['coverage'])} | {_met(ok)} |"
            )
    how = {
        "": "shipped constants",
        "_fitted_calibrated": "constants fitted on the other groups of its source and device",
        "_fitted_other_devices": "constants fitted on the other devices",
    }
    for name, e in report["prior_medians"].items():
        for key in how if e["prior_boundary"] else ():
            if (r := e.get(f"v2{key}_over_measured")) is None:
                continue
            lines.append(
                f"| v2 prior alone within x1.5 of the measured median: {name}"
                f"{' (input pipeline timed)' if e.get('input_pipeline_timed') else ''}, {how[key]} | x{r:.2f} | "
                f"{_met(1 / 1.5 <= r <= 1.5)} |"
            )
    return [*lines, ""]


def _sources_line(report: dict) -> str:
    """Which sources trained and were judged, the judged-only ones (JUDGED_GPU_TABLES) and the optional ones
    left out (OPTIONAL_GPU_TABLES says why)."""
    used = report.get("sources", [])
    judged = report.get("judged_only_sources", [])
    left = [name for name in OPTIONAL_GPU_TABLES if name not in used]
    out = f"Sources: {', '.join(used)}."
    if judged:
        out += (
            f" Judged but never trained on (in no leave-one-device-out or leave-one-source-out training fold: "
            f"they fit no constant and train no tree, and calibrate only the `cross_device` interval of another "
            f"GPU and source; their own per-source split trains on their other networks; why: "
            f"`JUDGED_GPU_TABLES` in `estimator/learn/gpu_set.py`): {', '.join(judged)}."
        )
    if left:
        out += (
            f" Left out of training and of every figure (`--with-source NAME` adds one; why: "
            f"`OPTIONAL_GPU_TABLES` in `estimator/learn/gpu_set.py`): {', '.join(left)}."
        )
    return out


def _shared_devices_line(by_source: dict) -> str:
    """What leave-one-source-out holds out: a source's devices with its method, or - for a device whose rows
    from another source train in that fold - only the method."""
    devices = {source: set(entry["devices"]) for source, entry in by_source.items()}
    kept = []
    for source, entry in by_source.items():
        for device in sorted(devices[source]):
            others = [t for t in entry["trained_on"] if t != source and device in devices.get(t, ())]
            if others:
                kept.append(f"{device} held out with {source} (its {', '.join(others)} rows train)")
    if not kept:
        return (
            "No held-out source's device has rows of another source in training, so this holds out a source's "
            "devices with its method."
        )
    return (
        f"Devices whose rows from another source stay in training when one source is held out: {'; '.join(kept)}. "
        "For those this split measures the method, not an unseen device (leave-one-device-out holds every "
        "source's rows of a device out)."
    )


def render_markdown(report: dict) -> str:
    """The Markdown report (regenerated by ``estimate evaluate --gpu``)."""
    lines = [
        "# GPU evaluation (issue 8): v2 prior, the calibrated residual and the cross-device answer",
        "",
        "Regenerate with `estimate evaluate --gpu` (written by `estimator.learn.gpu_evaluation`). "
        f"Run {report['date']}; {report['rows']} whole-network rows with a buildable graph.",
        "Rows without a graph yet (not in any figure): "
        + (", ".join(f"{k}: {v}" for k, v in sorted(report["rows_without_graph"].items())) or "none")
        + ".",
        _sources_line(report),
        "",
        f"Systems: `cross_device` = what `estimate --hw` answers on a GPU without data: {CROSS_DEVICE_ANSWER} "
        "(`estimator/learn/gpu_cross.py`; leave-one-device-out and leave-one-source-out only); "
        "`model` = xgboost residual over the v2 prior (GPU feature schema, boundary and runtime as "
        "features); `prior_v2_fitted` = v2 alone with host constants fitted on the fold's training rows and, for a "
        "source that timed its input pipeline at a boundary other than `gpu-board-nvml`, what that machine's "
        "host adds (energy per image and per call, host power over the prior's time) fitted on its own training "
        "rows (never carried to another GPU; "
        "`fit_pipeline_terms` in `estimator/learn/gpu_training.py`); "
        "`prior_v2_shipped` = v2 with its shipped constants; `prior_v1` = energy-roofline v1; `flops_linear` = "
        "a * FLOPs + b fitted on the fold's training rows; `desislavov` = FLOPs x TDP / peak. The priors "
        "predict `gpu-board-nvml`; at other boundaries only the model knows the boundary (a feature), so the "
        "baselines' errors there include the boundary difference. In every fit each GPU weighs the same.",
        "",
        "Intervals: out-of-fold log residuals of an inner split by unit (a GPU in leave-one-device-out, a network "
        "group inside one device), read as a unit's bias plus the spread inside a unit: quantiles of every unit's "
        "median residual added to every centred residual, each unit weighted equally "
        "(`estimator/learn/gpu_interval.py`). A unit is one GPU in one category of row (one forward pass, or a "
        "source's input pipeline timed): where three or more GPUs have rows of the test row's category, the "
        "interval is theirs alone; otherwise the biases of every unit and the spread of the row's category. A "
        "widening factor learned by nested leave-one-device-out was tried on the 825 rows of 2026-12-01 and "
        "over-covered every held-out GPU (100%, intervals up to x2,860 wide), so it is not used. The "
        "`cross_device` answer's interval at the prior's boundary reads a new GPU's bias through a normal model of "
        "the training GPUs' biases (Student's t prediction interval, k-1 degrees of freedom; "
        "`estimator/learn/gpu_cross.py`), since three or four GPUs' empirical quantiles cannot reach 90%; the "
        "judged-only sources' rows outside the fold's test rows calibrate it too (GPUs that time one forward "
        "pass), and nothing else. A GPU's residuals share one bias, so a GPU is covered almost wholly or hardly at "
        "all: per-GPU coverage of 85-95% is not what a handful of GPUs can show; the pooled figure is the test.",
        "",
        "Power floor: the prediction of a row that times one forward pass, and its interval's ends, are raised to "
        "the board's idle-with-context power x the prior's latency (x boards summed), as the product answer is; "
        "rows that timed an input pipeline are not floored (no product answer is one, and their latency is a host "
        "constant fitted on other rows). Each table says how many predictions the floor raised.",
        "",
        *_targets(report),
        "## Per source and device (calibrated: the device's own other networks train)",
        "",
    ]
    for name, entry in report["per_source"].items():
        lines += [f"### {name}: {entry['split']}", ""]
        lines += _table(entry["by_boundary"])
        lines += [
            "Fitted constants (first fold): "
            + "; ".join(f"{k}: {v}" for k, v in entry["constants_first_fold"].items()),
            "",
        ]
    lines += [
        "## Leave-one-device-out (the cross-device answer on a GPU without data)",
        "",
        "Every row of the held-out GPU is out of training, and so is every constant fitted from it. The interval "
        "judged is `cross_device`'s: at the prior's boundary from the fitted prior's residuals on the training "
        "GPUs, each held out of the constant fit in turn; elsewhere the model's.",
        "",
    ]
    for device, entry in report["leave_one_device_out"].items():
        lines += [f"### held out: {device} (trained on {', '.join(entry['trained_on'])})", ""]
        lines += _table(entry["by_boundary"])
    if report.get("leave_one_device_out_pooled"):
        lines += ["### all held-out devices together, per boundary", ""]
        lines += _table(report["leave_one_device_out_pooled"])
    lines += kshot_markdown(report.get("leave_one_device_out_kshot"))
    if report.get("leave_one_source_out"):
        lines += [
            "## Leave-one-source-out (a source's devices and method all unseen)",
            "",
            _shared_devices_line(report["leave_one_source_out"]),
            "",
        ]
        for source, entry in report["leave_one_source_out"].items():
            lines += [
                f"### held out: {source} ({', '.join(entry['devices'])}; trained on "
                f"{', '.join(entry['trained_on'])})",
                "",
            ]
            lines += _table(entry["by_boundary"])
    lines += module_markdown(report.get("module_level"))
    lines += _gaps_markdown(report.get("data_gaps"))
    lines += [
        "## The priors alone against each source's measured median",
        "",
        "Median predicted / median measured joules over a source's rows (shipped constants, no fit; the targets "
        "above also give v2 with its host constants fitted per fold on training rows only). The priors "
        "predict `gpu-board-nvml`; a row at another boundary is compared as it is (no conversion exists for "
        "`machine-total` and `codecarbon-total`), so only `gpu-board-nvml` rows test the x1.5 target; a source that "
        "timed its host input pipeline (Fischer: ImageNet decoding in the loop) measured more than a forward pass, "
        "which no conversion removes.",
        "",
        "| source / boundary | rows | v2 / measured | v1 / measured | prior's own boundary | input pipeline timed |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in report["prior_medians"].items():
        lines.append(
            f"| {name} | {e['rows']} | {e['v2_over_measured']:.2f} | {e['v1_over_measured']:.2f} | "
            f"{'yes' if e['prior_boundary'] else 'no'} | {'yes' if e.get('input_pipeline_timed') else 'no'} |"
        )
    iv = report.get("physics_only_interval_gpu")
    if iv:
        lines += [
            "",
            f"Physics-only 90% interval of the v2 prior on GPUs (shipped in `estimator/energy/prior_interval.json`"
            f" under `gpu`): measured / predicted between {iv['low_factor']:.3g} and {iv['high_factor']:.3g}; "
            f"{iv['basis']}.",
        ]
    lines.append("")
    return "\n".join(lines)


def data_gaps(table: pd.DataFrame) -> dict:
    """What the evaluated rows (``table``: one measurement per row) cannot show: per GPU runtime, the GPUs and
    boundaries it was measured on; the GPU runtimes and GPU profiles no row measured (their answers rest on the
    prior and the cross-device interval alone, untested there)."""
    from estimator.energy.hardware import list_profiles, load_profile
    from estimator.energy.runtimes import RUNTIMES

    measured: dict[str, list[str]] = {}
    for (runtime, hw, boundary), n in table.groupby(["runtime", "hardware", "boundary"]).size().items():
        measured.setdefault(str(runtime), []).append(f"{hw} at {boundary} ({n})")
    gpu_runtimes = sorted(n for n, r in RUNTIMES.items() if r.device_kind == "gpu")
    seen = set(table["hardware"].astype(str))
    return {
        "runtimes_measured": {r: measured[r] for r in gpu_runtimes if r in measured},
        "runtimes_without_rows": [r for r in gpu_runtimes if r not in measured],
        "gpus_without_rows": sorted(
            p for p in list_profiles() if load_profile(p).kind == "gpu" and p not in seen
        ),
    }


def _gaps_markdown(gaps: dict | None) -> list[str]:
    if not gaps:
        return []
    lines = [
        "## What the data cannot show",
        "",
        "Runtimes and GPUs `estimate` answers for that no evaluated row measured: there the answer is the v2 prior "
        "with host constants fitted on the measured runtimes (or the runtime's own, cited), and its interval comes "
        "from other GPUs and runtimes; no figure above tests it. MLPerf Power (TensorRT, at the wall) and Power "
        "Hungry Processing are left out of these figures (`docs/evaluation_gpu_mlperf.md`, "
        "`docs/evaluation_gpu_power_hungry.md`); vLLM is judged in `docs/llm.md`.",
        "",
        "| GPU runtime | measured on (rows) |",
        "|---|---|",
    ]
    lines += [f"| {r} | {', '.join(where)} |" for r, where in gaps["runtimes_measured"].items()]
    lines += [f"| {r} | no row |" for r in gaps["runtimes_without_rows"]]
    lines += ["", f"GPU profiles no row measured: {', '.join(gaps['gpus_without_rows']) or 'none'}.", ""]
    return lines
