"""Energy and time of one LLM generation request: prefill, decode with a growing KV cache, per token.

**Steps.** A request of ``batch`` sequences with ``prompt`` tokens each that generates ``generate`` tokens
runs one prefill pass (``seq = prompt``, empty cache; it yields the first token) and ``generate - 1`` decode
steps (``seq = 1``), step ``i`` attending to a cache of ``prompt + i`` tokens (``i = 0 .. generate - 2``).
A graph without a cache is given the whole sequence at every step (``seq = prompt + i + 1``, no past): it
recomputes the prefix each time, which is what such a graph (and ``use_cache=False``) does.

A graph with a cache cannot be bound to an empty cache (a dimension of 0), so prefill is costed at past
lengths 1 and 2 and extrapolated to 0, which is exact because costs are affine in the past length
(:mod:`estimator.llm.steps`).

**Energy of each step** comes from the :class:`~estimator.api.Estimator` given (its prior and, where one is
trained, its correction), so the answer follows whichever prior the Estimator uses. Decode sums are
computed by :func:`estimator.llm.integrate.sum_steps`, whose error bound is reported.

**Definitions.** TTFT = prefill time; TPOT = decode time / decode steps; J per output token = decode joules
/ (decode steps x batch) (the marginal cost of a generated token); J per request = (prefill + decode joules)
/ batch; KV-cache bytes = ``2 x layers x kv_heads x head_dim x (prompt + generate) x batch`` elements of the
KV dtype at the end of the request, summed over devices. With ``devices > 1`` (tensor parallelism) every
figure of energy is the sum over the devices and times include the all-reduces.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import onnx

from estimator.api import Estimator
from estimator.cost.kernels import KernelReport
from estimator.dtypes import dtype_bits
from estimator.energy.physics import DTYPE_CHOICES
from estimator.errors import GraphStructureError, InputFileError, InvalidDimensionError, ModelFormatError
from estimator.llm.blocks import BlockEnergy, block_view
from estimator.llm.integrate import StepSum, sum_steps
from estimator.llm.parallel import all_reduce_cost, interconnect
from estimator.llm.pricing import StepPricer
from estimator.llm.serving import ServingHost, serving_host
from estimator.llm.steps import EAGER_TORCH_RUNTIMES, TORCH_VIEW_OPS, StepKernels, block_order
from estimator.zoo.decoders import DecoderSpec, parse_decoder_spec, tensor_parallel_shard


@dataclass(frozen=True)
class LLMEstimate:
    """Energy of one generation request (see the module docstring for every definition).

    Energies are J summed over ``devices``; times are s of wall clock.
    """

    model: str
    hardware: str
    runtime: str
    boundary: str
    method: str
    batch: int
    prompt_tokens: int
    generated_tokens: int
    dtype: str
    kv_dtype: str
    devices: int
    has_cache: bool
    prefill_joules: float
    prefill_seconds: float
    decode_joules: float
    decode_seconds: float
    decode_steps: int
    decode_error_bound_joules: float
    decode_evaluations: int
    kv_cache_bytes: float
    weight_bytes_per_device: float
    all_reduce_joules: float
    decode_step_blocks: tuple[BlockEnergy, ...]
    notes: tuple[str, ...]
    not_costed: Mapping[str, int] = field(default_factory=dict)
    host_step_seconds: float = 0.0
    all_reduce_seconds: float = 0.0
    decode_all_reduce_seconds: float = 0.0

    @property
    def joules_per_output_token(self) -> float:
        """Decode joules per generated token (per sequence), J."""
        return self.decode_joules / (self.decode_steps * self.batch) if self.decode_steps else 0.0

    @property
    def joules_per_request(self) -> float:
        """Prefill + decode joules per sequence, J."""
        return (self.prefill_joules + self.decode_joules) / self.batch

    @property
    def ttft_s(self) -> float:
        """Time to first token (the prefill pass), s."""
        return self.prefill_seconds

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first, s."""
        return self.decode_seconds / self.decode_steps if self.decode_steps else 0.0

    def to_json(self) -> dict:
        """The documented JSON form (schema ``estimator.llm/1``)."""
        return {
            "schema": "estimator.llm/1",
            "model": self.model,
            "hardware": self.hardware,
            "runtime": self.runtime,
            "boundary": self.boundary,
            "method": self.method,
            "batch": self.batch,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "dtype": self.dtype,
            "kv_dtype": self.kv_dtype,
            "tensor_parallel": self.devices,
            "kv_cache": self.has_cache,
            "prefill": {"joules": self.prefill_joules, "seconds": self.prefill_seconds},
            "decode": {
                "joules": self.decode_joules,
                "seconds": self.decode_seconds,
                "steps": self.decode_steps,
                "error_bound_joules": self.decode_error_bound_joules,
                "evaluations": self.decode_evaluations,
            },
            "joules_per_output_token": self.joules_per_output_token,
            "joules_per_request": self.joules_per_request,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "host_step_seconds": self.host_step_seconds,
            "kv_cache_bytes": self.kv_cache_bytes,
            "weight_bytes_per_device": self.weight_bytes_per_device,
            "all_reduce_joules": self.all_reduce_joules,
            "all_reduce_seconds": self.all_reduce_seconds,
            "decode_all_reduce_seconds": self.decode_all_reduce_seconds,
            "decode_step_blocks": [
                {"block": b.block, "joules": b.joules, "seconds": b.seconds, "kernels": b.kernels}
                for b in self.decode_step_blocks
            ],
            "not_costed": dict(self.not_costed),
            "notes": list(self.notes),
        }


