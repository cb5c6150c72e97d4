"""A small ONNX graph writer for the zoo: tensors with known shapes, light weights, shared subexpressions.

Weights are written in one of two ways (``weights=``):

* ``"zeros"`` (default, light): each weight is a ``ConstantOfShape`` node whose shape is a tiny int64
  initializer, filled with one value (0 for weights, 1 for normalisation scales and variances). The model is a
  few kB whatever the network, shape inference and the estimator's loader see every weight with its shape and
  dtype, and onnxruntime can run it (on zeros, which on real hardware draws less power than trained weights).
* ``"random"``: every weight is a real initializer of random values (seeded), as an exported model stores
  them: use it to *run* the model for a measurement. VGG16 then weighs 553 MB in float32.

Nodes without learned inputs that repeat an existing node on the same inputs with the same attributes are
shared (common-subexpression elimination, as PyTorch's ONNX exporter does through ``_jit_pass_cse``); the
inputs are compared by :attr:`Tensor.identity`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from estimator.errors import DataError

#: ONNX default-domain opset of every zoo model.
OPSET = 17
#: IR version written (IR 8 is the one ONNX 1.12-1.14 wrote for opset 17; every runtime since reads it).
IR_VERSION = 8
#: Element types a zoo model can be built in: name -> (ONNX type, numpy type).
DTYPES: Mapping[str, tuple[int, type[np.generic]]] = {
    "float32": (TensorProto.FLOAT, np.float32),
    "float16": (TensorProto.FLOAT16, np.float16),
}
#: Ways of writing weights (see the module docstring).
WEIGHT_MODES = ("zeros", "random")


@dataclass(frozen=True)
class Tensor:
    """A tensor of the graph being built: its name and its static shape (elements per dimension).

    ``alias_of`` marks a value that the exporter computed as a separate no-op (PyTorch's ``sum()`` starts
    with ``0 + x``; the ``Add`` of 0 is removed only after common-subexpression elimination), so it is the
    same ONNX tensor but not the same value for sharing: see :attr:`identity`.
    """

    name: str
    shape: tuple[int, ...]
    alias_of: tuple[Any, ...] | None = None

    @property
    def identity(self) -> Any:
        """What sharing of repeated nodes compares: the name, or the no-op that made this alias."""
        return self.name if self.alias_of is None else self.alias_of


class GraphBuilder:
    """Accumulates nodes, initializers and graph inputs, then writes an ``onnx.ModelProto``.

    Args:
        name: graph name.
        dtype: element type of inputs, weights and activations (a key of :data:`DTYPES`).
        weights: ``"zeros"`` (light ``ConstantOfShape`` fills) or ``"random"`` (real random initializers).
        seed: seed of the random weights.
    """

    def __init__(self, name: str, *, dtype: str = "float32", weights: str = "zeros", seed: int = 0) -> None:
        if dtype not in DTYPES:
            raise DataError(f"dtype {dtype!r} is not supported by the zoo; use one of {', '.join(DTYPES)}")
        if weights not in WEIGHT_MODES:
            raise DataError(f"weights={weights!r} is not known; use one of {', '.join(WEIGHT_MODES)}")
        self.name = name
        self.elem_type, self.np_dtype = DTYPES[dtype]
        self._rng = np.random.default_rng(seed) if weights == "random" else None
        self._nodes: list[onnx.NodeProto] = []
        self._initializers: list[onnx.TensorProto] = []
        self._inputs: list[onnx.ValueInfoProto] = []
        self._used_names: set[str] = set()
        self._counters: dict[str, int] = {}
        self._shared: dict[tuple[Any, ...], Tensor] = {}
        self._attributes: dict[tuple[str, str], onnx.AttributeProto] = {}
        self._fills: dict[float, onnx.AttributeProto] = {}

    def _make_node(self, op_type: str, inputs: Sequence[str], output: str, **attributes: Any) -> None:
        # helper.make_node rebuilds every attribute; NAS loops build the same few thousands of times
        attrs = []
        for key, value in sorted(attributes.items()):
            cache_key = (key, repr(value))
            if cache_key not in self._attributes:
                self._attributes[cache_key] = helper.make_attribute(key, value)
            attrs.append(self._attributes[cache_key])
        self._nodes.append(
            onnx.NodeProto(op_type=op_type, input=inputs, output=[output], name=output, attribute=attrs)
        )

    def fresh(self, stem: str) -> str:
        """A tensor/node name not used yet, ``stem`` or ``stem_<k>``."""
        k = self._counters.get(stem, 0)
        name = stem if k == 0 else f"{stem}_{k}"
        while name in self._used_names:
            k += 1
            name = f"{stem}_{k}"
        self._counters[stem] = k + 1
        self._used_names.add(name)
        return name

    def input(self, name: str, shape: Sequence[int]) -> Tensor:
        """Declare a graph input of the builder's dtype and static ``shape``."""
        name = self.fresh(name)
        self._inputs.append(helper.make_tensor_value_info(name, self.elem_type, list(shape)))
        return Tensor(name, tuple(shape))

    def weight(self, stem: str, shape: Sequence[int], *, fill: float = 0.0, fan_in: int = 1) -> str:
        """A weight or buffer tensor of ``shape`` in the builder's dtype; returns its name.

        ``fill`` is the value of a light (``"zeros"``) weight; random weights are ``N(fill, 1/fan_in)`` when
        ``fill`` is 0, else ``fill`` plus 1 % noise (normalisation scales and variances stay positive).
        """
        name = self.fresh(stem)
        shape = [int(d) for d in shape]
        if self._rng is None:
            dims = self.fresh(f"{stem}_shape")
            self._initializers.append(
                TensorProto(name=dims, data_type=TensorProto.INT64, dims=[len(shape)], int64_data=shape)
            )
            if fill not in self._fills:
                value = numpy_helper.from_array(np.asarray([fill], dtype=self.np_dtype), "value")
                self._fills[fill] = helper.make_attribute("value", value)
            self._nodes.append(
                onnx.NodeProto(
                    op_type="ConstantOfShape",
                    input=[dims],
                    output=[name],
                    name=name,
                    attribute=[self._fills[fill]],
                )
            )
        else:
            noise = self._rng.standard_normal(shape, dtype=np.float32)
            values = noise / math.sqrt(fan_in) if fill == 0.0 else fill * (1.0 + 0.01 * noise)
            self._initializers.append(numpy_helper.from_array(values.astype(self.np_dtype), name))
        return name

    def int64_constant(self, stem: str, values: Sequence[int]) -> str:
        """A ``Constant`` node holding a 1-D int64 tensor (a ``Reshape`` shape); returns its output name."""
        name = self.fresh(stem)
        tensor = numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)
        self._make_node("Constant", [], name, value=tensor)
        return name

    def scalar_constant(self, stem: str, value: float) -> str:
        """A ``Constant`` node holding a 0-d tensor of the builder's dtype; returns its output name."""
        name = self.fresh(stem)
        tensor = numpy_helper.from_array(np.asarray(value, dtype=self.np_dtype), name)
        self._make_node("Constant", [], name, value=tensor)
        return name

    def shared(self, share_key: tuple[Any, ...]) -> Tensor | None:
        """The output of the node already appended under ``share_key``, or None."""
        return self._shared.get(share_key)

    def node(
        self,
        op_type: str,
        inputs: Sequence[str],
        out_shape: Sequence[int],
        *,
        share_key: tuple[Any, ...] | None = None,
        **attributes: Any,
    ) -> Tensor:
        """Append one single-output node and return its output.

        ``share_key``, given for nodes without learned inputs, identifies the computation: a second request
        with the same key returns the first node's output instead of a new node.
        """
        if share_key is not None and share_key in self._shared:
            return self._shared[share_key]
        name = self.fresh(op_type)
        self._make_node(op_type, inputs, name, **attributes)
        out = Tensor(name, tuple(int(d) for d in out_shape))
        if share_key is not None:
            self._shared[share_key] = out
        return out

    def model(self, outputs: Sequence[Tensor], *, doc: str = "") -> onnx.ModelProto:
        """The finished model (opset :data:`OPSET`, IR :data:`IR_VERSION`) with ``outputs`` as its outputs."""
        graph = helper.make_graph(
            self._nodes,
            self.name,
            self._inputs,
            [helper.make_tensor_value_info(t.name, self.elem_type, list(t.shape)) for t in outputs],
            initializer=self._initializers,
            doc_string=doc,
        )
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="estimator.zoo",
        )


def pooled_size(size: int, kernel: int, stride: int, padding: int, what: str) -> int:
    """Output length of a convolution/pooling window along one axis (dilation 1, floor mode).

    Raises DataError when the window does not fit (``what`` names the layer in the message).
    """
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise DataError(
            f"{what}: a {kernel}-wide window with padding {padding} does not fit an input of {size}; "
            "use a larger input or a smaller kernel"
        )
    return out
