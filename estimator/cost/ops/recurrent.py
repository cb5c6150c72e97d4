"""Cost rules for the recurrent ops LSTM, GRU and RNN (ONNX default domain).

Shapes, with ``D`` directions (2 when ``direction="bidirectional"``), ``G`` gates (LSTM 4, GRU 3, RNN 1),
``H`` = ``hidden_size`` and ``I`` = ``input_size``::

    X [seq_length, batch, I]   (layout=1, opset 14+: [batch, seq_length, I])
    W [D, G*H, I]   R [D, G*H, H]   B [D, 2*G*H]   P [D, 3*H] (LSTM peepholes)

**MACs.** Each direction runs ``seq_length`` steps over the batch; one step is the two gate products
``Xt * W^T`` and ``H(t-1) * R^T``: ``batch * (G*H*I + G*H*H)`` MACs. When ``sequence_lens`` is a constant
known at load time the shorter sequences stop early and ``sum_b min(len_b, seq_length)`` batch-steps are
counted instead of ``batch * seq_length``.

**Per-element FLOPs**, per hidden unit and per batch-step (``f``, ``g``, ``h`` are the activation costs
from :data:`ACTIVATION_FLOPS`; defaults: LSTM f=Sigmoid, g=h=Tanh; GRU f=Sigmoid, g=Tanh; RNN f=Tanh):

========  ===============================================================================================
LSTM      bias: 1 add per gate = 4 when ``B`` is present (``Wb + Rb`` is summed once at load time);
          peepholes: a multiply and an add on gates i, f, o = 6 when ``P`` is present;
          activations ``3f + g``; cell ``Ct = ft*C(t-1) + it*ct`` = 3; output ``Ht = ot*h(Ct)`` = ``h + 1``
GRU       bias: 3 when ``B`` is present (4 with ``linear_before_reset``, where ``Rbh`` is added inside
          ``rt * (H(t-1)*Rh^T + Rbh)``); reset product 1; activations ``2f + g``;
          ``Ht = (1 - zt)*ht + zt*H(t-1)`` = 4
RNN       bias: 1 when ``B`` is present; activation ``f``
========  ===============================================================================================

``clip`` adds 2 FLOPs (a min and a max) per gate pre-activation. Parameters: ``W``, ``R``, ``B`` and
LSTM's ``P``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from estimator.cost.ops.base import NodeContext, OpCost, register
from estimator.cost.ops.elementwise import FLOPS_PER_ELEMENT
from estimator.errors import GraphStructureError

#: FLOPs of one application of each activation an RNN attribute may name: the per-element costs of the
#: ONNX ops of the same name (:data:`estimator.cost.ops.elementwise.FLOPS_PER_ELEMENT`), plus the two that are
#: not ops: Affine ``alpha*x + beta`` (2) and ScaledTanh ``alpha*tanh(beta*x)`` (3).
ACTIVATION_FLOPS: Mapping[str, int] = MappingProxyType(
    {
        **{
            name.lower(): FLOPS_PER_ELEMENT[name]
            for name in (
                "Relu",
                "Tanh",
                "Sigmoid",
                "LeakyRelu",
                "ThresholdedRelu",
                "HardSigmoid",
                "Elu",
                "Softsign",
                "Softplus",
            )
        },
        "affine": 2,
        "scaledtanh": 3,
    }
)

_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _dimensions(ctx: NodeContext, gates: int) -> tuple[int, int, int, int]:
    """(directions, batch-steps per direction, input_size, hidden_size) of a recurrent node."""
    x = ctx.in_shape(0)
    if len(x) != 3:
        raise GraphStructureError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): X must be 3-D [seq, batch, input], got shape {x}"
        )
    layout = int(ctx.attr("layout", 0))
    seq_length, batch = (x[1], x[0]) if layout == 1 else (x[0], x[1])
    input_size = x[2]

    direction = str(ctx.attr("direction", "forward"))
    if direction not in _DIRECTIONS:
        raise GraphStructureError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): direction '{direction}' is not one of "
            f"{sorted(_DIRECTIONS)}"
        )
    directions = _DIRECTIONS[direction]

    hidden = ctx.attr("hidden_size")
    if hidden is None:
        r = ctx.in_shape(2)
        if len(r) != 3 or r[1] != gates * r[2]:
            raise GraphStructureError(
                f"node '{ctx.node.name}' ({ctx.node.op_type}): no hidden_size attribute and R has shape {r}, "
                f"not [num_directions, {gates}*hidden_size, hidden_size]"
            )
        hidden = r[2]

    batch_steps = batch * seq_length
    lengths = ctx.const(4)
    if lengths is not None and lengths.size == batch:
        batch_steps = int(np.minimum(np.maximum(lengths.astype(np.int64), 0), seq_length).sum())
    return directions, batch_steps, input_size, int(hidden)


def _activations(ctx: NodeContext, defaults: Sequence[str], directions: int) -> list[list[int]]:
    """Per direction, the FLOPs of each activation function (``activations`` attribute or the defaults)."""
    names = ctx.attr("activations")
    names = list(defaults) * directions if not names else [str(n) for n in names]
    per_direction = len(defaults)
    if len(names) != per_direction * directions:
        raise GraphStructureError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): {len(names)} activations given, expected "
            f"{per_direction * directions} ({per_direction} per direction)"
        )
    costs = []
    for name in names:
        cost = ACTIVATION_FLOPS.get(name.lower())
        if cost is None:
            raise GraphStructureError(
                f"node '{ctx.node.name}' ({ctx.node.op_type}): unknown activation '{name}'; expected one of "
                f"{sorted(ACTIVATION_FLOPS)}"
            )
        costs.append(cost)
    return [costs[d * per_direction : (d + 1) * per_direction] for d in range(directions)]


def _recurrent_cost(
    ctx: NodeContext,
    gates: int,
    defaults: Sequence[str],
    uses: Sequence[int],
    unit_flops: int,
    param_inputs: tuple[int, ...],
) -> OpCost:
    """Cost of a recurrent node given the activation-free per-unit FLOPs of one step.

    Args:
        ctx: the node's context.
        gates: gate count G (LSTM 4, GRU 3, RNN 1).
        defaults: default activation names (f, g, h) of one direction.
        uses: applications of each activation slot per hidden unit and step (LSTM applies f three times).
        unit_flops: FLOPs per hidden unit and batch-step other than the activations.
        param_inputs: positions of the learned parameters.
    """
    directions, batch_steps, input_size, hidden = _dimensions(ctx, gates)
    macs = directions * batch_steps * gates * hidden * (input_size + hidden)
    clip = 2 * gates if ctx.attr("clip") is not None else 0
    flops = 2 * macs
    for costs in _activations(ctx, defaults, directions):
        activation = sum(n * c for n, c in zip(uses, costs, strict=True))
        flops += batch_steps * hidden * (unit_flops + clip + activation)
    return OpCost(macs=macs, flops=flops, param_inputs=param_inputs)


@register("LSTM", since=1)
def lstm(ctx: NodeContext) -> OpCost:
    """LSTM: ``batch*(4H*I + 4H*H)`` MACs per step and direction + gate arithmetic (module docstring)."""
    unit = 3 + 1  # cell update (2 mul + 1 add) and the output multiply
    unit += 4 if ctx.has_input(3) else 0
    unit += 6 if ctx.has_input(7) else 0
    return _recurrent_cost(ctx, 4, ("Sigmoid", "Tanh", "Tanh"), (3, 1, 1), unit, (1, 2, 3, 7))


@register("GRU", since=1)
def gru(ctx: NodeContext) -> OpCost:
    """GRU: ``batch*(3H*I + 3H*H)`` MACs per step and direction + gate arithmetic (module docstring)."""
    linear_before_reset = bool(ctx.attr("linear_before_reset", 0))
    unit = 1 + 4  # reset product and the interpolation (1 - z)*h + z*H
    if ctx.has_input(3):
        unit += 4 if linear_before_reset else 3
    return _recurrent_cost(ctx, 3, ("Sigmoid", "Tanh"), (2, 1), unit, (1, 2, 3))


@register("RNN", since=1)
def rnn(ctx: NodeContext) -> OpCost:
    """RNN: ``batch*(H*I + H*H)`` MACs per step and direction + bias and activation."""
    unit = 1 if ctx.has_input(3) else 0
    return _recurrent_cost(ctx, 1, ("Tanh",), (1,), unit, (1, 2, 3))
