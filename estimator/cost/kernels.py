"""Fusion of nodes into the kernels a runtime launches, and the memory traffic of each kernel.

nn-Meter showed that summing per operator instead of per fused kernel halves accuracy on GPUs: a tensor
produced and consumed inside one kernel never travels to memory. The rules below are those that cuDNN /
ONNX Runtime / TensorRT / torch.compile apply to inference graphs; they are deliberately conservative
(a tensor with several consumers is always written):

* **Epilogue fusion.** A contraction (Conv, Gemm, MatMul, ...) absorbs the chain of elementwise ops
  that follows it (bias add, BatchNormalization in inference, activation, residual add): Conv+BN+ReLU.
  With ``fuse="bn-apart"`` (Keras 3 compiled by XLA on a GPU) a BatchNormalization never joins an earlier
  kernel: it opens its own, which the elementwise ops after it may join (BN+Relu, BN+Add+Relu), a diamond of
  elementwise ops included (BN+swish), and NCHW <-> NHWC Transposes are views (:mod:`estimator.cost.xla_fusion`).
  ``fuse="remapper"`` (TensorFlow graph execution on a GPU) applies none of these rules: one kernel per op
  but grappler's remapper patterns (float32 spatial Conv+bias+Relu; BN+[Add]+Relu); a bias no pattern takes
  is a BiasAdd launch of its own.
* **Elementwise chains.** Consecutive elementwise ops form one kernel.
* **Normalisation/reduction epilogues.** Softmax, LayerNorm and reductions absorb following elementwise ops.
* **Attention.** ``MatMul(Q, K^T) -> [scale] -> [mask add] -> Softmax -> MatMul(P, V)`` is one kernel (the
  flash-attention pattern): the score matrix stays on chip.
* **Views are free.** Zero-copy ops (Reshape, Squeeze, ...) join their producer's kernel and launch nothing;
  a tensor seen through a view escapes the kernel if any view of it does.
* Folded nodes (constants) are not in any kernel.

A fusion joins a kernel only through a tensor that has exactly one consumer (views resolved), and only the
latest kernel among the node's producers, so that kernels stay in an order they can run in.
"""

from __future__ import annotations

from collections.abc import Mapping

from estimator.cost.kernel_report import (  # noqa: F401  (re-exported: the kernels' public names)
    _ARRAY_FIELDS,
    _FUSION_TRACE,
    MATRIX_KINDS,
    FusionTrace,
    Kernel,
    KernelReport,
    _int_columns_of_rows,
)
from estimator.cost.nodes import CostReport, NodeCost
from estimator.cost.op_kinds import CONTRACTION_OPS, ELEMENTWISE_OPS, REDUCTION_OPS
from estimator.cost.remapper import BATCH_NORM, remapper_grouping
from estimator.cost.xla_fusion import (
    as_views,
    closes_elementwise,
    fused_concats,
    layout_transposes,
    splice_concats,
)
from estimator.graph.structure import frozen_record

_SOFTMAX = frozenset({"Softmax"})
_MATMUL = frozenset({"MatMul", "FusedMatMul"})


#: The category of each op that has one (a zero-cost node is a view; any other op is "other"): a contraction
#: before an elementwise op before a reduction, for an op in two sets.
_CATEGORY_OF = {
    **{op: "reduction" for op in REDUCTION_OPS},
    **{op: "elementwise" for op in ELEMENTWISE_OPS},
    **{op: "contraction" for op in CONTRACTION_OPS},
}


def _is_elementwise(n: NodeCost) -> bool:
    """Whether a node computes and is element-wise (a BatchNormalization, which opens a kernel under
    bn-apart, is not taken as one)."""
    return n.status == "costed" and n.op_type != BATCH_NORM and _CATEGORY_OF.get(n.op_type) == "elementwise"


#: The values of :func:`fuse_kernels`' ``fuse``: every rule, none (eager), attention chains only, every rule but
#: with each BatchNormalization opening its own kernel, or only the patterns of TensorFlow's grappler remapper on
#: a GPU (graph execution without XLA).
FUSE_MODES = (True, False, "attention", "bn-apart", "remapper")