def _source(model) -> tuple[onnx.ModelProto | None, DecoderSpec | None, str]:
    """The graph (None for a zoo spec, built in parts later), the zoo spec (or None) and a display name."""
    if isinstance(model, str) and model.startswith("zoo:"):
        return None, parse_decoder_spec(model), model
    if isinstance(model, onnx.ModelProto):
        return model, None, model.graph.name or "model"
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise InputFileError(f"model file '{path}' does not exist; give a .onnx decoder or a zoo:<name> spec")
    try:
        return onnx.load(path, load_external_data=False), None, path
    except Exception as exc:  # onnx raises DecodeError and others for a bad file
        raise ModelFormatError(f"'{path}' is not a readable ONNX model ({type(exc).__name__})") from None


def _short(cfg, layers: int):
    return replace(cfg, layers=layers)


def estimate_request(
    estimator: Estimator,
    model: str | os.PathLike[str] | onnx.ModelProto,
    *,
    prompt: int,
    generate: int,
    batch: int = 1,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    tensor_parallel: int = 1,
    rel_tol: float = 1e-3,
    host: ServingHost | None = None,
) -> LLMEstimate:
    """Energy and time of one request (see the module docstring).

    Args:
        estimator: the Estimator (hardware profile, runtime, prior, trained model) that prices each step.
        model: a decoder ``.onnx`` path, a ModelProto, or a zoo spec ``zoo:<name>[;key=value]*``.
        prompt, generate: prompt tokens and generated tokens per sequence.
        batch: sequences decoded together.
        dtype: ``fp32``, ``fp16``, ``bf16`` (or an element type name) to run float kernels in.
        kv_dtype: element type of the KV cache for its size (default: the graph's cache inputs / ``dtype``).
        tensor_parallel: GPUs sharing the model (zoo specs only).
        rel_tol: relative error target of the decode quadrature.
        host: a serving engine's step-time model (:class:`~estimator.llm.serving.ServingHost`: host time
            per step growing with the batch, a factor on the decode GPU time); None takes the runtime's
            (:func:`estimator.llm.serving.serving_host`; vLLM has one), or prices steps as the Estimator does
            when it has none.
    """
    if prompt < 1 or generate < 1 or batch < 1 or tensor_parallel < 1:
        raise InvalidDimensionError(
            "--prompt, --generate, --batch and --tensor-parallel must be positive integers"
        )
    if tensor_parallel > 1:
        interconnect(estimator.profile)  # fails early when the profile has no known interconnect
    proto, spec, name = _source(model)
    notes: list[str] = []
    views = TORCH_VIEW_OPS if estimator.runtime.name in EAGER_TORCH_RUNTIMES else frozenset()
    if views and not estimator.runtime.fuses:
        notes.append(f"eager PyTorch: {', '.join(sorted(views))} run as views (no kernel, no copy)")
    element = DTYPE_CHOICES.get(dtype, dtype) if dtype else None
    if spec is not None:
        cfg = tensor_parallel_shard(spec.config, tensor_parallel) if tensor_parallel > 1 else spec.config
        small = spec.build(_short(cfg, 2)) if cfg.layers > 2 else spec.build(cfg)
        repeat = cfg.layers if cfg.layers > 2 else None
        steps = StepKernels(small, batch, fuse=estimator.runtime.fusion, layers=repeat, views=views)
        layers, hidden = cfg.layers, cfg.hidden
        kv_heads, head_dim, has_cache = cfg.kv_heads, cfg.head_dim, spec.cache
        graph_kv_dtype = spec.dtype
    else:
        if tensor_parallel > 1:
            raise GraphStructureError(
                "--tensor-parallel needs a zoo decoder spec (zoo:<name>): an ONNX file holds one device's whole "
                "graph and is not split here"
            )
        steps = StepKernels(proto, batch, fuse=estimator.runtime.fusion, views=views)
        repeat = None
        lay = steps.layout
        layers, kv_heads, head_dim, has_cache = lay.layers, lay.kv_heads, lay.head_dim, lay.has_cache
        hidden = 0  # only tensor parallelism needs it, and files are not split
        graph_kv_dtype = lay.kv_dtype
    kv_type = DTYPE_CHOICES.get(kv_dtype, kv_dtype) if kv_dtype else (element or graph_kv_dtype)
    if kv_dtype and kv_type != (element or graph_kv_dtype):
        notes.append(
            f"--kv-dtype {kv_type} sets the KV-cache size only; kernel traffic uses the graph's types"
        )

    host = host or serving_host(estimator.runtime.name)
    pricer = StepPricer(estimator, element, repeat, serving=host, batch=batch)
    if host is not None and not pricer.applies_serving:
        notes.append(
            f"the {estimator.runtime.name} step-time model applies with the v2 prior on a GPU only; "
            "steps were priced as the Estimator prices them"
        )
    price = pricer.price  # joules and seconds of the whole model from the (stand-in's) kernels

    # Prefill (one pass, empty cache; extrapolated from past 1, 2 with a cache).
    if has_cache:
        poly = steps.polynomial(lambda p: steps.exact(prompt, p), (1, 2), 3)
        if poly is None:
            raise GraphStructureError(
                "prefill costs are not affine in the past length; cannot extrapolate to 0"
            )
        prefill_report, prefill_facts = poly(0), poly.facts(0)
        notes.append(
            "prefill costed at past lengths 1 and 2 and extrapolated to an empty cache (exact: affine)"
        )
    else:
        prefill_report, prefill_facts = steps.exact(prompt, 0), None
    if not prefill_report.costs.nodes:
        raise GraphStructureError(
            "the model's graph has no nodes: it computes nothing, so it has no energy to estimate"
        )
    prefill = price(prefill_report, prefill_facts, decode=False)
    n_steps = generate - 1
    at, lo, hi = _decode_kernels(steps, has_cache, prompt, n_steps, notes)
    # Only (joules, seconds) are kept per evaluated step: a 70B step is thousands of kernels.
    cache: dict[int, tuple[float, float]] = {}

    def step(x: int) -> tuple[float, float]:
        if x not in cache:
            est = price(*at(x))
            cache[x] = (est.joules, est.seconds)
        return cache[x]

    energy: StepSum = sum_steps(lambda x: step(x)[0], lo, hi, rel_tol=rel_tol)
    seconds: StepSum = sum_steps(lambda x: step(x)[1], lo, hi, rel_tol=rel_tol)
    n = tensor_parallel
    act_type = element or graph_kv_dtype
    static_w = prefill.static_power_w
    prefill_comm = all_reduce_cost(
        estimator.profile,
        n,
        layers=layers,
        tokens=batch * prompt,
        hidden=hidden,
        element_bytes=dtype_bits(act_type) // 8,
        static_power_w=static_w,
    )
    decode_comm = all_reduce_cost(
        estimator.profile,
        n,
        layers=layers,
        tokens=batch,
        hidden=hidden,
        element_bytes=dtype_bits(act_type) // 8,
        static_power_w=static_w,
    )
    first_report, first_facts = at(lo) if n_steps else (None, None)
    first = price(first_report, first_facts) if first_report is not None else prefill
    device_bytes = estimator.profile.dram_bytes
    weights = _weight_bytes(first_report, repeat) if first_report is not None else 0.0
    cached = (
        kv_bytes_per_device(layers, kv_heads, head_dim, prompt + generate, batch, kv_type) if has_cache else 0
    )
    if weights + cached > device_bytes:
        notes.append(
            f"weights and KV cache need more than the {device_bytes / 2**30:.0f} GiB of one device's memory: "
            "the request would not run like this (use --tensor-parallel or a smaller batch)"
        )
    if not has_cache:
        notes.append(
            "the graph has no KV cache: each decode step recomputes the whole prefix, as the graph does"
        )
    if n > 1:
        notes.append(
            f"tensor parallel over {n} devices: one device's shard x {n}; {decode_comm.count} all-reduces "
            f"per step over {decode_comm.source} at {decode_comm.bandwidth_bytes_per_s / 1e9:.0f} GB/s per "
            f"direction and {decode_comm.latency_s * 1e6:.1f} us each (NCCL's ring LL latency)"
        )
    kv_bytes = kv_bytes_per_device(layers, kv_heads, head_dim, prompt + generate, batch, kv_type) * n
    if not has_cache:
        kv_bytes = 0.0
    return LLMEstimate(
        model=name,
        hardware=estimator.profile.name,
        runtime=estimator.runtime.name,
        boundary=estimator.profile.measurement_boundary,
        method=pricer.method,
        batch=batch,
        prompt_tokens=prompt,
        generated_tokens=generate,
        dtype=element or prefill_report.dominant_dtype,
        kv_dtype=kv_type,
        devices=n,
        has_cache=has_cache,
        prefill_joules=n * (prefill.joules + prefill_comm.joules),
        prefill_seconds=prefill.seconds + prefill_comm.seconds,
        decode_joules=n * (energy.total + n_steps * decode_comm.joules),
        decode_seconds=seconds.total + n_steps * decode_comm.seconds,
        decode_steps=n_steps,
        decode_error_bound_joules=n * energy.error_bound,
        decode_evaluations=len(cache),
        kv_cache_bytes=kv_bytes,
        weight_bytes_per_device=weights,
        all_reduce_joules=n * (prefill_comm.joules + n_steps * decode_comm.joules),
        all_reduce_seconds=prefill_comm.seconds + n_steps * decode_comm.seconds,
        decode_all_reduce_seconds=n_steps * decode_comm.seconds,
        decode_step_blocks=block_view(first_report, first) if first_report else (),
        notes=tuple(notes),
        not_costed=dict(prefill_report.costs.not_costed),
        host_step_seconds=pricer.host_s,
    )


