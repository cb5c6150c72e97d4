"""NAS-Bench-201's ``TinyNetwork`` as ONNX, node for node as ``torch.onnx.export`` (eval, legacy) writes it.

The network (xautodl ``models/cell_infers/tiny_network.py``, the copy HW-NAS-Bench and HW-NAS-Bench-360 use):
stem ``Conv3x3(in -> C, no bias) + BN``; ``N`` cells at C; ``ResNetBasicblock(C, 2C, stride 2)``; ``N`` cells
at 2C; ``ResNetBasicblock(2C, 4C, 2)``; ``N`` cells at 4C; ``BN + ReLU``; global average pool; ``Linear(4C,
classes)``. A cell (``InferCell``) has nodes 1..3, node i being the sum, in edge order, of one operation
applied to each earlier node:

=================  =====================================================================
``none``           ``x.mul(0.0)``: a ``Mul`` by a scalar ``Constant`` 0 (the exporter keeps it)
``skip_connect``   identity: no node
``avg_pool_3x3``   ``AvgPool2d(3, stride 1, padding 1, count_include_pad=False)``
``nor_conv_1x1``   ``ReLU -> Conv1x1 (no bias) -> BN``
``nor_conv_3x3``   ``ReLU -> Conv3x3 pad 1 (no bias) -> BN``
=================  =====================================================================

A ``ResNetBasicblock`` is ``ReLU -> Conv3x3/2 -> BN -> ReLU -> Conv3x3 -> BN`` plus the shortcut
``AvgPool2d(2, 2) -> Conv1x1 (no bias)``, added. As in the exporter, parameter-free nodes that repeat a
computation on the same value (``x*0`` or the ``ReLU`` of two edges leaving the same node) are shared;
a node reached through ``sum()`` of one edge is, for this purpose, a value of its own (``0 + x``), so
``avg_pool(x)`` and ``avg_pool(skip(x))`` stay two nodes, exactly as the exporter leaves them.

With ``fold_batchnorm=True`` every BN that follows a Conv is folded into that Conv's bias, which is what the
exporter's eval mode writes (HW-NAS-Bench-360's ONNX files); only the final ``BN + ReLU`` keeps its
``BatchNormalization``. Without folding the graph has one BN node per ``nn.BatchNorm2d`` and its learned
parameters are exactly ``sum(p.numel() for p in model.parameters())``.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from estimator.errors import DataError
from estimator.zoo._builder import GraphBuilder, Tensor
from estimator.zoo._layers import AvgPool2d, BatchNorm2d, Conv2d, Linear, ReLU

#: The operations of the NAS-Bench-201 search space.
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Cell nodes of NAS-Bench-201 (node i has an edge from each of nodes 0..i-1).
NB201_NODES = 3


def parse_arch_str(arch_str: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` into ``((op, input_node), ...)`` per cell node.

    Raises DataError unless the string is a NAS-Bench-201 cell: 3 nodes, node i fed by nodes 0..i-1 in
    order, each through one of :data:`NB201_OPS`.
    """
    parts = arch_str.strip().split("+")
    if len(parts) != NB201_NODES:
        raise DataError(
            f"arch_str {arch_str!r} has {len(parts)} '+'-separated nodes, NAS-Bench-201 cells have "
            f"{NB201_NODES}; write it like |nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|"
        )
    nodes = []
    for i, part in enumerate(parts, start=1):
        if not (part.startswith("|") and part.endswith("|")):
            raise DataError(f"arch_str node {i} {part!r} must be written between '|' characters")
        edges = []
        for j, edge in enumerate(part[1:-1].split("|")):
            op, sep, source = edge.partition("~")
            if not sep or not source.isdigit() or op not in NB201_OPS or int(source) != j:
                raise DataError(
                    f"arch_str node {i} edge {edge!r} is not '<op>~{j}', <op> one of {', '.join(NB201_OPS)}"
                )
            edges.append((op, j))
        if len(edges) != i:
            raise DataError(
                f"arch_str node {i} has {len(edges)} edges; it needs one from each of nodes 0..{i - 1}"
            )
        nodes.append(tuple(edges))
    return tuple(nodes)


def _relu_conv_bn(
    b: GraphBuilder, x: Tensor, c_out: int, kernel: int, stride: int, padding: int, fold: bool
) -> Tensor:
    y = ReLU().emit(b, x)
    y = Conv2d(x.shape[1], c_out, kernel, stride, padding, bias=fold).emit(b, y)
    return y if fold else BatchNorm2d(c_out).emit(b, y)


