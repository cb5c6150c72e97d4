"""The kernels of TensorFlow graph execution on a GPU without XLA: one kernel per op but the patterns grappler's
remapper rewrites there (``fuse="remapper"`` of :func:`estimator.cost.kernels.fuse_kernels`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from estimator.cost.report import NodeCost
from estimator.graph.structure import Graph, Node

#: The op both BN rules (remapper here, bn-apart in fuse_kernels) single out.
BATCH_NORM = "BatchNormalization"

# What a remapper kernel still takes (see remapper_grouping): a Relu after a fusable convolution, a Relu or a
# side-input Add after a BatchNormalization, a Relu after that Add; nothing once closed.
_TAKES_RELU, _TAKES_ADD_OR_RELU = "relu", "add-or-relu"
_REMAPPER_BN_DTYPES = frozenset({"float32", "float16"})
#: ONNX ops whose third input is a bias that Keras adds with a BiasAdd of its own (Conv2D / MatMul + BiasAdd).
_BIASED = frozenset({"Conv", "Gemm"})


def remapper_grouping(
    graph: Graph,
    nodes: tuple[NodeCost, ...],
    reads: Mapping[int, list[str]],
    root_get: Callable[[str, str], str],
    real_consumers: Mapping[str, list[int]],
    graph_outputs: set[str],
    category_of: Mapping[str, str],
) -> tuple[dict[int, int], list[list[int]], list[str], dict[int, int]]:
    """The kernels of TensorFlow graph execution on a GPU without XLA: (group of each node, members of each
    group, kind of each group, the bytes of its output for each group whose bias runs as a BiasAdd apart).

    Without XLA, TensorFlow launches one kernel per op; on a GPU grappler's remapper rewrites only these
    patterns into one op (tensorflow/tensorflow @ 599ec86, tensorflow/core/grappler/optimizers/remapper.cc):

    * ``_FusedConv2D`` = Conv2D + BiasAdd + Relu (``IsGpuCompatible(ContractionWithBiasAddAndActivation)``):
      the activation must be Relu (``IsRelu``), the filter spatial (both kernel dims known and != 1:
      ``is_spatial_conv``, "FusedConv2D on GPU with 1x1 convolution is ... significantly slower"), the op a
      Conv2D (not DepthwiseConv2dNative) of float32 (``IsGpuCompatibleDataType``). An ONNX Conv with a bias is
      Conv2D + BiasAdd; its bias-free form followed by Relu has no BiasAdd and matches nothing.
      Conv2D + BiasAdd without an activation is never fused on the GPU (``IsGpuCompatible(ContractionWithBiasAdd)``
      takes MatMul only), and MatMul + BiasAdd [+ Relu] only with cuBLASLt (``BlasLtMatmulEnabled``,
      ``TF_USE_CUBLASLT``, off by default), so neither is fused here.
    * ``_FusedBatchNormEx`` = FusedBatchNorm + [Add(side input)] + Relu (``FindFusedBatchNormEx``): the root is
      a Relu, the batch norm float32 or float16 with one consumer, the Add non-broadcasting (both inputs of
      one shape) and read only by the Relu. Relu6, swish (Sigmoid, Mul) and the rest after a batch norm are
      their own kernels; Conv2D + FusedBatchNorm is fused on the CPU only (``FindConv2DWithBatchNorm``).

    ``reads``: each node's run-time inputs; ``root_get``: a view's output -> the tensor it aliases;
    ``real_consumers``: the nodes (not views) reading each root tensor; ``category_of``: op -> the kernel kind
    of a group it opens. Views launch nothing and join their producer's kernel, as in
    :func:`estimator.cost.kernels.fuse_kernels`.

    Keras 2 adds a convolution's or a Dense layer's bias with ``nn.bias_add`` after the convolution or the
    ``matmul`` (``Conv.call``, ``Dense.call`` of tf.keras in TensorFlow 2.4-2.8, keras-team/keras @ v2.8.0), and
    the remapper of those versions fuses Conv2D + BiasAdd on a GPU only with a Relu after it
    (``IsGpuCompatible(ContractionWithBiasAdd)`` returns false). Where no ``_FusedConv2D`` takes it (a Conv with
    a bias that no Relu joined, or not fusable; every Gemm with a C input), that BiasAdd is a kernel of its own:
    one more launch, and the output read and written once more. The ONNX node stays one kernel record that
    carries the second launch and that round trip (``bias_apart``), so the BiasAdd's time is merged with its
    contraction's (a simplification: a compute-bound convolution hides the BiasAdd's time, not its energy).
    """
    producers = graph.producers
    tensors = graph.tensors
    group: dict[int, int] = {}
    members: list[list[int]] = []
    kinds: list[str] = []
    takes: list[str] = []  # what each group may still absorb ("" = closed)

    def producer_group(t: str) -> int | None:
        p = producers.get(root_get(t, t))
        return group.get(nodes[p].index) if p is not None and nodes[p].status != "folded" else None

    def only_reader(t: str) -> int | None:
        r = root_get(t, t)
        cs = real_consumers.get(r, ())
        return cs[0] if len(cs) == 1 and r not in graph_outputs else None

    def new_group(idx: int, kind: str, take: str) -> None:
        group[idx] = len(members)
        members.append([idx])
        kinds.append(kind)
        takes.append(take)

    for n, gn in zip(nodes, graph.nodes, strict=True):
        if n.status == "folded":
            continue
        runtime_inputs = reads[n.index]
        if n.status == "zero-cost":
            g = producer_group(runtime_inputs[0]) if runtime_inputs else None
            if g is None:
                new_group(n.index, "view", "")
            else:
                group[n.index] = g
                members[g].append(n.index)
            continue
        op = n.op_type
        target = None
        if op == "Relu" and runtime_inputs:
            g = producer_group(runtime_inputs[0])
            if g is not None and takes[g] and only_reader(runtime_inputs[0]) == n.index:
                target = g
        elif op == "Add" and len(runtime_inputs) == 2:
            a, b = (tensors.get(t) for t in runtime_inputs)
            out = gn.outputs[0] if gn.outputs else ""
            reader = only_reader(out) if out else None
            if (
                a is not None
                and b is not None
                and a.shape is not None
                and a.shape == b.shape
                and reader is not None
                and nodes[reader].op_type == "Relu"
            ):
                g0, g1 = producer_group(runtime_inputs[0]), producer_group(runtime_inputs[1])
                latest = max((g for g in (g0, g1) if g is not None), default=None)
                for t, g in ((runtime_inputs[0], g0), (runtime_inputs[1], g1)):
                    if (
                        g is not None
                        and g == latest
                        and takes[g] == _TAKES_ADD_OR_RELU
                        and only_reader(t) == n.index
                    ):
                        target = g
                        break
        if target is not None:
            group[n.index] = target
            members[target].append(n.index)
            takes[target] = _TAKES_RELU if op == "Add" else ""
            continue
        cat = category_of.get(op, "other")
        take = ""
        if op == "Conv" and _remapper_fusable_conv(graph, gn, n.dtype):
            take = _TAKES_RELU
        elif op == BATCH_NORM and n.dtype in _REMAPPER_BN_DTYPES:
            take = _TAKES_ADD_OR_RELU
        new_group(n.index, cat, take)
    bias_apart = {}
    for g, idxs in enumerate(members):
        n = nodes[idxs[0]]
        if n.status != "costed" or n.op_type not in _BIASED or any(nodes[i].op_type == "Relu" for i in idxs):
            continue  # not a contraction with a bias, or a _FusedConv2D (the only group a Relu joins)
        inputs = graph.nodes[n.index].inputs
        if len(inputs) > 2 and inputs[2]:
            bias_apart[g] = sum(nbytes for _, nbytes in n.writes)
    return group, members, kinds, bias_apart


def _remapper_fusable_conv(graph: Graph, node: Node, dtype: str) -> bool:
    """Whether an ONNX Conv is a Conv2D + BiasAdd that ``_FusedConv2D`` takes on a GPU: float32, a bias, a
    2-D filter with both spatial dims != 1, not depthwise (group > 1 with one input channel per group is
    Keras' DepthwiseConv2D, TensorFlow's DepthwiseConv2dNative)."""
    if dtype != "float32" or len(node.inputs) < 3 or not node.inputs[2]:
        return False
    w = graph.tensors.get(node.inputs[1])
    shape = w.shape if w is not None else None
    if shape is None or len(shape) != 4 or shape[2] == 1 or shape[3] == 1:
        return False
    return not (int(node.attributes.get("group", 1)) > 1 and shape[1] == 1)
