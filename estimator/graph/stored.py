"""Stored tensors (initializers, tensor attributes) read into Python once, never their weight data: their fields,
whether they are small enough to be remembered by content, and their values as numpy arrays."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import onnx
import onnx.numpy_helper

from estimator.graph.structure import remember

#: Serialized size up to which a tensor attribute is remembered by content (its check, its value), bytes.
SMALL_TENSOR_BYTES = 256


def is_small_tensor(t: onnx.TensorProto) -> bool:
    """Whether a tensor attribute is remembered by content: it serializes to at most
    :data:`SMALL_TENSOR_BYTES` bytes.

    A tensor whose dims hold more than ``4 x SMALL_TENSOR_BYTES`` elements is taken as large without asking
    ``ByteSize()``, which with protobuf's upb backend takes time in proportion to the tensor (about 4 ms per
    10 MB: a model storing its weights in ``Constant`` nodes paid it twice per weight). Such a tensor holds more
    bytes than that whenever its data is present (every element type is at least 2 bits); when its data is
    external or missing it is still not remembered, which changes nothing but the memo: its check and its
    decoded value are functions of its content either way.
    """
    elements = 1
    for d in t.dims:
        elements *= d
    return elements <= 4 * SMALL_TENSOR_BYTES and t.ByteSize() <= SMALL_TENSOR_BYTES


def _numel(dims: Sequence[int]) -> int:
    return math.prod(dims)


def _is_external(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL


#: ONNX element types whose raw bytes are a native numpy array as they are (little-endian hosts).
_RAW_NUMPY_DTYPES = {
    onnx.TensorProto.FLOAT: np.dtype(np.float32),
    onnx.TensorProto.DOUBLE: np.dtype(np.float64),
    onnx.TensorProto.FLOAT16: np.dtype(np.float16),
    onnx.TensorProto.INT8: np.dtype(np.int8),
    onnx.TensorProto.INT16: np.dtype(np.int16),
    onnx.TensorProto.INT32: np.dtype(np.int32),
    onnx.TensorProto.INT64: np.dtype(np.int64),
    onnx.TensorProto.UINT8: np.dtype(np.uint8),
    onnx.TensorProto.UINT16: np.dtype(np.uint16),
    onnx.TensorProto.UINT32: np.dtype(np.uint32),
    onnx.TensorProto.UINT64: np.dtype(np.uint64),
    onnx.TensorProto.BOOL: np.dtype(np.bool_),
}


def to_array_fast(t: onnx.TensorProto | StoredTensor) -> np.ndarray:
    """``onnx.numpy_helper.to_array(t)`` (the same array), reading raw bytes of native numpy types directly:
    the library's general path looks up the type tables and external-data fields on every call."""
    view = t if isinstance(t, StoredTensor) else stored_tensor(t)
    code = view.data_type
    dtype = _RAW_NUMPY_DTYPES.get(code)
    fields = view.fields
    if dtype is not None and not view.external and "segment" not in fields:
        raw = fields.get("raw_data")
        if raw is not None:
            if sys.byteorder == "little":
                data = view.proto.raw_data if isinstance(raw, RawSize) else raw
                return np.frombuffer(data, dtype=dtype).reshape(view.dims)
        elif code == onnx.TensorProto.INT64:
            # A list first: numpy reads a protobuf container element by element, several times slower.
            return np.array(list(fields.get("int64_data", ())), dtype=np.int64).reshape(view.dims)
        elif code == onnx.TensorProto.FLOAT:
            return np.array(list(fields.get("float_data", ())), dtype=np.float32).reshape(view.dims)
    return onnx.numpy_helper.to_array(view.proto)


class StoredTensor(NamedTuple):
    """The fields of one stored ``TensorProto`` (an initializer, a tensor attribute) read into Python once, by
    one ``ListFields`` call: validation, typing, folding and the light model each read them otherwise.

    Attributes:
        name: the proto's name (bytes where the file holds invalid UTF-8).
        dims: its dimensions. data_type: its ONNX element type code.
        external: whether its data lives in an external file.
        fields: every field that is set, by name (repeated fields only when not empty; a ``raw_data`` larger
            than 64 KiB as its :class:`RawSize`).
        proto: the proto itself.
        key: its serialized bytes when it is remembered by content (see :func:`stored_tensor`), else None: what
            is a function of the content alone (its check, its value) is remembered under it.
    """

    name: str
    dims: tuple[int, ...]
    data_type: int
    external: bool
    fields: dict[str, object]
    proto: onnx.TensorProto
    key: bytes | None = None

    @property
    def numel(self) -> int:
        """Element count its dims declare."""
        return math.prod(self.dims)