def fuse_kernels(report: CostReport, *, fuse: bool | str = True) -> KernelReport:
    """Group the nodes of ``report`` into kernels and account the bytes that cross kernel boundaries.

    With ``fuse=False`` (an eager runtime) every node that computes is its own kernel; views still launch
    nothing and constants are still folded. With ``fuse="attention"`` (eager PyTorch whose models call
    ``scaled_dot_product_attention``: one flash or memory-efficient kernel) each full attention chain
    ``MatMul(Q, K^T) -> [scale, mask] -> Softmax -> MatMul(P, V)`` is one kernel, as with ``fuse=True``, and
    every other node is its own kernel, as with ``fuse=False``. With ``fuse="bn-apart"`` (Keras 3 compiled by XLA on a
    GPU: the convolution is a cuDNN call that takes no per-channel batch normalisation) every rule of ``fuse=True`` applies, except that a
    BatchNormalization never joins the kernel of what it reads: it starts a kernel of its own, reading its
    input from memory, and the elementwise ops after it may join that kernel as they join any other; a tensor
    read by several elementwise ops that meet again (a swish) joins a loop kernel whole, a rank-4 Transpose
    between NCHW and NHWC is a view, and a Concat read only by batch norms (DenseNet's) is fused into them,
    which read its pieces (see :mod:`estimator.cost.xla_fusion`).
    With ``fuse="remapper"`` (TensorFlow graph execution on a GPU without XLA) every node that computes is its
    own kernel except the patterns grappler's remapper rewrites there (see :func:`estimator.cost.remapper.remapper_grouping`);
    a Conv or Gemm bias that no pattern takes costs one more launch and a round trip of the output.
    """
    if fuse not in FUSE_MODES or (isinstance(fuse, int) and not isinstance(fuse, bool)):
        raise ValueError(f"fuse must be one of {FUSE_MODES}, not {fuse!r}")
    graph = report.graph
    nodes = report.nodes
    bn_apart = fuse == "bn-apart"
    if bn_apart:  # Keras runs channels-last: an NCHW <-> NHWC Transpose of a channels-first export is a view
        free = layout_transposes(graph, nodes)
        if free:
            nodes = as_views(nodes, free)
    # bn-apart: a Concat read only by batch norms is fused into them; they read its pieces (xla_fusion)
    spliced_concats = fused_concats(graph, nodes) if bn_apart else frozenset()
    pieces: dict[str, tuple[str, ...]] = {}
    if spliced_concats:
        nodes, pieces = splice_concats(graph, nodes, spliced_concats)
    by_index = {n.index: n for n in nodes}
    view_of: dict[str, str] = {}  # view output -> the tensor it aliases
    consumers: dict[str, list[int]] = {}
    constant_roots = graph.constant_roots  # Graph.is_constant, read without a call per input
    reads: dict[int, list[str]] = {}  # node -> the run-time tensors (not constants) it reads
    for n, gn in zip(nodes, graph.nodes, strict=True):
        if n.status == "folded":
            continue
        runtime_inputs = reads[n.index] = []
        if n.index in spliced_concats:
            continue  # fused into its readers: it reads nothing and aliases nothing
        for name in gn.inputs:
            if not name:
                continue
            for piece in pieces.get(name, (name,)):
                consumers.setdefault(piece, []).append(n.index)
                if piece not in constant_roots:
                    runtime_inputs.append(piece)
        if n.status == "zero-cost" and gn.inputs and gn.inputs[0] and gn.outputs:
            for out in gn.outputs:
                if out:
                    view_of[out] = gn.inputs[0]

    # Each view output resolved once to the tensor it finally aliases: a root is then one dict look-up.
    root_of: dict[str, str] = {}
    for out in view_of:
        t = out
        while t in view_of:
            t = view_of[t]
        root_of[out] = t
    root_get = root_of.get

    # Consumers of each root tensor, through views, excluding the views themselves.
    real_consumers: dict[str, list[int]] = {}
    for t, cs in consumers.items():
        for c in cs:
            if by_index[c].status != "zero-cost":
                real_consumers.setdefault(root_get(t, t), []).append(c)
    graph_outputs = {root_get(o, o) for o in graph.outputs}

    category_of = _CATEGORY_OF.get
    producers = graph.producers
    diamonds: dict[str, bool] = {}  # bn-apart: root tensor -> whether XLA fuses its readers' region whole

    def diamond(t: str) -> bool:
        r = root_get(t, t)
        closes = diamonds.get(r)
        if closes is None:
            closes = diamonds[r] = closes_elementwise(
                r, graph, nodes, reads, root_get, real_consumers, graph_outputs, _is_elementwise
            )
        return closes

    def grouping(fusing: bool, attention_only: bool, chain_of: Mapping[int, int]):
        """(group of each node, members of each group, kind of each group). ``attention_only``: only the joins
        that build an attention chain; ``chain_of``: node -> the attention chain it belongs to (kept whole
        while every other node stays alone)."""
        group: dict[int, int] = {}
        members: list[list[int]] = []
        kinds: list[str] = []
        open_for_epilogue: list[bool] = []
        chain_group: dict[int, int] = {}

        def producer_group(t: str) -> int | None:
            p = producers.get(root_get(t, t))
            return group.get(nodes[p].index) if p is not None and nodes[p].status != "folded" else None

        def single_use(t: str) -> bool:
            r = root_get(t, t)
            return len(real_consumers.get(r, ())) == 1 and r not in graph_outputs

        def new_group(idx: int, kind: str) -> None:
            group[idx] = len(members)
            members.append([idx])
            kinds.append(kind)
            open_for_epilogue.append(kind in ("contraction", "elementwise", "reduction", "attention-scores"))

        for n in nodes:
            if n.status == "folded":
                continue
            cat = "view" if n.status == "zero-cost" else category_of(n.op_type, "other")
            runtime_inputs = reads[n.index]
            if cat == "view":
                g = producer_group(runtime_inputs[0]) if runtime_inputs else None
                if g is None:
                    new_group(n.index, "view")
                else:
                    group[n.index] = g
                    members[g].append(n.index)
                continue
            target = None
            if not fusing:
                chain = chain_of.get(n.index)
                if chain is None:
                    new_group(n.index, cat)
                elif chain in chain_group:
                    group[n.index] = chain_group[chain]
                    members[chain_group[chain]].append(n.index)
                else:
                    chain_group[chain] = len(members)
                    new_group(n.index, "attention")
                continue
            if bn_apart and n.op_type == BATCH_NORM:
                pass  # a kernel of its own (target stays None)
            elif cat in ("elementwise",) or (n.op_type in _SOFTMAX) or n.op_type in _MATMUL:
                # A node may only join the latest kernel among its inputs' producers: joining an earlier one while
                # it also reads a later kernel's output would run it before that output exists.
                producer_groups = {}
                latest = None
                for t in runtime_inputs:
                    g = producer_groups[t] = producer_group(t)
                    if g is not None and (latest is None or g > latest):
                        latest = g
                for t in runtime_inputs:
                    g = producer_groups[t]
                    if g is None or g != latest or not open_for_epilogue[g]:
                        continue
                    if not single_use(t) and not (
                        bn_apart and cat == "elementwise" and kinds[g] == "elementwise" and diamond(t)
                    ):
                        continue
                    joins = (
                        (cat == "elementwise" and (not attention_only or kinds[g].startswith("attention-")))
                        or (n.op_type in _SOFTMAX and kinds[g] == "attention-scores")
                        or (
                            n.op_type in _MATMUL
                            and kinds[g] == "attention-softmax"
                            and t == runtime_inputs[0]
                        )
                    )
                    if joins:
                        target = g
                        break
            if target is None:
                kind = cat
                if n.op_type in _MATMUL and len(runtime_inputs) == 2:
                    kind = "attention-scores"  # may become attention if a Softmax and a second MatMul follow
                new_group(n.index, kind)
                continue
            group[n.index] = target
            members[target].append(n.index)
            if n.op_type in _SOFTMAX:
                kinds[target] = "attention-softmax"
            elif n.op_type in _MATMUL:
                kinds[target] = "attention"
                open_for_epilogue[target] = not attention_only
        return group, members, kinds

    bias_apart: Mapping[int, int] = {}
    if fuse == "remapper":
        group, members, kinds, bias_apart = remapper_grouping(
            graph, nodes, reads, root_get, real_consumers, graph_outputs, _CATEGORY_OF
        )
    elif fuse == "attention":
        _, chains, chain_kinds = grouping(True, True, {})
        chain_of = {i: c for c, idxs in enumerate(chains) if chain_kinds[c] == "attention" for i in idxs}
        group, members, kinds = grouping(False, False, chain_of)
    else:
        group, members, kinds = grouping(bool(fuse), False, {})

    kernels = []
    trace = FusionTrace(groups=members, root_of=root_of)
    for k, idxs in enumerate(members):
        kernels.append(
            _make_kernel(
                k,
                idxs,
                kinds[k],
                by_index,
                reads,
                graph.producers,
                root_of,
                real_consumers,
                graph_outputs,
                trace,
                bias_apart.get(k, 0),
            )
        )
    out = KernelReport(report, tuple(kernels), dict(group), dict(view_of))
    out._derived[_FUSION_TRACE] = trace
    return out


