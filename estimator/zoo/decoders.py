"""Torch-free ONNX graphs of decoder-only LLMs with a KV cache: GPT-2-style and Llama-style at any size.

The graphs follow the layout of Hugging Face optimum's ``decoder_model_merged`` / ONNX Runtime GenAI exports:

* inputs ``input_ids[batch_size, sequence_length]`` (int64), ``attention_mask[batch_size,
  total_sequence_length]`` (int64, 1 = attend), ``position_ids[batch_size, sequence_length]`` (int64) and, with
  a cache, ``past_key_values.N.key`` / ``.value`` ``[batch_size, kv_heads, past_sequence_length, head_dim]``;
* outputs ``logits[batch_size, sequence_length, vocab]`` and, with a cache, ``present.N.key`` / ``.value``
  ``[batch_size, kv_heads, total_sequence_length, head_dim]`` (the past concatenated with the new keys).

``total_sequence_length`` is ``past_sequence_length + sequence_length``. Without a cache (``cache=False``) the
graph recomputes every position it is given, as a plain ``decoder_model.onnx`` does.

Layers, as the published models define them:

* **GPT-2** (Radford et al. 2019): learned position embeddings, pre-LayerNorm, fused ``c_attn`` (Q, K, V in one
  MatMul + bias, then Split), multi-head attention, GELU MLP of 4x hidden, LM head tied to the token embeddings.
* **Llama** (Touvron et al. 2023; Llama 3 adds grouped-query attention to every size): RMSNorm written as
  ``x / sqrt(mean(x^2) + eps) * g``, rotary position embeddings computed from ``position_ids`` (``cos``/``sin``
  of ``position * theta^(-2i/d)``, rotate-half form), grouped-query attention (``heads`` query heads share
  ``kv_heads`` key/value heads: the queries of one group are stacked so K/V are never repeated), SwiGLU MLP
  (``down(silu(gate(x)) * up(x))``), no biases, an untied LM head.

Weights are initializers whose data lives in an *absent* external file, so a 70B-parameter graph is a few
hundred kB and nothing ever reads the weights. ``quant="int4"`` / ``"int8"`` stores every linear layer of the
blocks (and the LM head unless ``quantize_head=False``) as ONNX Runtime's weight-only ``MatMulNBits`` with
``block_size`` blocks (packed ``uint8`` weights, one scale per block in the activation dtype, packed ``uint8``
zero points), as ``onnxruntime.quantization.matmul_4bits_quantizer`` writes them.

Specs (``decoder_from_spec``): ``zoo:<name>[;key=value]*`` with ``<name>`` a key of :data:`DECODERS` and keys
``cache=1|0|paged`` (``paged``: the in-place cache of vLLM, see :func:`decoder`), ``dtype=float32|float16|bfloat16``,
``quant=none|int4|int8``, ``block=32``, ``layers=N`` (a shortened model); e.g. ``zoo:llama-3.1-8b;quant=int4``.

Why this module is long: the two families share one builder (attention, cache, quantised linears), and the
published configurations, the tensor-parallel shard and the spec grammar describe that one builder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper

from estimator.errors import DataError
from estimator.zoo.decoder_configs import DECODERS, DecoderConfig

_ELEM = {
    "float32": (onnx.TensorProto.FLOAT, 4),
    "float16": (onnx.TensorProto.FLOAT16, 2),
    "bfloat16": (onnx.TensorProto.BFLOAT16, 2),
}
#: Node-name prefix of the nodes of block ``i``: ``layers.<i>/`` (as optimum scopes ``/model/layers.<i>/``).
LAYER_SCOPE = "layers."
#: Bits of the weight-only quantisation variants.
QUANT_BITS = {"none": 0, "int4": 4, "int8": 8}


class _Builder:
    """Nodes and initializers with unique names; weights are external data in an absent file."""

    def __init__(self, dtype: str) -> None:
        if dtype not in _ELEM:
            raise DataError(f"dtype {dtype!r} is not supported; use one of {', '.join(_ELEM)}")
        self.elem, self.elem_bytes = _ELEM[dtype]
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._offset = 0
        self._n = 0
        self._consts: dict[tuple, str] = {}
        #: Prefix of node names (``layers.3/`` while layer 3 is built), as exporters scope node names.
        self.scope = ""

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{self.scope}{stem}_{self._n}"

    def weight(self, stem: str, dims: list[int], elem: int | None = None, nbytes: int | None = None) -> str:
        elem = self.elem if elem is None else elem
        t = onnx.TensorProto(name=stem, data_type=elem, dims=dims)
        t.data_location = onnx.TensorProto.EXTERNAL
        length = nbytes if nbytes is not None else math.prod(dims) * self.elem_bytes
        for key, value in (
            ("location", "weights.bin"),
            ("offset", str(self._offset)),
            ("length", str(length)),
        ):
            t.external_data.add(key=key, value=value)
        self._offset += length
        self.inits.append(t)
        return stem

    def const(self, values, kind: str = "int64") -> str:
        """A small constant (shared): int64 shapes/axes, or a scalar in the model's float dtype."""
        key = (kind, repr(values))
        if key not in self._consts:
            name = self.name("const")
            if kind == "int64":
                tensor = onnx.numpy_helper.from_array(np.asarray(values, np.int64), name)
            elif kind == "float32":
                tensor = onnx.numpy_helper.from_array(np.asarray(values, np.float32), name)
            else:
                tensor = oh.make_tensor(name, self.elem, [], [float(values)])
            self.inits.append(tensor)
            self._consts[key] = name
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(oh.make_node(op_type, inputs, outs, name=outs[0], domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs


@dataclass(frozen=True)
class _Options:
    cache: bool
    paged: bool
    bits: int
    block: int
    quantize_head: bool


def _linear(b: _Builder, x: str, d_in: int, d_out: int, stem: str, opts: _Options, bias: bool) -> str:
    """``x @ W (+ b)``, or MatMulNBits with ``opts.bits``-bit block-quantised weights."""
    if opts.bits:
        blocks = -(-d_in // opts.block)
        blob = opts.block * opts.bits // 8
        w = b.weight(f"{stem}.weight_q", [d_out, blocks, blob], onnx.TensorProto.UINT8)
        s = b.weight(f"{stem}.scales", [d_out * blocks])
        zp_bytes = -(-blocks * opts.bits // 8)
        z = b.weight(f"{stem}.zero_points", [d_out * zp_bytes], onnx.TensorProto.UINT8)
        inputs = [x, w, s, z] + (["", "", b.weight(f"{stem}.bias", [d_out])] if bias else [])
        return b.op(
            "MatMulNBits",
            inputs,
            domain="com.microsoft",
            K=d_in,
            N=d_out,
            bits=opts.bits,
            block_size=opts.block,
        )
    y = b.op("MatMul", [x, b.weight(f"{stem}.weight", [d_in, d_out])])
    return b.op("Add", [y, b.weight(f"{stem}.bias", [d_out])]) if bias else y


def _layer_norm(b: _Builder, x: str, h: int, stem: str) -> str:
    return b.op(
        "LayerNormalization",
        [x, b.weight(f"{stem}.weight", [h]), b.weight(f"{stem}.bias", [h])],
        epsilon=1e-5,
    )


def _rms_norm(b: _Builder, x: str, h: int, stem: str) -> str:
    """``x / sqrt(mean(x^2) + eps) * g`` as exporters write Llama's RMSNorm before opset 23."""
    ms = b.op("ReduceMean", [b.op("Mul", [x, x])], axes=[-1], keepdims=1)
    r = b.op("Sqrt", [b.op("Add", [ms, b.const(1e-5, "dtype")])])
    return b.op("Mul", [b.op("Div", [x, r]), b.weight(f"{stem}.weight", [h])])


def _heads(b: _Builder, x: str, n: int, d: int) -> str:
    """``[b, s, n*d] -> [b, n, s, d]``."""
    return b.op("Transpose", [b.op("Reshape", [x, b.const([0, 0, n, d])])], perm=[0, 2, 1, 3])


def _rotary(b: _Builder, x: str, cos: str, sin: str, d: int) -> str:
    """``x * cos + rotate_half(x) * sin`` on ``[b, n, s, d]``; ``cos``/``sin`` are ``[b, 1, s, d]``."""
    half = d // 2
    x1 = b.op("Slice", [x, b.const([0]), b.const([half]), b.const([-1])])
    x2 = b.op("Slice", [x, b.const([half]), b.const([d]), b.const([-1])])
    rotated = b.op("Concat", [b.op("Neg", [x2]), x1], axis=-1)
    return b.op("Add", [b.op("Mul", [x, cos]), b.op("Mul", [rotated, sin])])


def _attention(
    b: _Builder, x: str, cfg: DecoderConfig, i: int, mask: str, rope: tuple[str, str] | None, opts: _Options
) -> tuple[str, str | None, str | None, list]:
    """One attention block; returns (output, present key, present value, past inputs)."""
    h, n, kv, d = cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim
    stem = f"model.layers.{i}.attn"
    bias = cfg.family == "gpt2"
    if cfg.family == "gpt2":
        qkv = _linear(b, x, h, 3 * n * d, f"{stem}.c_attn", opts, bias)
        q, k, v = b.op("Split", [qkv, b.const([n * d] * 3)], n_out=3, axis=-1)
    else:
        q = _linear(b, x, h, n * d, f"{stem}.q_proj", opts, bias)
        k = _linear(b, x, h, kv * d, f"{stem}.k_proj", opts, bias)
        v = _linear(b, x, h, kv * d, f"{stem}.v_proj", opts, bias)
    q, k, v = _heads(b, q, n, d), _heads(b, k, kv, d), _heads(b, v, kv, d)
    if rope is not None:
        q, k = _rotary(b, q, *rope, d), _rotary(b, k, *rope, d)
    past: list = []
    present_k = present_v = None
    if opts.cache:
        dims = ["batch_size", kv, "past_sequence_length", d]
        pk, pv = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        past = [oh.make_tensor_value_info(name, b.elem, dims) for name in (pk, pv)]
        if opts.paged:  # only the new keys/values leave the graph; the runtime appends them in place
            present_k, present_v = k, v
        else:
            k = present_k = b.op("Concat", [pk, k], axis=2)
            v = present_v = b.op("Concat", [pv, v], axis=2)
    groups = n // kv
    if groups > 1:  # the queries of one KV group stacked: [b, kv, groups * s, d]; K and V never repeated
        q = b.op("Reshape", [q, b.const([0, kv, -1, d])])
    scores = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])])
    if opts.cache and opts.paged:  # scores over the cache read where it lies (no transposed copy), then new
        cached = b.op("Einsum", [q, pk], equation="bkqd,bktd->bkqt")
        scores = b.op("Concat", [cached, scores], axis=-1)
    if groups > 1:
        scores = b.op("Reshape", [scores, b.const([0, n, -1, 0])])
    scores = b.op("Add", [b.op("Mul", [scores, b.const(1.0 / math.sqrt(d), "dtype")]), mask])
    probs = b.op("Softmax", [scores], axis=-1)
    if groups > 1:
        probs = b.op("Reshape", [probs, b.const([0, kv, -1, 0])])
    if opts.cache and opts.paged:
        cut = b.op("Shape", [pk], start=2, end=3)
        to_cache = b.op("Slice", [probs, b.const([0]), cut, b.const([-1])])
        to_new = b.op("Slice", [probs, cut, b.const([2**62]), b.const([-1])])
        ctx = b.op("Add", [b.op("MatMul", [to_cache, pv]), b.op("MatMul", [to_new, v])])
    else:
        ctx = b.op("MatMul", [probs, v])
    if groups > 1:
        ctx = b.op("Reshape", [ctx, b.const([0, n, -1, d])])
    ctx = b.op("Reshape", [b.op("Transpose", [ctx], perm=[0, 2, 1, 3]), b.const([0, 0, n * d])])
    out = _linear(b, ctx, n * d, h, f"{stem}.{'c_proj' if cfg.family == 'gpt2' else 'o_proj'}", opts, bias)
    return out, present_k, present_v, past


