"""Cost rules, one op family per module; importing this package registers all of them.

The registry and the counting convention live in :mod:`estimator.cost.ops.base`.
"""

import importlib

#: Every rule module, imported for its registrations.
RULE_MODULES = (
    "conv",
    "matmul",
    "quantized",
    "normalization",
    "pooling",
    "resize",
    "elementwise",
    "softmax",
    "reduce",
    "indexing",
    "movement",
    "zero_cost",
    "recurrent",
    "control_flow",
    "contrib",
    "contrib_matmul",
    "contrib_attention",
    "attention",
    "quantized_weights",
)

for _name in RULE_MODULES:
    importlib.import_module(f"{__name__}.{_name}")
