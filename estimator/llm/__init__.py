"""LLM generation requests: prefill and decode with a growing KV cache, per token and per request.

    from estimator import Estimator
    from estimator.llm import estimate_request
    r = estimate_request(Estimator("h100"), "zoo:llama-3.1-8b", prompt=512, generate=256, batch=16)
    r.prefill_joules, r.decode_joules, r.joules_per_output_token, r.ttft_s, r.tpot_s

Modules: :mod:`~estimator.llm.steps` (decoder layout, kernels per step), :mod:`~estimator.llm.integrate`
(sums over steps with an error bound), :mod:`~estimator.llm.parallel` (tensor parallelism),
:mod:`~estimator.llm.request` (the request estimate), :mod:`~estimator.llm.serving` (vLLM's step-time model).
"""

from estimator.llm.integrate import StepSum, sum_steps, sum_steps_exactly
from estimator.llm.request import BlockEnergy, LLMEstimate, estimate_request

__all__ = ["BlockEnergy", "LLMEstimate", "StepSum", "estimate_request", "sum_steps", "sum_steps_exactly"]