def _mlp(b: _Builder, x: str, cfg: DecoderConfig, i: int, opts: _Options) -> str:
    stem = f"model.layers.{i}.mlp"
    h, f = cfg.hidden, cfg.ffn
    if cfg.family == "gpt2":  # GELU with erf, as PyTorch exports it below opset 20
        y = _linear(b, x, h, f, f"{stem}.c_fc", opts, True)
        e = b.op("Erf", [b.op("Div", [y, b.const(math.sqrt(2.0), "dtype")])])
        g = b.op("Mul", [b.op("Mul", [y, b.op("Add", [e, b.const(1.0, "dtype")])]), b.const(0.5, "dtype")])
        return _linear(b, g, f, h, f"{stem}.c_proj", opts, True)
    gate = _linear(b, x, h, f, f"{stem}.gate_proj", opts, False)
    up = _linear(b, x, h, f, f"{stem}.up_proj", opts, False)
    act = b.op("Mul", [gate, b.op("Sigmoid", [gate])])
    return _linear(b, b.op("Mul", [act, up]), f, h, f"{stem}.down_proj", opts, False)


def _mask(b: _Builder) -> str:
    """Additive mask ``[b, 1, s, total]``: 0 where a query may attend (causal and ``attention_mask``), else a
    large negative."""
    s = b.op("Shape", ["input_ids"], start=1, end=2)
    t = b.op("Shape", ["attention_mask"], start=1, end=2)
    ones = b.op(
        "ConstantOfShape", [b.op("Concat", [s, t], axis=0)], value=oh.make_tensor("one", 9, [1], [True])
    )
    offset = b.op("Squeeze", [b.op("Sub", [t, s]), b.const([0])])
    causal = b.op("Trilu", [b.op("Cast", [ones], to=onnx.TensorProto.INT64), offset], upper=0)
    allowed = b.op(
        "Cast", [b.op("Mul", [causal, b.op("Unsqueeze", ["attention_mask", b.const([1, 2])])])], to=9
    )
    return b.op("Where", [allowed, b.const(0.0, "dtype"), b.const(-1e4, "dtype")])


