"""Torch-free ONNX graphs of transformer encoders (BERT-like) and decoder-only LLMs (GPT-2-like).

Weights are initializers whose data lives in an *absent* external file (``data_location = EXTERNAL``), so a
graph of billions of parameters is a few hundred kB and the estimator never needs the weights. Every op is
from the ONNX default domain (opset 17): MatMul, Add, LayerNormalization, Softmax, Gelu written with Erf,
Reshape/Transpose for heads. Dimensions may be static or symbolic (``batch``, ``seq``).

Node names carry the Hugging Face module path of the code that runs them, as PyTorch's exporter writes it
(``/encoder/layer.3/attention/self/query/matmul_41``: module ``encoder.layer.3.attention.self.query``), so a
measurement of one module (IrEne's module rows) maps to the nodes that implement it and the per-module report
groups them. Tensor names and costs do not depend on these names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper

_F = onnx.TensorProto.FLOAT


def scoped_node_name(module: str, name: str) -> str:
    """A node name under the dotted module path ``module`` as PyTorch's exporter writes it: one ``/`` scope per
    module, a list index kept with its list (``encoder.layer.3.attention`` -> ``/encoder/layer.3/attention/``),
    then ``name``; ``name`` alone for the model itself (``module`` empty)."""
    if not module:
        return name
    scopes: list[str] = []
    for part in module.split("."):
        if part.isdigit() and scopes:
            scopes[-1] += f".{part}"
        else:
            scopes.append(part)
    return "/" + "/".join(scopes) + "/" + name


class _Builder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, weight_file: str) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.weight_file = weight_file
        self._offset = 0
        self._n = 0
        self.scope = ""  # dotted module path of the nodes being added ("" = the model itself)
        self.fused_gelu = False  # one com.microsoft Gelu node instead of the five-node Erf form

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def weight(self, stem: str, dims: list[int]) -> str:
        """A float32 initializer whose data sits in the (absent) external weight file."""
        name = self.name(stem)
        t = onnx.TensorProto(name=name, data_type=_F, dims=dims)
        t.data_location = onnx.TensorProto.EXTERNAL
        length = math.prod(dims) * 4
        for key, value in (
            ("location", self.weight_file),
            ("offset", str(self._offset)),
            ("length", str(length)),
        ):
            t.external_data.add(key=key, value=value)
        self._offset += length
        self.inits.append(t)
        return name

    def const(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        self.inits.append(onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    @contextmanager
    def scoped(self, path: str) -> Iterator[None]:
        """Nodes added inside are named under the module ``path`` (a full dotted path, e.g. ``h.3.attn``)."""
        outer, self.scope = self.scope, path
        try:
            yield
        finally:
            self.scope = outer

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(
            oh.make_node(op_type, inputs, [out], name=scoped_node_name(self.scope, out), **attrs)
        )
        return out

    def linear(self, x: str, d_in: int, d_out: int, stem: str, module: str | None = None) -> str:
        """``x @ W + b``; its nodes named under ``module`` when given (else the current scope)."""
        with self.scoped(module if module is not None else self.scope):
            y = self.op("MatMul", [x, self.weight(f"{stem}.weight", [d_in, d_out])])
            return self.op("Add", [y, self.weight(f"{stem}.bias", [d_out])])

    def layer_norm(self, x: str, hidden: int, stem: str, module: str | None = None) -> str:
        with self.scoped(module if module is not None else self.scope):
            return self.op(
                "LayerNormalization",
                [x, self.weight(f"{stem}.gamma", [hidden]), self.weight(f"{stem}.beta", [hidden])],
                axis=-1,
                epsilon=1e-5,
            )

    def gelu(self, x: str) -> str:
        """0.5 * x * (1 + erf(x / sqrt(2))), as PyTorch exports nn.GELU at opset < 20; with ``fused_gelu`` one
        ``com.microsoft`` Gelu node (the same FLOPs, one kernel and one pass over memory, as eager PyTorch's
        ``F.gelu`` runs it)."""
        if self.fused_gelu:
            out = self.name("gelu")
            self.nodes.append(
                oh.make_node(
                    "Gelu", [x], [out], name=scoped_node_name(self.scope, out), domain="com.microsoft"
                )
            )
            return out
        scaled = self.op("Div", [x, self.const("sqrt2", np.array(math.sqrt(2.0), np.float32))])
        e = self.op("Erf", [scaled])
        one = self.op("Add", [e, self.const("one", np.array(1.0, np.float32))])
        xm = self.op("Mul", [x, one])
        return self.op("Mul", [xm, self.const("half", np.array(0.5, np.float32))])

    def attention(
        self,
        x: str,
        hidden: int,
        heads: int,
        stem: str,
        causal_mask: str | None,
        modules: tuple[str, str, str, str] | None = None,
        out_module: str | None = None,
    ) -> str:
        """Multi-head self-attention with its output projection. ``modules`` names the module paths of the
        attention core and of the query, key and value projections, ``out_module`` that of the output
        projection; None keeps the current scope."""
        d = hidden // heads
        core, q_mod, k_mod, v_mod = modules or (self.scope,) * 4
        o_mod = self.scope if out_module is None else out_module
        split = self.const("heads_shape", np.array([0, 0, heads, d], np.int64))
        merged = self.const("merged_shape", np.array([0, 0, hidden], np.int64))
        with self.scoped(core):
            return self._attention(
                x, hidden, d, stem, causal_mask, split, merged, (q_mod, k_mod, v_mod, o_mod)
            )

    def _attention(self, x, hidden, d, stem, causal_mask, split, merged, linears) -> str:
        q_mod, k_mod, v_mod, o_mod = linears
        q = self.op(
            "Transpose",
            [self.op("Reshape", [self.linear(x, hidden, hidden, f"{stem}.q", q_mod), split])],
            perm=[0, 2, 1, 3],
        )
        k = self.op(
            "Transpose",
            [self.op("Reshape", [self.linear(x, hidden, hidden, f"{stem}.k", k_mod), split])],
            perm=[0, 2, 3, 1],
        )
        v = self.op(
            "Transpose",
            [self.op("Reshape", [self.linear(x, hidden, hidden, f"{stem}.v", v_mod), split])],
            perm=[0, 2, 1, 3],
        )
        scores = self.op("MatMul", [q, k])
        scores = self.op("Div", [scores, self.const("scale", np.array(math.sqrt(d), np.float32))])
        if causal_mask is not None:
            scores = self.op("Add", [scores, causal_mask])
        probs = self.op("Softmax", [scores], axis=-1)
        ctx = self.op("MatMul", [probs, v])
        ctx = self.op("Reshape", [self.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merged])
        return self.linear(ctx, hidden, hidden, f"{stem}.o", o_mod)

    def model(self, inputs, outputs, name: str) -> onnx.ModelProto:
        graph = oh.make_graph(self.nodes, name, inputs, outputs, self.inits)
        opsets = [oh.make_opsetid("", 17)] + (
            [oh.make_opsetid("com.microsoft", 1)] if self.fused_gelu else []
        )
        return oh.make_model(graph, opset_imports=opsets, producer_name="estimator.zoo")


def bert_encoder(
    layers: int = 12,
    hidden: int = 768,
    heads: int = 12,
    ffn: int = 3072,
    vocab: int = 30522,
    max_positions: int = 512,
    batch: int | str = "batch",
    seq: int | str = "seq",
    *,
    token_types: int = 0,
    pooler: bool = False,
    naming: str = "bert",
    fused_gelu: bool = False,
) -> onnx.ModelProto:
    """A BERT-style post-LayerNorm encoder (embeddings + ``layers`` blocks), input ``input_ids[batch, seq]``.

    Defaults are BERT-base; BERT-large is ``layers=24, hidden=1024, heads=16, ffn=4096``. Integer ``batch``/
    ``seq`` give static dimensions, strings symbolic ones. ``token_types`` > 0 adds the token-type embedding
    (a Gather of row 0 and an Add, as Hugging Face's BertModel does with all-zero token types); ``pooler``
    adds the pooler of Hugging Face's BertModel (first token -> Linear(hidden, hidden) -> Tanh), output 2.
    ``naming`` = ``"bert"`` or ``"distilbert"``: whose module paths name the nodes (BertModel's
    ``encoder.layer.N.attention.self`` ..., or DistilBertModel's ``transformer.layer.N.attention`` ...); the
    graph is the same. ``fused_gelu`` writes each GELU as one ``com.microsoft`` Gelu node (as eager PyTorch runs
    ``F.gelu``: one kernel) instead of the five ONNX nodes of the Erf form.
    """
    if naming not in ("bert", "distilbert"):
        raise ValueError(f"naming must be 'bert' or 'distilbert', not {naming!r}")
    b = _Builder("bert_weights.bin")
    b.fused_gelu = fused_gelu
    ids = "input_ids"
    with b.scoped("embeddings.word_embeddings"):
        word = b.op("Gather", [b.weight("word_embeddings", [vocab, hidden]), ids])
    with b.scoped("embeddings"):
        pos_ids = b.op(
            "Range",
            [
                b.const("zero", np.array(0, np.int64)),
                b.op("Gather", [b.op("Shape", [ids]), b.const("one_i", np.array(1, np.int64))]),
                b.const("step", np.array(1, np.int64)),
            ],
        )
    with b.scoped("embeddings.position_embeddings"):
        pos = b.op("Gather", [b.weight("position_embeddings", [max_positions, hidden]), pos_ids])
    with b.scoped("embeddings"):
        embedded = b.op("Add", [word, pos])
    if token_types > 0:
        # all-zero token types, made by BertModel.forward itself (outside the embeddings module)
        zero_types = b.op("Mul", [ids, b.const("zero_ids", np.array(0, np.int64))])
        with b.scoped("embeddings.token_type_embeddings"):
            types = b.op("Gather", [b.weight("token_type_embeddings", [token_types, hidden]), zero_types])
        with b.scoped("embeddings"):
            embedded = b.op("Add", [embedded, types])
    x = b.layer_norm(embedded, hidden, "embeddings.ln", "embeddings.LayerNorm")
    for i in range(layers):
        x = (_distilbert_layer if naming == "distilbert" else _bert_layer)(b, x, i, hidden, heads, ffn)
    out = b.op("Identity", [x])
    outputs = [oh.make_tensor_value_info(out, _F, [batch, seq, hidden])]
    if pooler:
        with b.scoped("pooler"):
            first = b.op("Gather", [out, b.const("first_token", np.array(0, np.int64))], axis=1)
        dense = b.linear(first, hidden, hidden, "pooler.dense", "pooler.dense")
        with b.scoped("pooler.activation"):
            pooled = b.op("Tanh", [dense])
        outputs.append(oh.make_tensor_value_info(pooled, _F, [batch, hidden]))
    return b.model(
        [oh.make_tensor_value_info(ids, onnx.TensorProto.INT64, [batch, seq])],
        outputs,
        f"bert_{layers}x{hidden}",
    )


def gpt2_decoder(
    layers: int = 12,
    hidden: int = 768,
    heads: int = 12,
    vocab: int = 50257,
    max_positions: int = 1024,
    batch: int | str = "batch",
    seq: int = 128,
    *,
    lm_head: bool = True,
    post_ln: bool = False,
) -> onnx.ModelProto:
    """A GPT-2-style pre-LayerNorm decoder-only LM with a tied LM head, input ``input_ids[batch, seq]``.

    Defaults are GPT-2 small (124M parameters); GPT-2 XL is ``layers=48, hidden=1600, heads=25``.
    The causal mask is a constant ``[seq, seq]`` additive mask, so ``seq`` is static. ``lm_head=False`` ends
    at the hidden states, as Hugging Face's GPT2Model (AutoModel) does. ``post_ln=True`` is the original GPT
    (OpenAI-GPT): LayerNorm after each residual Add and no final LayerNorm.
    """
    b = _Builder("gpt2_weights.bin")
    ids = "input_ids"
    word_module, pos_module = ("tokens_embed", "positions_embed") if post_ln else ("wte", "wpe")
    table = b.weight("wte", [vocab, hidden])
    with b.scoped(word_module):
        word = b.op("Gather", [table, ids])
    with b.scoped(pos_module):
        pos = b.op("Gather", [b.weight("wpe", [max_positions, hidden]), b.const("positions", np.arange(seq))])
    mask = b.const("causal_mask", np.triu(np.full((seq, seq), -1e9, np.float32), k=1))
    x = b.op("Add", [word, pos])
    for i in range(layers):
        x = _gpt_block(b, x, i, hidden, heads, mask, post_ln)
    if not post_ln:
        x = b.layer_norm(x, hidden, "ln_f", "ln_f")
    if not lm_head:
        out = b.op("Identity", [x])
        return b.model(
            [oh.make_tensor_value_info(ids, onnx.TensorProto.INT64, [batch, seq])],
            [oh.make_tensor_value_info(out, _F, [batch, seq, hidden])],
            f"gpt_{layers}x{hidden}",
        )
    logits = b.op("MatMul", [x, b.op("Transpose", [table], perm=[1, 0])])
    return b.model(
        [oh.make_tensor_value_info(ids, onnx.TensorProto.INT64, [batch, seq])],
        [oh.make_tensor_value_info(logits, _F, [batch, seq, vocab])],
        f"gpt2_{layers}x{hidden}",
    )


def _bert_layer(b: _Builder, x: str, i: int, hidden: int, heads: int, ffn: int) -> str:
    """One post-LayerNorm encoder layer named as BertLayer ``encoder.layer.i``."""
    m = f"encoder.layer.{i}"
    att = b.attention(
        x,
        hidden,
        heads,
        f"layer{i}.attention",
        None,
        (f"{m}.attention.self", *(f"{m}.attention.self.{n}" for n in ("query", "key", "value"))),
        f"{m}.attention.output.dense",
    )
    with b.scoped(f"{m}.attention.output"):
        x = b.layer_norm(b.op("Add", [x, att]), hidden, f"layer{i}.ln1", f"{m}.attention.output.LayerNorm")
    with b.scoped(f"{m}.intermediate"):
        h = b.gelu(b.linear(x, hidden, ffn, f"layer{i}.ffn1", f"{m}.intermediate.dense"))
    with b.scoped(f"{m}.output"):
        f = b.linear(h, ffn, hidden, f"layer{i}.ffn2", f"{m}.output.dense")
        return b.layer_norm(b.op("Add", [x, f]), hidden, f"layer{i}.ln2", f"{m}.output.LayerNorm")


def _distilbert_layer(b: _Builder, x: str, i: int, hidden: int, heads: int, ffn: int) -> str:
    """The same layer named as DistilBERT's TransformerBlock ``transformer.layer.i``."""
    m = f"transformer.layer.{i}"
    att = b.attention(
        x,
        hidden,
        heads,
        f"layer{i}.attention",
        None,
        (f"{m}.attention", *(f"{m}.attention.{n}" for n in ("q_lin", "k_lin", "v_lin"))),
        f"{m}.attention.out_lin",
    )
    with b.scoped(m):
        x = b.layer_norm(b.op("Add", [x, att]), hidden, f"layer{i}.ln1", f"{m}.sa_layer_norm")
    with b.scoped(f"{m}.ffn"):
        h = b.gelu(b.linear(x, hidden, ffn, f"layer{i}.ffn1", f"{m}.ffn.lin1"))
        f = b.linear(h, ffn, hidden, f"layer{i}.ffn2", f"{m}.ffn.lin2")
    with b.scoped(m):
        return b.layer_norm(b.op("Add", [x, f]), hidden, f"layer{i}.ln2", f"{m}.output_layer_norm")


def _gpt_block(b: _Builder, x: str, i: int, hidden: int, heads: int, mask: str, post_ln: bool) -> str:
    """One decoder block named as GPT-2's Block ``h.i`` (pre-LayerNorm) or OpenAI-GPT's (``post_ln``). The
    query, key and value projections stand for the one ``c_attn`` projection of the original."""
    m = f"h.{i}"
    names = (f"{m}.attn", f"{m}.attn.c_attn", f"{m}.attn.c_attn", f"{m}.attn.c_attn")
    with b.scoped(m):
        if post_ln:
            att = b.attention(x, hidden, heads, f"h{i}.attn", mask, names, f"{m}.attn.c_proj")
            x = b.layer_norm(b.op("Add", [x, att]), hidden, f"h{i}.ln1", f"{m}.ln_1")
        else:
            normed = b.layer_norm(x, hidden, f"h{i}.ln1", f"{m}.ln_1")
            x = b.op(
                "Add", [x, b.attention(normed, hidden, heads, f"h{i}.attn", mask, names, f"{m}.attn.c_proj")]
            )
            x_in = b.layer_norm(x, hidden, f"h{i}.ln2", f"{m}.ln_2")
        with b.scoped(f"{m}.mlp"):
            h = b.gelu(b.linear(x if post_ln else x_in, hidden, 4 * hidden, f"h{i}.fc", f"{m}.mlp.c_fc"))
            f = b.linear(h, 4 * hidden, hidden, f"h{i}.proj", f"{m}.mlp.c_proj")
        x = b.op("Add", [x, f])
        return b.layer_norm(x, hidden, f"h{i}.ln2", f"{m}.ln_2") if post_ln else x