class RawSize(int):
    """Stands for a large ``raw_data`` in :attr:`StoredTensor.fields`: its length in bytes (``len()`` and truth as
    the bytes'), without keeping a copy of a weight's bytes while the graph loads."""

    def __len__(self) -> int:
        return int(self)


#: ``raw_data`` up to this many bytes is kept in :attr:`StoredTensor.fields` (every constant whose values loading
#: reads is at most 4096 elements of at most 16 bytes); larger ones are read again from the proto when needed.
_KEPT_RAW_BYTES = 4096 * 16


def stored_tensor(t: onnx.TensorProto) -> StoredTensor:
    """The :class:`StoredTensor` of ``t``.

    Small tensors (shapes, axes, scales: the hundreds of shape initializers of a graph whose weights are fills)
    repeat within a graph and across the candidates of a NAS loop; their fields are remembered by the serialized
    tensor (name, type, dims and values), which is several times faster to read than the fields themselves. Only
    tensors whose fields are all immutable values (strings, numbers, bytes, dims kept as a tuple) are remembered."""
    dims = t.dims[:]
    if len(dims) <= 1 and (not dims or dims[0] <= _REMEMBERED_ELEMENTS):
        key = t.SerializeToString()
        known = _STORED.get(key)
        if known is not None:
            return _new_stored(StoredTensor, (*known, t, key))
        view = _read_stored(t)
        if view.fields.keys() <= _REMEMBERED_FIELDS:
            # Repeated fields as tuples: a remembered view holds nothing of the proto it was read from.
            fields = {k: tuple(v) if k in _REPEATED_FIELDS else v for k, v in view.fields.items()}
            known = remember(
                _STORED, key, (view.name, view.dims, view.data_type, view.external, fields), _STORED_LIMIT
            )
            return _new_stored(StoredTensor, (*known, t, key))
        return view
    return _read_stored(t)


#: Stored tensors remembered by :func:`stored_tensor`: scalars and vectors of at most this many elements...
_REMEMBERED_ELEMENTS = 16
#: ... whose set fields are only these (no external data, no segment)...
_REPEATED_FIELDS = frozenset({"dims", "int64_data", "int32_data", "float_data", "double_data", "uint64_data"})
_REMEMBERED_FIELDS = _REPEATED_FIELDS | {"name", "data_type", "raw_data", "doc_string"}
#: ... at most this many (a few hundred bytes each).
_STORED_LIMIT = 8192
_STORED: dict[bytes, tuple] = {}
_new_stored = tuple.__new__  # StoredTensor's own __new__ is a Python function; the tuple is the same


def _read_stored(t: onnx.TensorProto) -> StoredTensor:
    names = _FIELD_NAMES  # a field's name by its descriptor: a dict look-up, not a descriptor attribute read
    fields = {names[fd]: value for fd, value in t.ListFields()}
    raw = fields.get("raw_data")
    if raw is not None and len(raw) > _KEPT_RAW_BYTES:
        fields["raw_data"] = RawSize(len(raw))
    return _new_stored(
        StoredTensor,
        (
            fields.get("name", ""),
            tuple(fields["dims"][:]) if "dims" in fields else (),
            fields.get("data_type", 0),
            fields.get("data_location", 0) == onnx.TensorProto.EXTERNAL,
            fields,
            t,
            None,
        ),
    )


_FIELD_NAMES = {fd: fd.name for fd in onnx.TensorProto.DESCRIPTOR.fields}


def stored_tensors(graph: onnx.GraphProto) -> list[StoredTensor]:
    """One :class:`StoredTensor` per initializer of ``graph`` (not of its subgraphs), in stored order."""
    return [stored_tensor(t) for t in graph.initializer]
