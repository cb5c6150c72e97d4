"""Cost rules for matrix products: Gemm, MatMul, Einsum (ONNX default domain).

Counting (1 MAC = 2 FLOPs, see :mod:`estimator.cost.ops.base`):

* ``Gemm``: ``Y = alpha * op(A) @ op(B) + beta * C`` with ``op(A)`` of shape (M, K) and ``op(B)`` (K, N):
  ``MACs = M * K * N``. Per output element: +1 FLOP for the ``C`` addition when ``C`` is present,
  +1 for the ``alpha`` scaling when ``alpha != 1`` and +1 for the ``beta`` scaling when ``C`` is present
  and ``beta != 1``. Parameters: ``B`` and ``C``.
* ``MatMul`` (numpy semantics, batched and broadcast): each output element is a dot product of length
  ``K`` (the last dimension of ``A``), so ``MACs = numel(Y) * K = prod(broadcast batch) * M * K * N``;
  1-D operands are promoted and their unit dimension removed as numpy does. Parameters: either operand
  when it is a constant.
* ``Einsum``: the equation is parsed (explicit ``->`` or implicit output, ``...`` broadcasting).

  - one operand (transpose, diagonal, reduction): no multiplies; the summed-out letters cost one
    addition per combination beyond the first: ``FLOPs = prod(all letters) - prod(output letters)``
    (0 for a pure transpose or diagonal).
  - two operands with a contraction (a letter in neither output): ``MACs = prod(sizes of all distinct
    letters)`` (the naive loop nest: one multiply-add per point of the joint index space).
  - two operands without contraction (outer/elementwise product): ``FLOPs = prod(all letters)``
    multiplies, no MACs.
  - three or more operands: contracted pairwise left to right, as ``numpy.einsum(optimize=False)``
    would; each step costs the joint index space of the pair, a letter being summed out as soon as no
    later operand or the output needs it.
"""

from __future__ import annotations

import math
import string

from estimator.cost.ops.base import NodeContext, OpCost, register
from estimator.errors import GraphStructureError

#: Pseudo-letter standing for the broadcast ``...`` dimensions of an einsum equation.
_ELLIPSIS = "."


@register("Gemm", since=1)
def gemm(ctx: NodeContext) -> OpCost:
    """Gemm: ``M*K*N`` MACs; +1 FLOP per output for C, for ``alpha != 1`` and for ``beta != 1`` (with C)."""
    macs = gemm_macs(ctx)
    extra = gemm_epilogue_per_output(ctx) * ctx.out_numel(0)
    return OpCost(macs=macs, flops=2 * macs + extra, param_inputs=(1, 2) if ctx.has_input(2) else (1,))


def gemm_macs(ctx: NodeContext) -> int:
    """MACs of a Gemm-shaped node (Gemm, FusedGemm, QGemm): ``numel(Y) * K``, K from A and ``transA``."""
    a_shape = ctx.in_shape(0)
    if len(a_shape) != 2:
        raise GraphStructureError(
            f"{ctx.where()}: input A has shape {a_shape}, {ctx.node.op_type} needs a 2-D matrix"
        )
    k = a_shape[0] if ctx.attr("transA", 0) else a_shape[1]
    return ctx.out_numel(0) * k


def gemm_epilogue_per_output(ctx: NodeContext) -> int:
    """FLOPs per output of Gemm's epilogue: 1 for ``alpha != 1``, 1 for adding C (input 2), 1 for ``beta != 1``."""
    per_output = 1 if float(ctx.attr("alpha", 1.0)) != 1.0 else 0
    if ctx.has_input(2):
        per_output += 1 + (1 if float(ctx.attr("beta", 1.0)) != 1.0 else 0)
    return per_output


@register("MatMul", since=1)
def matmul(ctx: NodeContext) -> OpCost:
    """MatMul: ``numel(Y) * K`` MACs (K = last dimension of A), numpy broadcasting and 1-D promotion."""
    a_shape = ctx.in_shape(0)
    if not a_shape:
        raise GraphStructureError(
            f"node '{ctx.node.name}' (MatMul): input A is a scalar; MatMul needs >= 1-D"
        )
    macs = ctx.out_numel(0) * a_shape[-1]
    return OpCost(macs=macs, flops=2 * macs, param_inputs=(0, 1))


