"""Typed values (``ValueInfoProto``) written as protobuf wire bytes, appended to a graph in one call.

The light model of :mod:`estimator.graph.inference` declares every large weight as a typed input (a ViT-B has
about 200): built field by field through protobuf's Python API, each costs a dozen wrapper objects. The same
messages written as bytes and merged into the graph with one ``MergeFromString`` give the same graph (the same
serialized bytes: see ``tests/test_load_wire.py``).

Wire format (https://protobuf.dev/programming-guides/encoding/): a field is a key ``(number << 3) | wire type``
followed by its value; wire type 0 is a varint, 2 a length-delimited payload. The messages written, from
onnx.proto3 (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto3):

* ``GraphProto``: ``input`` = 11, ``value_info`` = 13 (repeated ``ValueInfoProto``);
* ``ValueInfoProto``: ``name`` = 1, ``type`` = 2 (``TypeProto``);
* ``TypeProto``: ``tensor_type`` = 1 (``TypeProto.Tensor``: ``elem_type`` = 1, ``shape`` = 2);
* ``TensorShapeProto``: ``dim`` = 1 (``Dimension``: ``dim_value`` = 1, ``dim_param`` = 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from estimator.graph.structure import remember

#: ``GraphProto`` field numbers of the repeated typed values this module writes.
GRAPH_INPUT, GRAPH_VALUE_INFO = 11, 13


def _varint(value: int) -> bytes:
    """``value`` as a protobuf varint (a negative int64 as its 64-bit two's complement, 10 bytes)."""
    value &= 0xFFFFFFFFFFFFFFFF
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(key: int, payload: bytes) -> bytes:
    """A length-delimited field: its key byte(s), the payload's length, the payload."""
    return _varint(key) + _varint(len(payload)) + payload


def _type_bytes(elem_type: int, dims: tuple[int | str, ...]) -> bytes:
    """The ``type`` field (a ``TypeProto``) of a ``ValueInfoProto`` for a tensor of ``elem_type`` with ``dims`` (ints as ``dim_value``, strings as
    ``dim_param``), the shape always present (an empty one for a scalar). Remembered per (type, dims)."""
    key = (elem_type, dims)
    known = _TYPES.get(key)
    if known is None:
        shape = b"".join(
            _delimited(0x0A, _delimited(0x12, d.encode()) if isinstance(d, str) else b"\x08" + _varint(d))
            for d in dims
        )
        tensor = b"\x08" + _varint(elem_type) + _delimited(0x12, shape)  # elem_type, shape
        known = _delimited(0x12, _delimited(0x0A, tensor))  # ValueInfoProto.type, TypeProto.tensor_type
        remember(_TYPES, key, known, _TYPES_LIMIT)
    return known


#: Most distinct (element type, dims) remembered by :func:`_type_bytes` (a few dozen bytes each).
_TYPES_LIMIT = 4096
_TYPES: dict[tuple, bytes] = {}


def typed_values(field_number: int, values: Iterable[tuple[str, int, Sequence[int | str]]]) -> bytes:
    """Wire bytes of the repeated ``GraphProto`` field ``field_number`` holding one ``ValueInfoProto`` per
    ``(name, ONNX element type code, dims)``, in order: what ``onnx.helper.make_tensor_value_info`` makes for
    each (the shape always present). Merge them into a graph with ``graph.MergeFromString``."""
    key = _varint(field_number << 3 | 2)
    parts = []
    append = parts.append
    types = _TYPES
    for name, elem_type, dims in values:
        encoded = name.encode()
        n = len(encoded)
        dims = tuple(dims)  # the same tuple when it is one
        kind = types.get((elem_type, dims)) or _type_bytes(elem_type, dims)
        # ValueInfoProto.name, then its type; lengths below 128 are one byte (the common case, without a call).
        message = (b"\x0a" + _ONE_BYTE[n] if n < 128 else b"\x0a" + _varint(n)) + encoded + kind
        m = len(message)
        append(key + _ONE_BYTE[m] if m < 128 else key + _varint(m))
        append(message)
    return b"".join(parts)


#: The varint of every value below 128: that byte.
_ONE_BYTE = tuple(bytes((i,)) for i in range(128))