def decoder(
    cfg: DecoderConfig,
    *,
    cache: bool = True,
    paged: bool = False,
    dtype: str = "float16",
    quant: str = "none",
    block: int = 32,
    quantize_head: bool = True,
    name: str = "decoder",
) -> onnx.ModelProto:
    """The ONNX graph of ``cfg`` in the optimum layout (see the module docstring); weights absent.

    Args:
        cache: with past key/value inputs and present outputs (True) or a plain cache-free decoder.
        paged: with a cache, the in-place layout (vLLM's paged cache): ``present.N.key/value`` hold only the
            new tokens' keys and values (``[batch, kv_heads, sequence_length, head_dim]``) for the runtime to
            append where the cache lies, and attention reads the cache once where it is (scores and the
            weighted sum split into a cached and a new part) instead of concatenating it into a new tensor.
        dtype: activations and float weights (``float32``, ``float16``, ``bfloat16``).
        quant: ``none``, ``int4`` or ``int8`` weight-only quantisation of the linear layers (MatMulNBits).
        block: quantisation block size along the input dimension (elements, >= 16, a power of two).
        quantize_head: also quantise the LM head (an untied one, or a copy of the tied table).
    """
    if quant not in QUANT_BITS:
        raise DataError(f"quant={quant!r} is not known; use one of {', '.join(QUANT_BITS)}")
    if cfg.heads % cfg.kv_heads or cfg.head_dim % 2 or (not cfg.head_size and cfg.hidden % cfg.heads):
        raise DataError(
            f"hidden {cfg.hidden}, heads {cfg.heads}, kv_heads {cfg.kv_heads} do not divide evenly"
        )
    if block < 16 or block & (block - 1):
        raise DataError(f"block={block} must be a power of two >= 16")
    opts = _Options(cache, paged and cache, QUANT_BITS[quant], block, quantize_head)
    b = _Builder(dtype)
    table = b.weight("model.embed_tokens.weight", [cfg.vocab, cfg.hidden])
    x = b.op("Gather", [table, "input_ids"])
    rope = None
    if cfg.family == "gpt2":
        x = b.op(
            "Add",
            [x, b.op("Gather", [b.weight("wpe.weight", [cfg.max_positions, cfg.hidden]), "position_ids"])],
        )
    else:
        half = cfg.head_dim // 2
        inv_freq = cfg.rope_theta ** (-np.arange(half, dtype=np.float64) * 2 / cfg.head_dim)
        pos = b.op("Unsqueeze", [b.op("Cast", ["position_ids"], to=onnx.TensorProto.FLOAT), b.const([-1])])
        freqs = b.op("Mul", [pos, b.const(inv_freq.tolist(), "float32")])
        emb = b.op("Unsqueeze", [b.op("Concat", [freqs, freqs], axis=-1), b.const([1])])
        rope = (b.op("Cast", [b.op("Cos", [emb])], to=b.elem), b.op("Cast", [b.op("Sin", [emb])], to=b.elem))
    mask = _mask(b)
    norm = _layer_norm if cfg.family == "gpt2" else _rms_norm
    past_inputs: list = []
    presents: list = []
    for i in range(cfg.layers):
        b.scope = f"{LAYER_SCOPE}{i}/"
        att, pk, pv, past = _attention(
            b, norm(b, x, cfg.hidden, f"model.layers.{i}.ln1"), cfg, i, mask, rope, opts
        )
        x = b.op("Add", [x, att])
        x = b.op("Add", [x, _mlp(b, norm(b, x, cfg.hidden, f"model.layers.{i}.ln2"), cfg, i, opts)])
        past_inputs += past
        if cache:
            presents += [(pk, f"present.{i}.key"), (pv, f"present.{i}.value")]
    b.scope = ""
    x = norm(b, x, cfg.hidden, "model.norm")
    if opts.bits and quantize_head:
        logits = _linear(b, x, cfg.hidden, cfg.vocab, "lm_head", opts, False)
    elif cfg.tied_embeddings:
        logits = b.op("MatMul", [x, b.op("Transpose", [table], perm=[1, 0])])
    else:
        logits = b.op("MatMul", [x, b.weight("lm_head.weight", [cfg.hidden, cfg.vocab])])
    b.nodes.append(oh.make_node("Identity", [logits], ["logits"], name="logits"))
    outputs = [oh.make_tensor_value_info("logits", b.elem, ["batch_size", "sequence_length", cfg.vocab])]
    kv_dims = [
        "batch_size",
        cfg.kv_heads,
        "sequence_length" if opts.paged else "total_sequence_length",
        cfg.head_dim,
    ]
    for src, out in presents:
        b.nodes.append(oh.make_node("Identity", [src], [out], name=out))
        outputs.append(oh.make_tensor_value_info(out, b.elem, kv_dims))
    i64 = onnx.TensorProto.INT64
    inputs = [
        oh.make_tensor_value_info("input_ids", i64, ["batch_size", "sequence_length"]),
        oh.make_tensor_value_info("attention_mask", i64, ["batch_size", "total_sequence_length"]),
        oh.make_tensor_value_info("position_ids", i64, ["batch_size", "sequence_length"]),
        *past_inputs,
    ]
    graph = oh.make_graph(b.nodes, name, inputs, outputs, b.inits)
    opsets = [oh.make_opsetid("", 17)] + ([oh.make_opsetid("com.microsoft", 1)] if opts.bits else [])
    return oh.make_model(graph, opset_imports=opsets, ir_version=8, producer_name="estimator.zoo")


