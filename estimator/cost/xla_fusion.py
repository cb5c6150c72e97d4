"""A fact of Keras 3 compiled by XLA on a GPU that the generic fusion rules lack (``fuse="bn-apart"`` of
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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from estimator.cost.report import NodeCost
from estimator.graph.structure import Graph

#: The most nodes a diamond may span before it is left alone (estimated: a swish has two, an erf GELU four, a
#: hard swish written out five; nothing in a CNN comes near it).
MAX_DIAMOND_NODES = 16


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