def _make_kernel(
    k: int,
    idxs: list[int],
    kind: str,
    by_index: Mapping[int, NodeCost],
    reads: Mapping[int, list[str]],
    producers: Mapping[str, int],
    root_of: Mapping[str, str],
    real_consumers: Mapping[str, list[int]],
    graph_outputs: set[str],
    trace: FusionTrace,
    bias_round_trip: int = 0,
) -> Kernel:
    """The kernel of nodes ``idxs`` (``k``-th in launch order; ``reads``: each node's run-time inputs); what it
    is made of is appended to ``trace``. ``bias_round_trip`` > 0: the bytes of an output that a separate bias
    kernel reads and writes again (one more launch; TensorFlow's BiasAdd, ``fuse="remapper"``)."""
    first = by_index[idxs[0]]
    inside = set(idxs)
    root_get = root_of.get  # a view's output -> the tensor it aliases; any other tensor is its own root
    if kind == "attention-scores":
        kind = "contraction"
    elif kind == "attention-softmax":
        kind = "attention" if len(idxs) > 2 else "contraction"
    weight = activation = write = macs = flops = params = param_bytes = 0
    seen: set[str] = set()
    names = []  # op types of the members that compute
    anchor = None
    member_flops, member_ops = trace.member_flops, trace.member_ops
    write_tensors, write_bytes, write_steps = trace.write_tensors, trace.write_bytes, trace.write_steps
    last_read = trace.last_read  # kernels come in launch order: each tensor ends at its last reading kernel
    for i in idxs:
        n = by_index[i]
        for t in reads[i]:
            last_read[t] = k
        macs += n.macs
        flops += n.flops
        params += n.params
        param_bytes += n.param_bytes
        member_flops.append(n.flops)
        member_ops.append(n.op_type)
        costed = n.status == "costed"
        if n.status != "zero-cost":
            names.append(n.op_type)
            if anchor is None and costed:
                anchor = n
        for r in n.reads:
            src = root_get(r.tensor, r.tensor)
            if src in seen:
                continue
            seen.add(src)
            prod = producers.get(src)
            if prod is not None and prod in inside:
                continue
            if r.weight:
                weight += r.nbytes
            else:
                activation += r.nbytes
        for tensor, nbytes in n.writes:
            if costed:
                write_tensors.append(tensor)
                write_bytes.append(nbytes)
                write_steps.append(k)
            r = root_get(tensor, tensor)
            consumers = real_consumers.get(r, ())
            if r in graph_outputs or not consumers or not inside.issuperset(consumers):
                write += nbytes
    launches = 1 if names else 0
    if bias_round_trip:
        launches += 1
        activation += bias_round_trip
        write += bias_round_trip
    trace.rows += (macs, flops, params, param_bytes, weight, activation, write, launches)
    kind = "view" if launches == 0 else kind
    dtype = (anchor or first).dtype
    trace.kinds.append(kind)
    trace.dtypes.append(dtype)
    return frozen_record(
        Kernel,
        {
            "index": k,
            "name": "+".join(names) or first.op_type,
            "kind": kind,
            "nodes": tuple(idxs),
            "macs": macs,
            "flops": flops,
            "params": params,
            "param_bytes": param_bytes,
            "weight_bytes": weight,
            "activation_read_bytes": activation,
            "write_bytes": write,
            "launches": launches,
            "dtype": dtype,
        },
    )
