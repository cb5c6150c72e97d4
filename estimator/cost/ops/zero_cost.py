"""The explicit list of ops of the ONNX default domain that cost nothing at inference.

An op is here only when a runtime executes it without a kernel that touches tensor data: a view of the same
buffer, metadata read from the tensor's header, or a value known at load time. Unknown ops are never
zero-cost by default (they are reported as unsupported); constant-folded nodes of any type are handled by
the engine, not here.

=========================  ===============================================================================
op                         why it is free
=========================  ===============================================================================
Reshape                    a view: same contiguous buffer, new shape (runtimes alias the buffer)
Flatten                    a Reshape to 2-D
Squeeze, Unsqueeze         a Reshape that drops/adds unit dimensions (axes attribute before 13, input from
                           13: either way metadata)
Identity                   aliases its input (also for sequences and optionals)
Dropout                    the identity at inference (``training_mode`` false / absent, ratio ignored); the
                           optional mask output is never consumed in an inference graph
Shape, Size                read the tensor's dimensions from its header, not its data
Constant                   a value materialised at load time
Optional                   wraps a reference to its input (or nothing) without copying
OptionalGetElement         unwraps the reference
OptionalHasElement         tests for presence: metadata
SequenceEmpty              creates an empty list: no tensor bytes
BitCast                    reinterprets the bits of the same buffer as another type of equal width (opset 26)
=========================  ===============================================================================

Deliberately *not* here: ``Cast`` (converts every element, a kernel: ``elementwise.py``), ``Expand`` and
``Tile`` (materialise their output in ONNX runtimes: ``movement.py``), ``ConstantOfShape`` left unfolded (a
fill kernel: ``movement.py``) and the other sequence ops (they copy tensors into or out of a sequence).
"""

from __future__ import annotations

from estimator.cost.ops.base import register, zero_cost

#: Ops that execute without a data kernel (see the module docstring for why each is free).
ZERO_COST_OPS = frozenset(
    {
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Dropout",
        "Shape",
        "Size",
        "Constant",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "SequenceEmpty",
        "BitCast",
    }
)

register(sorted(ZERO_COST_OPS), since=1)(zero_cost)
