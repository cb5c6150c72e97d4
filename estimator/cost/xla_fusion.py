"""Two facts of Keras 3 compiled by XLA on a GPU that the generic fusion rules lack (``fuse="bn-apart"`` of
:func:`estimator.cost.kernels.fuse_kernels`, runtime ``tensorflow-xla-gpu``).

* **Element-wise diamonds fuse.** XLA's GPU priority fusion fuses a producer into *all* its users or into none
  ("the priority of a producer is the benefit in performance when fusing it to all of its fusible users";
  ``CalculateProducerPriority``: "Don't fuse if we can't fuse in all users"), and element-wise ops are always
  fusible (``IsFusible``; tensorflow/tensorflow @ 00848fd, third_party/xla/xla/service/gpu/priority_fusion.cc).
  A swish after a batch norm, ``y * sigmoid(y)``, reads ``y`` twice; XLA fuses the sigmoid into the multiply
  and then ``y``'s arithmetic into that one fusion, which reads its producer's inputs once: one loop kernel,
  ``y`` never written. The generic rule (a tensor with two readers is always written) costs a kernel more and a
  round trip of ``y``. :func:`closes_elementwise` finds such regions; only a loop kernel (elementwise kind)
  takes them: a cuDNN convolution takes only a bias, a side-input add and a Relu (tensorflow/tensorflow @
  0866b7a, third_party/xla/xla/service/gpu/transforms/cudnn_fused_conv_rewriter.cc: ``FuseBiasOrSideInput``,
  ``FuseRelu``; ``FuseConvAlpha`` takes a broadcast scalar *constant* only, so a batch norm's per-channel
  scale, a parameter under TensorFlow, is never folded; Elu, Relu6 and LeakyRelu only through cuDNN runtime
  fusion, ``xla_gpu_use_runtime_fusion``, off by default and for float16 only; depthwise convolutions take
  nothing, ``IsNonDepthwiseConvCustomCall``).
* **No NCHW <-> NHWC transposes.** Keras runs image tensors channels-last: its ConvNeXt refuses
  ``channels_first`` and runs LayerNormalization and the pointwise Dense layers on the last axis (keras-team/keras
  @ 4f6900a, keras/src/applications/convnext.py), so it has no Transpose where a channels-first export (timm's
  ConvNeXt: permute, LayerNorm, Linear, permute back) has one on each side. Where XLA itself changes the
  physical layout (a float32 convolution runs NCHW: ``HeuristicLayoutAssignment``, "If we're not Volta or not
  fp16/bfloat16 ... Use NCHW", "If we end up with transposes anyway, we prefer to have them in XLA, as they
  can be fused"; tensorflow/tensorflow @ 03daf31, third_party/xla/xla/service/gpu/transforms/
  layout_assignment.cc), the change is a transpose, which priority fusion fuses into its neighbouring loop or
  reduction kernel (``kTranspose`` in ``IsFusible``) rather than launching it alone. :func:`layout_transposes` finds the rank-4 Transposes between the two layouts; they are
  costed as views (no launch, no bytes of their own).
* **A concatenation read only by batch norms is fused into them.** ``kConcatenate`` is loop-fusible as a
  producer (``IsUniversallyLoopFusible``, third_party/xla/xla/service/gpu/gpu_fusible.cc), and priority fusion
  fuses a producer into all its users at once, duplicating it where it has several (``CanFuseWithAllNonBitcastUsers``
  in priority_fusion.cc, as above). A DenseNet layer's concatenation is read by the next layer's batch norm (a
  loop kernel of its own under bn-apart) and by the next concatenation: fused into both, no concatenation is
  ever written, and each batch norm reads the pieces (the block's input and the convolutions' outputs) where
  they lie. :func:`fused_concats` finds such Concats (every reader a BatchNormalization's data input or
  another such Concat; a reader XLA cannot fuse into, a cuDNN convolution's input, keeps the Concat a kernel);
  :func:`splice_concats` makes them cost nothing and has their readers read the pieces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from estimator.cost.report import NodeCost, TensorRead
from estimator.graph.structure import Graph

#: Permutations between NCHW and NHWC (to channels-last, to channels-first).
LAYOUT_PERMS = frozenset({(0, 2, 3, 1), (0, 3, 1, 2)})

#: The most nodes a diamond may span before it is left alone (estimated: a swish has two, an erf GELU four, a
#: hard swish written out five; nothing in a CNN comes near it).
MAX_DIAMOND_NODES = 16


def layout_transposes(graph: Graph, nodes: tuple[NodeCost, ...]) -> frozenset[int]:
    """Indices of the costed Transpose nodes whose ``perm`` turns a rank-4 tensor from NCHW to NHWC or back."""
    out = []
    for n, gn in zip(nodes, graph.nodes, strict=True):
        if n.op_type != "Transpose" or n.status != "costed":
            continue
        perm = gn.attributes.get("perm")
        if perm is not None and tuple(int(p) for p in perm) in LAYOUT_PERMS:
            out.append(n.index)
    return frozenset(out)


def as_views(nodes: tuple[NodeCost, ...], indices: frozenset[int]) -> tuple[NodeCost, ...]:
    """``nodes`` with those at ``indices`` made views: zero-cost, no arithmetic, reads or writes."""
    return tuple(
        dataclasses.replace(
            n,
            status="zero-cost",
            macs=0,
            flops=0,
            weight_bytes=0,
            activation_read_bytes=0,
            write_bytes=0,
            reads=(),
            writes=(),
        )
        if n.index in indices
        else n
        for n in nodes
    )


def closes_elementwise(
    root: str,
    graph: Graph,
    nodes: tuple[NodeCost, ...],
    reads: Mapping[int, list[str]],
    root_get: Callable[[str, str], str],
    real_consumers: Mapping[str, list[int]],
    graph_outputs: set[str],
    is_elementwise: Callable[[NodeCost], bool],
) -> bool:
    """Whether the readers of tensor ``root`` (two or more) and what they feed form one element-wise region that
    XLA fuses whole: every member element-wise, every tensor a member writes read only inside the region but
    the last member's, and every run-time input of a member ``root`` or a member's output (a swish
    ``y * sigmoid(y)``, an erf GELU ``x * (erf(x / sqrt 2) + 1) / 2``). ``reads``: each node's run-time inputs;
    ``root_get``: a view's output -> the tensor it aliases; ``real_consumers``: the nodes reading each root."""
    region = set(real_consumers.get(root, ()))
    if len(region) < 2 or root in graph_outputs:
        return False
    producers = graph.producers
    while len(region) <= MAX_DIAMOND_NODES:
        if not all(is_elementwise(nodes[i]) for i in region):
            return False
        escaping = []
        for i in region:
            for out in graph.nodes[i].outputs:
                if not out:
                    continue
                r = root_get(out, out)
                cs = real_consumers.get(r, ())
                if r in graph_outputs or not cs or not region.issuperset(cs):
                    escaping.append(i)
                    break
        if not escaping:
            return False
        if len(escaping) == 1:
            for i in region:
                for t in reads[i]:
                    r = root_get(t, t)
                    if r != root and producers.get(r) not in region:
                        return False
            return True
        sink = max(escaping)
        grown = {
            c
            for i in escaping
            if i != sink
            for out in graph.nodes[i].outputs
            if out
            for c in real_consumers.get(root_get(out, out), ())
        }
        if grown <= region:
            return False
        region |= grown
    return False


