"""Cost rules for elementwise and activation ops of the ONNX default domain. No MACs.

Every op here does a fixed amount of arithmetic per *output* element, read from the table
:data:`FLOPS_PER_ELEMENT` (fvcore's declarative style: op -> FLOPs per output element). Each
transcendental function (exp, log, tanh, erf, sqrt, sin, pow, ...) counts as one FLOP; a comparison, a
min/max, a select and an integer/bitwise operation count as one each ("FLOPs" for integer kernels are
integer operations). Broadcast inputs are read once at their own size; every output is written.

=======================================  =====  ==============================================================
op                                       FLOPs  reasoning
=======================================  =====  ==============================================================
Add Sub Mul Div Mod Pow                  1      one arithmetic op (``Pow`` is one transcendental; ``x ** 2``
                                                is one multiply)
Abs Neg Reciprocal Sqrt Exp Log Erf      1      one op or one transcendental
Floor Ceil Round Sign IsNaN IsInf        1      one op
Sin Cos Tan Asin Acos Atan Sinh Cosh     1      one transcendental
Tanh Asinh Acosh Atanh
Not And Or Xor BitShift Bitwise*         1      one logical / integer op
Equal Greater Less GreaterOrEqual        1      one comparison
LessOrEqual
Where                                    1      one select
Relu                                     1      ``max(x, 0)``
ThresholdedRelu                          1      ``x > alpha ? x : 0``: one compare (the select is free)
LeakyRelu PRelu                          2      compare, multiply
Shrink                                   3      two compares, one add or subtract
Softsign                                 3      ``x / (1 + |x|)``: abs, add, divide
Softplus                                 3      ``log(exp(x) + 1)``: exp, add, log
Sigmoid                                  4      ``1 / (1 + exp(-x))``: negate, exp, add, divide
HardSigmoid                              4      ``max(0, min(1, alpha*x + beta))``: mul, add, min, max
Elu                                      4      ``x < 0 ? alpha*(exp(x) - 1) : x``: compare, exp, sub, mul
HardSwish                                5      ``x * HardSigmoid(x)``: 4 + multiply
Selu                                     5      Elu (4) + the multiply by gamma
Mish                                     5      ``x * tanh(log(1 + exp(x)))``: exp, add, log, tanh, mul
Gelu (approximate="none")                5      ``0.5*x*(1 + erf(x/sqrt(2)))``: mul, erf, add, mul, mul
Swish                                    6      ``x * sigmoid(alpha*x)``: mul, Sigmoid (4), mul
Celu                                     7      ``max(0,x) + min(0, alpha*(exp(x/alpha) - 1))``: div, exp,
                                                sub, mul, min, max, add
SwiGLU                                   7      ``Swish(a) * b``: Swish (6) + multiply
Gelu (approximate="tanh")                9      ``0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))``: x^3 (2),
                                                mul, add, mul, tanh, add, mul, mul
Cast CastLike                            0      a type conversion moves bytes (reads the input in its type,
                                                writes the output in the target type) but does no arithmetic
=======================================  =====  ==============================================================

Ops whose cost depends on their inputs or attributes:

* Variadic ``Sum``, ``Max``, ``Min`` with ``n`` inputs: ``n - 1`` ops per output element; ``Mean`` adds one
  division (``n`` per element; 0 for a single input, which is a copy).
* ``Clip``: one op per bound (min, max). Before opset 11 the bounds are attributes whose defaults are the
  float limits and kernels apply both (2); from opset 11 they are optional inputs and only the present
  ones count. The bounds are scalars and are not counted as data reads.
* ``Gelu`` (opset 20): 5 or 9 FLOPs by its ``approximate`` attribute (table above).

Which constant operands are learned parameters (``param_inputs``). A constant is only a parameter when it
is a real weight, not an arithmetic constant:

* ``PRelu``'s slope is always a parameter, even with a single element (``nn.PReLU()`` has one).
* For ``Add``, ``Sub``, ``Mul``, ``Div``, ``Sum`` and ``Mean``, a constant operand is a parameter when it
  is floating point *and* has more than one element: the bias of a Linear that PyTorch exports as
  ``MatMul`` + ``Add`` (initializer), the gamma/beta of a decomposed LayerNorm, a ViT position embedding.
  Scalars (an attention scale ``Div(x, 8.0)``, the ``+ 1`` of a Gelu) and integer shape arithmetic are
  not. An additive attention mask is not a weight either: a constant whose value is known (up to a few
  thousand elements) and holds ``-inf``/NaN or values at or below :data:`MASK_VALUE_THRESHOLD` is taken
  for a mask. Caveat: a float mask too large for its value to be loaded is counted as a parameter.
* No other op here has parameters: the exponent of ``Pow``, the bounds of ``Clip``, the condition and
  fill values of ``Where``, the operands of comparisons, logic and ``Max``/``Min`` are not learned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

import numpy as np

from estimator.cost.ops.base import NodeContext, OpCost, register
from estimator.errors import GraphStructureError

#: ONNX op type -> FLOPs per output element, for the ops whose cost depends on nothing but the output
#: size. Reasoning per entry in the module docstring.
FLOPS_PER_ELEMENT: Mapping[str, int] = MappingProxyType(
    {
        # Binary arithmetic.
        "Add": 1,
        "Sub": 1,
        "Mul": 1,
        "Div": 1,
        "Mod": 1,
        "Pow": 1,
        # Unary arithmetic and transcendental functions.
        "Abs": 1,
        "Neg": 1,
        "Reciprocal": 1,
        "Sqrt": 1,
        "Exp": 1,
        "Log": 1,
        "Erf": 1,
        "Floor": 1,
        "Ceil": 1,
        "Round": 1,
        "Sign": 1,
        "IsNaN": 1,
        "IsInf": 1,
        "Sin": 1,
        "Cos": 1,
        "Tan": 1,
        "Asin": 1,
        "Acos": 1,
        "Atan": 1,
        "Sinh": 1,
        "Cosh": 1,
        "Tanh": 1,
        "Asinh": 1,
        "Acosh": 1,
        "Atanh": 1,
        # Logic, comparisons, bitwise, select.
        "Not": 1,
        "And": 1,
        "Or": 1,
        "Xor": 1,
        "Equal": 1,
        "Greater": 1,
        "Less": 1,
        "GreaterOrEqual": 1,
        "LessOrEqual": 1,
        "BitShift": 1,
        "BitwiseAnd": 1,
        "BitwiseOr": 1,
        "BitwiseXor": 1,
        "BitwiseNot": 1,
        "Where": 1,
        # Activations.
        "Relu": 1,
        "ThresholdedRelu": 1,
        "LeakyRelu": 2,
        "PRelu": 2,
        "Shrink": 3,
        "Softsign": 3,
        "Softplus": 3,
        "Sigmoid": 4,
        "HardSigmoid": 4,
        "Elu": 4,
        "HardSwish": 5,
        "Selu": 5,
        "Mish": 5,
        "Swish": 6,
        "Celu": 7,
        "SwiGLU": 7,
        # Type conversion: bytes, no arithmetic.
        "Cast": 0,
        "CastLike": 0,
    }
)

#: Gelu per element by its ``approximate`` attribute (opset 20).
GELU_FLOPS: Mapping[str, int] = MappingProxyType({"none": 5, "tanh": 9})

#: Ops whose floating-point constant operands with more than one element are learned weights.
WEIGHT_OPERAND_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Sum", "Mean"})

#: Variadic reductions across inputs: ``n - 1`` ops per element (``Mean`` adds a division).
VARIADIC_OPS = frozenset({"Sum", "Max", "Min", "Mean"})

#: A constant holding a value at or below this (or -inf) is an additive attention mask, not a weight: masks
#: use -inf, the dtype's lowest value, -1e9 or -1e4 (fp16 BERT); trained weights stay far above it.
MASK_VALUE_THRESHOLD = -1.0e4

#: Opset from which ``Clip``'s bounds are inputs rather than attributes.
CLIP_BOUNDS_AS_INPUTS_SINCE = 11


def is_floating(dtype: str) -> bool:
    """Whether an element type name is a floating-point type (``float*``, ``bfloat16``)."""
    return dtype.startswith("float") or dtype == "bfloat16"


def weight_like_inputs(ctx: NodeContext, positions: Iterable[int]) -> tuple[int, ...]:
    """Positions among ``positions`` that hold a learned weight when they are constants.

    A weight is floating point, has more than one element and, when its value is known, is not an
    additive mask (see :func:`is_additive_mask`): the project's test for "a constant here is a learned
    weight, not an arithmetic or shape constant or a mask". The engine applies it only to constants.
    """
    chosen = []
    for i in positions:
        info = ctx.inputs[i] if i < len(ctx.inputs) else None
        if info is None or not is_floating(info.dtype) or (info.numel or 0) <= 1:
            continue
        value = ctx.const(i)
        if value is not None and is_additive_mask(value):
            continue
        chosen.append(i)
    return tuple(chosen)


def is_additive_mask(value: np.ndarray) -> bool:
    """Whether a float constant looks like an additive attention mask: -inf/NaN or very negative entries."""
    data = np.asarray(value, dtype=np.float64)
    return bool(data.size) and bool(np.isnan(data).any() or (data <= MASK_VALUE_THRESHOLD).any())


def _present(ctx: NodeContext) -> tuple[int, ...]:
    return tuple(i for i in range(len(ctx.inputs)) if ctx.has_input(i))


def _params(ctx: NodeContext) -> tuple[int, ...]:
    op = ctx.node.op_type
    if op == "PRelu":
        return (1,)
    if op in WEIGHT_OPERAND_OPS:
        return weight_like_inputs(ctx, _present(ctx))
    return ()


def _table_rule(ctx: NodeContext) -> OpCost:
    """Fixed FLOPs per output element from :data:`FLOPS_PER_ELEMENT`; CastLike's target is metadata."""
    per_element = FLOPS_PER_ELEMENT[ctx.node.op_type]
    data_inputs = (0,) if ctx.node.op_type == "CastLike" else None
    return OpCost(flops=per_element * ctx.out_numel(0), data_inputs=data_inputs, param_inputs=_params(ctx))