def kv_bytes_per_device(
    layers: int, kv_heads: int, head_dim: int, tokens: int, batch: int, dtype: str
) -> float:
    """Bytes of the keys and values of ``tokens`` cached tokens of ``batch`` sequences on one device, B."""
    return 2.0 * layers * kv_heads * head_dim * tokens * batch * dtype_bits(dtype) / 8


def _decode_kernels(steps: StepKernels, has_cache: bool, prompt: int, n_steps: int, notes: list[str]):
    """((kernels, graph facts or None) at step length x, first x, last x) of the decode steps."""
    if n_steps == 0:
        return (lambda x: (steps.exact(1, x), None)), 0, -1
    if has_cache:
        lo, hi = prompt, prompt + n_steps - 1
        exact = lambda p: steps.exact(1, p)  # noqa: E731
        xs, check = ((lo, hi), (lo + hi) // 2) if hi - lo >= 2 else ((lo, lo + 1), lo + 2)
    else:
        lo, hi = prompt + 1, prompt + n_steps
        exact = lambda s: steps.exact(s, 0)  # noqa: E731
        span = max(hi - lo, 3)
        xs, check = (lo, lo + span // 2, lo + span), lo + span // 3
    poly = steps.polynomial(exact, xs, check)
    if poly is None:
        notes.append(
            "step costs are not polynomial in the length here; every evaluated step was costed alone"
        )
        return (lambda x: (exact(x), None)), lo, hi
    return (lambda x: (poly(x), poly.facts(x))), lo, hi


def _weight_bytes(report: KernelReport, repeat: int | None) -> float:
    """Parameter bytes of the whole model from its (stand-in's) kernels, B."""
    order = block_order(report, repeat) if repeat else range(len(report.kernels))
    return float(sum(report.kernels[j].param_bytes for j in order))
