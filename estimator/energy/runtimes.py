"""Runtimes an estimate can be asked for, and the facts of each that the physics needs.

A runtime fixes how many units (CPU threads) a kernel runs on, whether it fuses nodes, and (for the GPU prior
"energy-roofline v2") the host time it spends per launched kernel and per call. Values come from how the
runtime is used by default or by the measured datasets this project learns from, cited per entry; the host
times are published ranges or estimates, marked so, and can be fitted (:mod:`estimator.energy.prior_fit`).
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.errors import ProfileError, did_you_mean


@dataclass(frozen=True)
class Runtime:
    """One inference runtime.

    Attributes:
        name: runtime name used in measurement tables and ``--runtime``.
        device_kind: ``gpu`` or ``cpu``: the kind of profile it runs on.
        threads: CPU threads a kernel uses; ``None`` means every core of the profile.
        fuses: whether the runtime fuses nodes into kernels (graph runtimes do; eager PyTorch launches one
            kernel per op, apart from what a single library call does).
        source: where the thread count and the fusion behaviour come from.
        host_dispatch_s: host (CPU) time to dispatch one kernel, s: Python, the framework's dispatcher and
            ``cudaLaunchKernel`` for eager runtimes; the launch call alone for graph runtimes; 0 on CPUs (the
            v1 prior, which CPU runtimes use, has no host term).
        host_call_s: host time per inference outside the kernels (pre- and post-processing, the runtime's
            per-call work), s; the device waits at idle-with-context power meanwhile.
        host_source: where the two host times come from.
        fuses_attention: an eager runtime (``fuses`` False) whose models call one fused attention kernel
            (PyTorch's ``scaled_dot_product_attention``): each attention chain is one kernel, every other op
            its own.
        host_twin: the runtime whose fitted host constants this one shares (the same host path), or None.
        attention_kernel: the fused attention kernel it runs for 16-bit attention on the GPUs whose profile
            cites that kernel's rate (:data:`FLASH_ATTENTION_2`), or None (timed as any contraction).
        attention_source: where ``attention_kernel`` comes from.
        fusion_rule: for a fusing runtime (``fuses`` True) whose fusion is not every rule, the ``fuse`` mode of
            :func:`estimator.cost.kernels.fuse_kernels` it follows (``"remapper"``: TensorFlow graph execution
            on a GPU; ``"bn-apart"``: every rule but each BatchNormalization its own kernel), else None; its
            ``source`` says why.
    """

    name: str
    device_kind: str
    threads: int | None
    fuses: bool
    source: str
    host_dispatch_s: float = 0.0
    host_call_s: float = 0.0
    host_source: str = ""
    fuses_attention: bool = False
    host_twin: str | None = None
    attention_kernel: str | None = None
    attention_source: str = ""
    fusion_rule: str | None = None

    @property
    def fusion(self) -> bool | str:
        """The ``fuse`` argument of :func:`estimator.cost.kernels.fuse_kernels` for this runtime: True (every
        fusion rule), its ``fusion_rule`` (``"remapper"``, ``"bn-apart"``), False (one kernel per op) or
        ``"attention"`` (attention chains only)."""
        if self.fuses:
            return self.fusion_rule or True
        return "attention" if self.fuses_attention else False

    @property
    def constants_name(self) -> str:
        """The name its fitted host constants are stored and looked up under (``host_twin`` or its own)."""
        return self.host_twin or self.name


# Host times (estimated unless cited; every one fittable by estimator.energy.prior_fit).
_EAGER_OP = (
    "per-op CPU dispatch of eager PyTorch: Python ~1 us + pybind ~1 us + autograd/ATen dispatch 2-5 us + "
    "library call 1-5 us + cudaLaunchKernel 1-3 us = 5-25 us ('From PyTorch op to kernel launch', "
    "jiahuanglin.xyz gpu_kernel_serving lesson 18); 20 us taken (estimated: the upper middle, since an eager "
    "nn.Module adds its own call overhead and one ONNX node can be several eager kernels, e.g. BatchNorm "
    "folded into Conv by the export)"
)
_PIPELINE = (
    "transformers pipeline per call: tokenisation / image pre-processing, tensor conversion and "
    "post-processing (softmax, label mapping) on the host, estimated 3 ms"
)
_TF = (
    "TensorFlow/Keras graph execution (tf.function / model.predict): per-op executor overhead estimated "
    "10 us; per call (Keras predict data adapter, callbacks) estimated 1 ms"
)
_TF_GPU_FUSION = (
    "TensorFlow/Keras graph execution on a GPU without XLA: one kernel per op except grappler's remapper "
    "patterns (tensorflow/tensorflow @ 599ec86, tensorflow/core/grappler/optimizers/remapper.cc): "
    "_FusedConv2D = Conv2D + BiasAdd + Relu for float32 spatial (not 1x1) convolutions only "
    "(IsGpuCompatible(ContractionWithBiasAddAndActivation): IsRelu, is_spatial_conv, IsGpuCompatibleDataType; "
    "DepthwiseConv2dNative and, without TF_USE_CUBLASLT, MatMul are never fused on the GPU) and "
    "_FusedBatchNormEx = FusedBatchNorm + [same-shape side-input Add] + Relu for float and half "
    "(FindFusedBatchNormEx: the root must be a Relu, so Relu6 and swish after a BN are separate kernels); "
    "Conv2D + FusedBatchNorm is fused on the CPU only (FindConv2DWithBatchNorm requires NodeIsOnCpu); "
    "a Keras bias no _FusedConv2D takes is a BiasAdd kernel of its own (Conv.call / Dense.call add it with "
    "nn.bias_add). "
    "Keras 3 (TensorFlow 2.16 and later) compiles predict/evaluate with XLA on a GPU by default "
    "(keras-team/keras, keras/src/trainers/trainer.py, _resolve_auto_jit_compile), which fuses differently: runtime tensorflow-xla-gpu"
)
_LAUNCH_ONLY = "cudaLaunchKernel 1-3 us per kernel (same lesson 18); estimated 2 us"
_TF_XLA_GPU_FUSION = (
    "Keras 3 (TensorFlow 2.16 and later) on a GPU: model.predict compiles with XLA by default (jit_compile="
    "'auto' resolves to True when a GPU is visible; keras-team/keras @ 3194d55, keras/src/trainers/trainer.py, "
    "_resolve_auto_jit_compile). XLA runs each convolution as a cuDNN call (bias and activation fused into it) "
    "and fuses element-wise chains into loop kernels; Keras 3's BatchNormalization is element-wise ops (a "
    "multiply and an add, not a FusedBatchNorm), and their per-channel scale is not the scalar XLA's cuDNN "
    "conv rewriter folds, so each BN runs as a kernel apart from the conv, joined by the element-wise ops "
    "that read it alone or that meet again (a swish: priority fusion fuses a producer into all its users); "
    "Keras runs channels-last, so an NCHW <-> NHWC Transpose of a channels-first export costs nothing; a "
    "concatenation read only by batch norms (DenseNet's) is loop-fusible and fused into them, never written "
    "(bn-apart; estimator/cost/xla_fusion.py)"
)
_XLA = (
    "one XLA executable per predict step: its kernels are launched by XLA's runtime, not TensorFlow's per-op "
    "executor: " + _LAUNCH_ONLY + "; per call (Keras predict data adapter, callbacks) estimated 1 ms"
)
_VLLM = (
    "vLLM serving (Kwon et al., 'Efficient Memory Management for Large Language Model Serving with "
    "PagedAttention', SOSP 2023; docs.vllm.ai): continuous batching at the granularity of one decode step; "
    "the KV cache paged in blocks of 16 tokens and written in place (only the new token's keys and values per "
    "step; use a decoder spec with cache=paged); fused kernels (fused residual add + RMSNorm, SiLU-and-mul, "
    "rotary, paged attention) and merged QKV and gate/up projections; decode steps replayed from captured CUDA "
    "graphs (docs 'CUDA Graphs'; enforce_eager=False by default; V0 captured decode batches up to 256 "
    "sequences and ran larger ones eagerly)"
)
_VLLM_HOST = (
    "a replayed CUDA graph launches its kernels without host work: 0.5 us per kernel estimated; per engine "
    "step the scheduler, input preparation, sampling and output processing run in Python: 1 ms estimated. "
    "The vLLM v0.6.0 performance update (blog.vllm.ai, 2024-09-05) found the HTTP server (33%) and "
    "scheduling (29%) took most of the time for Llama 3 8B on one H100 in v0.5.3, so for versions before "
    "0.6 this is a lower bound. LLM requests (estimate llm) use the step-time model of estimator/llm/serving.py "
    "instead: host time per step growing with the batch and a factor on the decode GPU time, fitted on one "
    "GPU's ML.ENERGY v2 rows and judged on the other's"
)

#: FlashAttention-2 (Dao, arXiv:2307.08691): its forward kernel's rate per device is the profile's
#: ``fa2_compute_fraction``.
FLASH_ATTENTION_2 = "flash-attention-2"
_SDPA_FLASH = (
    "PyTorch's scaled_dot_product_attention tries its backends in a fixed order, flash attention first (an "
    "in-tree copy of FlashAttention-2: aten/src/ATen/native/transformers/cuda/sdp_utils.cpp, priority_order; "
    "'flash_attention V2 is universally faster than efficient_attention and Math'), which takes float16 and "
    "bfloat16 inputs with head size <= 256 on sm_80 to sm_90, sm_100 and sm_120 since pytorch/pytorch pull "
    "request 145602 (2025-01); float32 falls to the memory-efficient kernel. cuDNN attention was first in "
    "that order on H100 only in PyTorch 2.5.0 (made opt-in again by pull request 138522); pull request 162073 "
    "meant to put it first on sm_90 and sm_100 for 2.9, but the 2.9 wheels were built against cuDNN 9.8, below "
    "the 9.9 that needs, so it was not selected (pytorch/pytorch issue 165801): ML.ENERGY v3's torch 2.9.1 "
    "ran FlashAttention-2 on H100 and B200 (if a build selected cuDNN there, the attention kernels ran "
    "faster than this prior says)"
)
_HWNAS360 = (
    "HW-NAS-Bench-360 scripts/pi/bench_energy.py: 1 thread pinned to core 0 "
    "(see ../shared/datasets/hwnasbench360/PROVENANCE.md)"
)

#: Known runtimes by name.
RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("tflite", "cpu", 1, True, _HWNAS360 + "; TFLite fuses activations into convolutions"),
        Runtime(
            "onnxruntime", "cpu", 1, True, _HWNAS360 + "; ORT's graph optimizer fuses Conv+BN+activation"
        ),
        Runtime("torchscript-mobile", "cpu", 1, True, _HWNAS360 + "; optimize_for_mobile folds Conv+BN"),
        Runtime("pytorch-cpu", "cpu", None, False, "PyTorch eager: one thread per physical core, op by op"),
        Runtime(
            "onnxruntime-cpu", "cpu", None, True, "ONNX Runtime's default intra-op pool: a thread per core"
        ),
        Runtime(
            "pytorch-cuda",
            "gpu",
            None,
            False,
            "eager PyTorch on CUDA: one launch per op, whole GPU",
            host_dispatch_s=20e-6,
            host_call_s=0.0,
            host_source=_EAGER_OP,
        ),
        Runtime(
            "pytorch-cuda-sdpa",
            "gpu",
            None,
            False,
            "eager PyTorch 2.x on CUDA whose model calls torch.nn.functional.scaled_dot_product_attention "
            "(diffusers' default attention processor since 0.13, AttnProcessor2_0; Hugging Face transformers' "
            "default attn_implementation='sdpa' for the models that support it since 4.36): one fused flash or "
            "memory-efficient attention kernel (PyTorch 2.0 release notes, 'Accelerated Transformers'), the "
            "scores never written to memory; every other op one launch, as pytorch-cuda",
            host_dispatch_s=20e-6,
            host_call_s=0.0,
            host_source=_EAGER_OP,
            fuses_attention=True,
            host_twin="pytorch-cuda",
            attention_kernel=FLASH_ATTENTION_2,
            attention_source=_SDPA_FLASH,
        ),
        Runtime(
            "hf-pipeline",
            "gpu",
            None,
            False,
            "a Hugging Face transformers pipeline call at batch 1: eager PyTorch plus pre/post-processing",
            host_dispatch_s=20e-6,
            host_call_s=3e-3,
            host_source=_EAGER_OP + "; " + _PIPELINE,
        ),
        Runtime(
            "tensorflow-gpu",
            "gpu",
            None,
            True,
            _TF_GPU_FUSION,
            host_dispatch_s=10e-6,
            host_call_s=1e-3,
            host_source=_TF,
            fusion_rule="remapper",
        ),
        Runtime(
            "tensorflow-xla-gpu",
            "gpu",
            None,
            True,
            _TF_XLA_GPU_FUSION,
            host_dispatch_s=2e-6,
            host_call_s=1e-3,
            host_source=_XLA,
            fusion_rule="bn-apart",
        ),
        Runtime(
            "onnxruntime-cuda",
            "gpu",
            None,
            True,
            "ONNX Runtime CUDA execution provider, fused graph",
            host_dispatch_s=4e-6,
            host_call_s=50e-6,
            host_source="ORT executor per node ~2 us (estimated) + " + _LAUNCH_ONLY + "; Run() call ~50 us "
            "(estimated); with enable_cuda_graph the per-kernel cost disappears (not modelled)",
        ),
        Runtime(
            "tensorrt",
            "gpu",
            None,
            True,
            "TensorRT engine: layer and tensor fusion",
            host_dispatch_s=2e-6,
            host_call_s=20e-6,
            host_source=_LAUNCH_ONLY + "; enqueue per call estimated 20 us",
        ),
        Runtime(
            "vllm",
            "gpu",
            None,
            True,
            _VLLM,
            host_dispatch_s=0.5e-6,
            host_call_s=1e-3,
            host_source=_VLLM_HOST,
            attention_source="none named: vLLM's attention kernel depends on its version and the GPU. Before "
            "0.7 it ran FlashAttention-2 (vllm-flash-attn); from vLLM pull request 12093 (2025-01) it runs "
            "FlashAttention-3 on Hopper ('if hopper default to FA3, otherwise stick to FA2', "
            "get_flash_attn_version, pull request 14244); ML.ENERGY v2 (2024) ran the former, v3 (2025 models such "
            "as Qwen3) a vLLM of the latter kind. One runtime name covers both, so its attention is timed as "
            "any contraction",
        ),
    )
}


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; ProfileError listing the known ones otherwise."""
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ProfileError(
            f"unknown runtime '{name}'{did_you_mean(name, RUNTIMES)}; known runtimes: {', '.join(sorted(RUNTIMES))}"
        ) from None