CONCAT = "Concat"
BATCH_NORM = "BatchNormalization"


def fused_concats(graph: Graph, nodes: tuple[NodeCost, ...]) -> frozenset[int]:
    """Indices of the costed Concat nodes that XLA fuses into all their readers (module docstring): not a graph
    output, read at least once, and every reader a BatchNormalization that reads it as its data input or another
    such Concat."""
    readers: dict[str, list[int]] = {}
    for n, gn in zip(nodes, graph.nodes, strict=True):
        if n.status == "folded":
            continue
        for name in gn.inputs:
            if name:
                readers.setdefault(name, []).append(n.index)
    outputs = set(graph.outputs)
    fused: set[int] = set()
    for n, gn in zip(reversed(nodes), reversed(graph.nodes), strict=True):  # readers before what they read
        if n.op_type != CONCAT or n.status != "costed" or len(gn.outputs) != 1 or gn.outputs[0] in outputs:
            continue
        out = gn.outputs[0]
        users = readers.get(out, ())
        if users and all(
            u in fused
            or (
                nodes[u].op_type == BATCH_NORM
                and nodes[u].status == "costed"
                and graph.nodes[u].inputs[0] == out
            )
            for u in users
        ):
            fused.add(n.index)
    return frozenset(fused)


def splice_concats(
    graph: Graph, nodes: tuple[NodeCost, ...], fused: frozenset[int]
) -> tuple[tuple[NodeCost, ...], dict[str, tuple[str, ...]]]:
    """``nodes`` with the Concats at ``fused`` (:func:`fused_concats`) made views that read and write nothing,
    and every read of their outputs replaced by reads of the pieces (through nested fused Concats, in order);
    and the map from each fused Concat's output to its pieces (tensor names)."""
    pieces: dict[str, tuple[str, ...]] = {}
    piece_reads: dict[str, tuple[TensorRead, ...]] = {}
    for i in sorted(fused):  # topological order: an inner Concat's pieces are known before an outer's
        out = graph.nodes[i].outputs[0]
        reads = tuple(p for r in nodes[i].reads for p in piece_reads.get(r.tensor, (r,)))
        piece_reads[out] = reads
        pieces[out] = tuple(p for name in graph.nodes[i].inputs if name for p in pieces.get(name, (name,)))
    spliced = []
    for n in as_views(nodes, fused):
        if n.index not in fused and any(r.tensor in piece_reads for r in n.reads):
            n = dataclasses.replace(
                n, reads=tuple(p for r in n.reads for p in piece_reads.get(r.tensor, (r,)))
            )
        spliced.append(n)
    return tuple(spliced), pieces
