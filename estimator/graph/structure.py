"""The loaded graph's data: :class:`TensorInfo`, :class:`Node` and :class:`Graph` (frozen dataclasses), and the
domain names. Everything downstream of loading reads only these."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from estimator.dtypes import storage_bytes

#: Default domain name (the protobuf's empty string).
ONNX_DOMAIN = "ai.onnx"
#: Largest element count one tensor may have before the graph is called absurd (2**40 elements).
MAX_TENSOR_ELEMENTS = 1 << 40


K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store ``value`` under ``key`` in a module-level memo and return it; a memo holding ``limit`` entries is
    emptied first (a bound on memory: its keys come from the files read)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


class computed_once:
    """A property computed on first read and kept in the instance (``functools.cached_property`` without the lock
    Python 3.11 takes on every first read: loading and costing read it for every tensor). Frozen dataclasses may
    use it: the value is written to the instance's ``__dict__``, which later reads find first."""

    def __init__(self, compute: Any) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


R = TypeVar("R")
_new = object.__new__
_set = object.__setattr__


def frozen_record(cls: type[R], fields: dict[str, Any]) -> R:
    """``cls(**fields)`` for a frozen dataclass ``cls`` when ``fields`` names every field (defaults included) and
    nothing else: an equal object (same fields, hash and repr), built without the generated ``__init__``, which
    sets each field through ``object.__setattr__`` - most of the time of the thousands of small records a load,
    a costing and a fusion make. ``fields`` becomes the instance's ``__dict__``: the caller must not keep it.
    Only for classes without ``__post_init__`` or slots (Node, TensorInfo, NodeCost, Kernel)."""
    obj = _new(cls)
    _set(obj, "__dict__", fields)
    return obj


def tensor_infos(types: Mapping[str, tuple[tuple[int, ...] | None, str]]) -> dict[str, TensorInfo]:
    """``{name: TensorInfo(name, shape, dtype)}`` for every ``name: (shape, dtype)`` of ``types``, built as
    :func:`frozen_record` builds them, without a call per tensor."""
    out = {}
    for name, (shape, dtype) in types.items():
        info = _new(TensorInfo)
        _set(info, "__dict__", {"name": name, "shape": shape, "dtype": dtype})
        out[name] = info
    return out


@dataclass(frozen=True)
class TensorInfo:
    """Shape and element type of one tensor.

    Attributes:
        name: tensor name in the graph.
        shape: concrete dimensions, or ``None`` when the shape could not be determined.
        dtype: element type name (``float32``, ``float16``, ``int8``, ...; ``undefined`` if unknown).
    """

    name: str
    shape: tuple[int, ...] | None
    dtype: str

    @computed_once
    def numel(self) -> int | None:
        """Element count, or None when the shape is unknown (computed once: costing asks for it often)."""
        return None if self.shape is None else math.prod(self.shape)

    @computed_once
    def nbytes(self) -> int | None:
        """Storage in bytes, or None when the shape is unknown."""
        n = self.numel
        return None if n is None else storage_bytes(n, self.dtype)


@dataclass(frozen=True)
class Node:
    """One ONNX node.

    Attributes:
        index: position in the graph's topological order.
        name: node name (made unique: ``op_type_index`` when the model left it empty).
        op_type: ONNX op type, e.g. ``Conv``.
        domain: canonical domain (``ai.onnx`` for the default domain).
        inputs: input tensor names; ``""`` for an omitted optional input.
        outputs: output tensor names; ``""`` for an omitted optional output.
        attributes: attribute values decoded to Python / numpy (subgraphs are in ``subgraphs``).
        subgraphs: graph attributes (Loop ``body``, If ``then_branch``/``else_branch``, Scan ``body``).
        constant_folded: every input is a constant, so a runtime folds the node at load time.
    """

    index: int
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: Mapping[str, Any]
    subgraphs: Mapping[str, Graph] = field(default_factory=dict)
    constant_folded: bool = False


@dataclass(frozen=True)
class Graph:
    """A loaded, shaped ONNX graph, nodes in topological order. Immutable.

    Attributes:
        name: graph name.
        nodes: nodes in topological order.
        tensors: every known tensor name -> :class:`TensorInfo` (includes outer-scope ones in subgraphs).
        inputs: names of the real (non-constant) graph inputs.
        outputs: names of the graph outputs.
        opsets: domain -> opset version imported by the model.
        constant_roots: constant tensor name -> the name of the stored constant it is a view/copy of
            (an initializer, a ``Constant`` output, a ``ConstantOfShape`` output). Roots map to themselves.
        constants: values of small constants (shape arithmetic, axes, trip counts) known at load time.
        producers: tensor name -> index of the node that produces it.
        symbolic_bindings: symbolic dimension name -> the value it was bound to.
        ir_version: the model's IR version.
    """

    name: str
    nodes: tuple[Node, ...]
    tensors: Mapping[str, TensorInfo]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opsets: Mapping[str, int]
    constant_roots: Mapping[str, str]
    constants: Mapping[str, np.ndarray]
    producers: Mapping[str, int]
    symbolic_bindings: Mapping[str, int] = field(default_factory=dict)
    ir_version: int = 0

    def tensor(self, name: str) -> TensorInfo | None:
        """The :class:`TensorInfo` of ``name``, or None for an omitted/unknown tensor."""
        return self.tensors.get(name) if name else None

    def is_constant(self, name: str) -> bool:
        """Whether tensor ``name`` is known at load time (derived from stored constants only)."""
        return name in self.constant_roots

    def constant_value(self, name: str) -> np.ndarray | None:
        """Value of a small constant known at load time, or None."""
        return self.constants.get(name)

    def opset(self, domain: str) -> int:
        """Opset version the model imports for ``domain`` (1 when it imports none)."""
        return self.opsets.get(domain, 1)

    @property
    def batch(self) -> int:
        """Samples per inference: the leading dimension of the first input with a known shape (1 if none)."""
        for name in self.inputs:
            info = self.tensors.get(name)
            if info is not None and info.shape:
                return int(info.shape[0])
        return 1


def canonical_domain(domain: str) -> str:
    """``""`` and ``"ai.onnx"`` both name the default domain; return ``"ai.onnx"`` for either."""
    return ONNX_DOMAIN if domain in ("", ONNX_DOMAIN) else domain
