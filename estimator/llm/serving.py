"""Step time of a serving engine (vLLM): the GPU time of a decode step and the host time around it.

A serving engine runs one *engine step* at a time: the scheduler picks the sequences, inputs are prepared, the
model runs (decode replayed from a CUDA graph), and the sampler and the output processing (detokenisation,
stop checks, streaming) run per sequence in Python while the GPU waits with its context resident. So

    T_step = k x t_gpu + t_host(B),   t_host(B) = step_s + per_sequence_s x B,
    E_step = k x E_gpu + P_ctx x t_host(B),

with ``t_gpu`` and ``E_gpu`` the energy-roofline v2 prior's time and energy of the step's kernels (no
per-call host time), ``k`` the measured over modelled GPU time of a decode step (the prior's kernels run at
the bandwidth and efficiency it assumes; vLLM's achieved HBM bandwidth on decode GEMMs and paged attention at
these batches is lower), ``B`` the sequences in the step and ``P_ctx`` the profile's idle-with-context power.
Energy is thus the prior's busy power over the modelled GPU time plus the waiting board over the host time.
The prefill step gets the host time, not ``k`` (fitted on decode steps only). The vLLM v0.6.0 performance post
(blog.vllm.ai, 2024-09-05) measured the HTTP server and the scheduling at 33% and 29% of the time for Llama 3
8B on one H100 in v0.5.3 with the GPU idle meanwhile, and names per-sequence output processing as what grows
with the batch: hence a per-step and a per-sequence host term.

**Constants.** ``k``, ``step_s`` and ``per_sequence_s`` are fitted (non-negative least squares on the
relative TPOT error) on the ML.ENERGY leaderboard v2 vLLM rows of *one* GPU and judged on the other's
(``scripts/validate_llm.py --fit-vllm-host``). Host time depends on the host CPU and the vLLM version, the
factor on the kernels vLLM ran; a constant fitted on one GPU's machines is judged by its transfer to
another's. Under continuous batching the running sequences also wait while newly admitted requests are
prefilled; the leaderboard does not report its prompts, so that wait is not modelled apart: the constants
absorb it. The learned GPU correction is not applied under this model (it was trained without this time).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServingHost:
    """A serving runtime's step-time model: host time ``step_s + per_sequence_s x sequences`` per engine step
    and a factor on the prior's decode GPU time (module docstring).

    Attributes:
        step_s: host time per engine step independent of the batch (scheduler, input preparation), s.
        per_sequence_s: host time per sequence in the step (sampling, output processing), s.
        fitted_on: the rows the constants were fitted on (never the rows they are judged on).
        gpu_time_factor: measured over modelled GPU time of a decode step (the prior's kernels at the
            bandwidth and efficiency it assumes), dimensionless.
    """

    step_s: float
    per_sequence_s: float
    fitted_on: str
    gpu_time_factor: float = 1.0

    def seconds(self, sequences: int) -> float:
        """Host time of one engine step over ``sequences`` sequences, s."""
        return self.step_s + self.per_sequence_s * sequences


#: vLLM (v0.5-era, the ML.ENERGY leaderboard v2 runs), fitted on the 58 A100-SXM4-40GB rows of ML.ENERGY v2
#: (chat and code, TP 1-8, average batch 32-740; prompt assumed 256 tokens; paged layout, energy-roofline v2
#: without host time, all-reduces with NCCL's latency and outside ``k``, as the model applies them); judged on
#: the 68 H100 rows (docs/llm.md). Before round 6 the fit gave k 1.68, 10.1 ms, 0.314 ms (all-reduces by
#: bandwidth only, and inside ``k`` in the fit): ``k`` is poorly determined by these rows.
VLLM_HOST = ServingHost(
    step_s=14.5e-3,
    per_sequence_s=0.345e-3,
    fitted_on="ML.ENERGY v2 vLLM rows of a100-40gb (58)",
    gpu_time_factor=1.32,
)
#: The same fit on the 68 H100 rows: used only to judge the A100-40GB rows (never a default).
VLLM_HOST_FITTED_ON_H100 = ServingHost(
    step_s=20.4e-3,
    per_sequence_s=0.182e-3,
    fitted_on="ML.ENERGY v2 vLLM rows of h100 (68)",
    gpu_time_factor=1.72,
)

#: Serving runtimes with a step-time model, by runtime name.
SERVING_HOSTS: dict[str, ServingHost] = {"vllm": VLLM_HOST}


def serving_host(runtime: str) -> ServingHost | None:
    """The step-time model of ``runtime`` (None: steps are priced as the Estimator prices them)."""
    return SERVING_HOSTS.get(runtime)


__all__ = ["SERVING_HOSTS", "VLLM_HOST", "VLLM_HOST_FITTED_ON_H100", "ServingHost", "serving_host"]