def _edge(b: GraphBuilder, op: str, x: Tensor, fold: bool) -> Tensor:
    c = x.shape[1]
    if op == "none":
        key = ("Mul0", x.identity)
        shared = b.shared(key)
        if shared is not None:
            return shared
        return b.node("Mul", [x.name, b.scalar_constant("zero", 0.0)], x.shape, share_key=key)
    if op == "skip_connect":
        return x
    if op == "avg_pool_3x3":
        return AvgPool2d(3, stride=1, padding=1, count_include_pad=False).emit(b, x)
    if op == "nor_conv_1x1":
        return _relu_conv_bn(b, x, c, 1, 1, 0, fold)
    return _relu_conv_bn(b, x, c, 3, 1, 1, fold)  # nor_conv_3x3


def _add(b: GraphBuilder, x: Tensor, y: Tensor) -> Tensor:
    return b.node("Add", [x.name, y.name], x.shape, share_key=("Add", x.identity, y.identity))


def _cell(b: GraphBuilder, x: Tensor, nodes: Sequence[Sequence[tuple[str, int]]], fold: bool) -> Tensor:
    features = [x]
    for (first_op, first_source), *rest in nodes:
        first = _edge(b, first_op, features[first_source], fold)
        # sum() computes 0 + first: a new value for sharing, though the exporter later drops the Add
        total = Tensor(first.name, first.shape, alias_of=("0+", first.identity))
        for op, source in rest:
            total = _add(b, total, _edge(b, op, features[source], fold))
        features.append(total)
    return features[-1]


def _basic_block(b: GraphBuilder, x: Tensor, c_out: int, fold: bool) -> Tensor:
    y = _relu_conv_bn(b, x, c_out, 3, 2, 1, fold)
    y = _relu_conv_bn(b, y, c_out, 3, 1, 1, fold)
    shortcut = AvgPool2d(2, stride=2, padding=0).emit(b, x)
    shortcut = Conv2d(x.shape[1], c_out, 1, bias=False).emit(b, shortcut)
    if shortcut.shape != y.shape:
        raise DataError(
            f"NAS-Bench-201 reduction of a {x.shape[2]}x{x.shape[3]} feature map: the 2x2 pool gives "
            f"{shortcut.shape[2:]} but the strided conv {y.shape[2:]}; use an input whose height and width "
            "stay even before each reduction (divisible by 4)"
        )
    return _add(b, shortcut, y)


def nasbench201(
    arch_str: str,
    C: int = 16,
    N: int = 5,
    num_classes: int = 10,
    input_shape: Sequence[int] = (1, 3, 32, 32),
    *,
    fold_batchnorm: bool = False,
    dtype: str = "float32",
    weights: str = "zeros",
) -> onnx.ModelProto:
    """NAS-Bench-201 ``TinyNetwork(C, N, arch_str, num_classes)`` as an ONNX model (opset 17).

    Args:
        arch_str: the cell, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|...~1|...~2|``.
        C: channels of the first stage (16 in NAS-Bench-201). N: cells per stage (5).
        num_classes: outputs of the classifier (1 for a regression head such as NAS-Bench-360's darcy).
        input_shape: static N x C_in x H x W of the input; C_in replaces the stem's 3 input channels.
        fold_batchnorm: fold each Conv's BN into its bias, as the exporter's eval mode does.
        dtype: ``float32`` or ``float16`` for inputs, weights and activations.
        weights: ``zeros`` (light ConstantOfShape weights) or ``random`` (real initializers).

    Returns:
        The model: input ``input`` (``input_shape``), output ``logits`` (batch x num_classes).

    Raises:
        DataError: a malformed arch_str or a non-positive size.
    """
    cells = parse_arch_str(arch_str)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4 or min(shape) < 1 or min(C, N, num_classes) < 1:
        raise DataError(
            f"NAS-Bench-201 needs a positive N x C x H x W input and positive C, N, num_classes; got "
            f"input_shape={shape}, C={C}, N={N}, num_classes={num_classes}"
        )
    b = GraphBuilder("nasbench201_tiny", dtype=dtype, weights=weights)
    x = b.input("input", shape)
    x = Conv2d(shape[1], C, 3, 1, 1, bias=fold_batchnorm).emit(b, x)
    if not fold_batchnorm:
        x = BatchNorm2d(C).emit(b, x)
    for stage, channels in enumerate((C, 2 * C, 4 * C)):
        if stage:
            x = _basic_block(b, x, channels, fold_batchnorm)
        for _ in range(N):
            x = _cell(b, x, cells, fold_batchnorm)
    x = BatchNorm2d(4 * C).emit(b, x)
    x = ReLU().emit(b, x)
    x = b.node("GlobalAveragePool", [x.name], (*x.shape[:2], 1, 1))
    flat = (shape[0], 4 * C)
    x = b.node("Reshape", [x.name, b.int64_constant("flat_shape", [shape[0], -1])], flat, allowzero=0)
    logits = Linear(4 * C, num_classes).emit(b, x)
    return b.model([logits], doc=f"NAS-Bench-201 TinyNetwork C={C} N={N} classes={num_classes} {arch_str}")