def parse_einsum(equation: str, shapes: list[tuple[int, ...]]) -> tuple[list[str], str, dict[str, int]]:
    """Parse an einsum equation against its operands' shapes.

    Broadcast ``...`` dimensions are folded into one pseudo-letter whose size is the product of the
    broadcast ellipsis dimensions.

    Args:
        equation: e.g. ``"bij,bjk->bik"`` or ``"...ij,...jk"`` (spaces allowed).
        shapes: one concrete shape per operand.

    Returns:
        (letters of each operand, letters of the output, size of each letter).

    Raises:
        GraphStructureError: when the equation does not match the operands.
    """
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise GraphStructureError(
            f"einsum equation '{equation}' names {len(terms)} operands but the node has {len(shapes)}"
        )
    operands: list[str] = []
    sizes: dict[str, int] = {}
    ellipsis_shapes: list[tuple[int, ...]] = []
    for term, shape in zip(terms, shapes, strict=True):
        letters = term.replace("...", "")
        if any(ch not in string.ascii_letters for ch in letters):
            raise GraphStructureError(f"einsum equation '{equation}' has an invalid term '{term}'")
        n_ellipsis = len(shape) - len(letters)
        if n_ellipsis < 0 or (n_ellipsis > 0 and "..." not in term):
            raise GraphStructureError(
                f"einsum term '{term}' of equation '{equation}' does not match an operand of shape {shape}"
            )
        dims = list(shape)
        if "..." in term:
            start = term.index("...")
            ellipsis_shapes.append(tuple(dims[start : start + n_ellipsis]))
            dims = [*dims[:start], -1, *dims[start + n_ellipsis :]]
            term = term.replace("...", _ELLIPSIS)
        for letter, dim in zip(term, dims, strict=True):
            if letter != _ELLIPSIS:
                sizes[letter] = max(sizes.get(letter, 1), dim)
        operands.append(term)
    if ellipsis_shapes:
        try:
            broadcast = _broadcast_shapes(ellipsis_shapes)
        except ValueError as err:
            raise GraphStructureError(f"einsum equation '{equation}': {err}") from err
        sizes[_ELLIPSIS] = math.prod(broadcast)
    if arrow:
        output = rhs.replace("...", _ELLIPSIS)
    else:
        counts = {ch: sum(term.count(ch) for term in operands) for ch in sizes if ch != _ELLIPSIS}
        implicit = "".join(sorted(ch for ch, c in counts.items() if c == 1))
        output = (_ELLIPSIS if ellipsis_shapes else "") + implicit
    unknown = set(output) - set(sizes)
    if unknown:
        raise GraphStructureError(
            f"einsum equation '{equation}': output letters {sorted(unknown)} are unbound"
        )
    return operands, output, sizes


def _broadcast_shapes(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """numpy broadcasting of shapes; raises ValueError when they do not broadcast."""
    rank = max(len(s) for s in shapes)
    out = [1] * rank
    for shape in shapes:
        for i, dim in enumerate((1,) * (rank - len(shape)) + tuple(shape)):
            if dim != 1 and out[i] not in (1, dim):
                raise ValueError(f"ellipsis dimensions {shapes} do not broadcast")
            out[i] = max(out[i], dim)
    return tuple(out)


def einsum_cost(operands: list[str], output: str, sizes: dict[str, int]) -> tuple[int, int]:
    """(MACs, FLOPs) of an einsum given its parsed letters (see the module docstring)."""

    def space(letters: set[str]) -> int:
        return math.prod(sizes[ch] for ch in letters)

    if len(operands) == 1:
        return 0, space(set(operands[0])) - space(set(output))
    macs = 0
    flops = 0
    current = set(operands[0])
    for i, term in enumerate(operands[1:], start=1):
        joint = current | set(term)
        needed = set(output).union(*(set(t) for t in operands[i + 1 :]))
        kept = joint & needed
        if joint - kept:
            macs += space(joint)
        else:
            flops += space(joint)
        current = kept
    return macs, 2 * macs + flops


@register("Einsum", since=12)
def einsum(ctx: NodeContext) -> OpCost:
    """Einsum: parsed equation; MACs of the naive loop nest per pairwise contraction (module docstring)."""
    equation = ctx.attr("equation")
    if isinstance(equation, bytes):
        equation = equation.decode()
    if not equation:
        raise GraphStructureError(f"node '{ctx.node.name}' (Einsum) has no 'equation' attribute")
    shapes = [ctx.in_shape(i) for i in range(len(ctx.inputs))]
    operands, output, sizes = parse_einsum(str(equation), shapes)
    macs, flops = einsum_cost(operands, output, sizes)
    return OpCost(macs=macs, flops=flops, param_inputs=tuple(range(len(shapes))))