def _variadic(ctx: NodeContext) -> OpCost:
    """Sum/Max/Min/Mean over ``n`` inputs: ``n - 1`` ops per output element, Mean + 1 division."""
    n = len(_present(ctx))
    per_element = max(n - 1, 0)
    if ctx.node.op_type == "Mean" and n > 1:
        per_element += 1
    return OpCost(flops=per_element * ctx.out_numel(0), param_inputs=_params(ctx))


def _clip(ctx: NodeContext) -> OpCost:
    """Clip: one op per bound (both before opset 11, the present ``min``/``max`` inputs from 11)."""
    old_form = ctx.opset < CLIP_BOUNDS_AS_INPUTS_SINCE
    bounds = 2 if old_form else sum(1 for i in (1, 2) if ctx.has_input(i))
    return OpCost(flops=bounds * ctx.out_numel(0), data_inputs=(0,), param_inputs=())


def _gelu(ctx: NodeContext) -> OpCost:
    """Gelu: 5 FLOPs per element in the erf form, 9 in the tanh approximation."""
    approximate = str(ctx.attr("approximate", "none"))
    if approximate not in GELU_FLOPS:
        raise GraphStructureError(
            f"node '{ctx.node.name}' (Gelu): approximate='{approximate}' is not 'none' or 'tanh'"
        )
    per_element = GELU_FLOPS[approximate]
    return OpCost(flops=per_element * ctx.out_numel(0), param_inputs=())


for _op in FLOPS_PER_ELEMENT:
    register(_op, since=1)(_table_rule)
register(sorted(VARIADIC_OPS), since=1)(_variadic)
register("Clip", since=1)(_clip)
register("Gelu", since=20)(_gelu)