def tensor_parallel_shard(cfg: DecoderConfig, devices: int) -> DecoderConfig:
    """The part of ``cfg`` one of ``devices`` GPUs holds under Megatron-LM tensor parallelism.

    Attention heads and the MLP's inner columns are split (column-parallel Q/K/V and up/gate projections,
    row-parallel output and down projections), the vocabulary of the embedding and the LM head is split
    (vocab-parallel), norms are replicated. Key/value heads fewer than ``devices`` are replicated (each GPU
    keeps one), as vLLM does for grouped-query attention.
    """
    if devices < 1 or cfg.heads % devices or cfg.ffn % devices:
        raise DataError(
            f"tensor parallelism over {devices} devices needs heads ({cfg.heads}) and MLP width ({cfg.ffn}) "
            "divisible by it"
        )
    kv = cfg.kv_heads // devices if cfg.kv_heads >= devices else 1
    if cfg.kv_heads >= devices and cfg.kv_heads % devices:
        raise DataError(f"{cfg.kv_heads} key/value heads do not split over {devices} devices")
    return replace(
        cfg,
        heads=cfg.heads // devices,
        kv_heads=kv,
        ffn=cfg.ffn // devices,
        vocab=-(-cfg.vocab // devices),
        head_size=cfg.head_dim,
    )


_SPEC_KEYS = {"cache": "1", "dtype": "float16", "quant": "none", "block": "32", "layers": ""}


@dataclass(frozen=True)
class DecoderSpec:
    """A parsed ``zoo:<name>[;key=value]*`` spec: the configuration and the build options."""

    name: str
    config: DecoderConfig
    cache: bool = True
    dtype: str = "float16"
    quant: str = "none"
    block: int = 32
    paged: bool = False

    def build(self, config: DecoderConfig | None = None) -> onnx.ModelProto:
        """The graph of this spec, or of ``config`` (a shard or a shortened copy) with the same options."""
        return decoder(
            config or self.config,
            cache=self.cache,
            paged=self.paged,
            dtype=self.dtype,
            quant=self.quant,
            block=self.block,
            name=self.name,
        )


def parse_decoder_spec(spec: str) -> DecoderSpec:
    """Parse ``zoo:<name>[;key=value]*`` (see the module docstring); raises DataError when malformed."""
    kind, colon, rest = spec.strip().partition(":")
    if kind != "zoo" or not colon:
        raise DataError(f"model spec {spec!r} is not 'zoo:<name>[;key=value]*' (e.g. 'zoo:llama-3.1-8b')")
    name, *pairs = rest.split(";")
    name = name.strip().lower()
    cfg = DECODERS.get(name)
    if cfg is None:
        raise DataError(f"unknown decoder {name!r} in {spec!r}; known: {', '.join(DECODERS)}")
    keys = dict(_SPEC_KEYS)
    for pair in pairs:
        key, eq, value = (p.strip() for p in pair.partition("="))
        if not eq or key not in _SPEC_KEYS or not value:
            allowed = ", ".join(f"{k}=" for k in _SPEC_KEYS)
            raise DataError(f"model spec {spec!r}: {pair!r} is not one of {allowed}")
        keys[key] = value
    try:
        block = int(keys["block"])
        if keys["layers"]:
            cfg = replace(cfg, layers=int(keys["layers"]))
    except ValueError as exc:
        raise DataError(f"model spec {spec!r}: block and layers must be integers") from exc
    if keys["cache"] not in ("0", "1", "paged"):
        raise DataError(f"model spec {spec!r}: cache must be 0, 1 or paged")
    if keys["dtype"] not in _ELEM or keys["quant"] not in QUANT_BITS or cfg.layers < 1:
        raise DataError(
            f"model spec {spec!r}: dtype must be one of {', '.join(_ELEM)}, quant one of "
            f"{', '.join(QUANT_BITS)}, layers >= 1"
        )
    cache = keys["cache"]
    return DecoderSpec(name, cfg, cache != "0", keys["dtype"], keys["quant"], block, cache == "paged")


def decoder_from_spec(spec: str) -> tuple[onnx.ModelProto, DecoderConfig]:
    """Build ``zoo:<name>[;key=value]*``; returns the graph and its configuration."""
    parsed = parse_decoder_spec(spec)
    return parsed.build(), parsed.config
