"""ONNX element types: names, storage bits, and the class of arithmetic they use.

Names follow numpy where numpy has one (``float32``, ``int8``) and ONNX otherwise (``bfloat16``,
``float8e4m3fn``, ``int4``). Storage is given in bits because int4/uint4/float4 pack two per byte.
"""

from __future__ import annotations

import onnx

#: ONNX TensorProto data type -> (name, bits of storage per element).
_ONNX_TYPES: dict[int, tuple[str, int]] = {
    onnx.TensorProto.FLOAT: ("float32", 32),
    onnx.TensorProto.UINT8: ("uint8", 8),
    onnx.TensorProto.INT8: ("int8", 8),
    onnx.TensorProto.UINT16: ("uint16", 16),
    onnx.TensorProto.INT16: ("int16", 16),
    onnx.TensorProto.INT32: ("int32", 32),
    onnx.TensorProto.INT64: ("int64", 64),
    onnx.TensorProto.STRING: ("string", 64),
    onnx.TensorProto.BOOL: ("bool", 8),
    onnx.TensorProto.FLOAT16: ("float16", 16),
    onnx.TensorProto.DOUBLE: ("float64", 64),
    onnx.TensorProto.UINT32: ("uint32", 32),
    onnx.TensorProto.UINT64: ("uint64", 64),
    onnx.TensorProto.COMPLEX64: ("complex64", 64),
    onnx.TensorProto.COMPLEX128: ("complex128", 128),
    onnx.TensorProto.BFLOAT16: ("bfloat16", 16),
}
for _name, _bits in (
    ("FLOAT8E4M3FN", 8),
    ("FLOAT8E4M3FNUZ", 8),
    ("FLOAT8E5M2", 8),
    ("FLOAT8E5M2FNUZ", 8),
    ("UINT4", 4),
    ("INT4", 4),
    ("FLOAT4E2M1", 4),
    ("FLOAT8E8M0", 8),
    ("UINT2", 2),
    ("INT2", 2),
):
    if hasattr(onnx.TensorProto, _name):
        _ONNX_TYPES[getattr(onnx.TensorProto, _name)] = (_name.lower(), _bits)

#: name -> bits of storage per element.
DTYPE_BITS: dict[str, int] = {name: bits for name, bits in _ONNX_TYPES.values()}


def dtype_name(elem_type: int) -> str:
    """Name of an ONNX ``TensorProto`` element type, ``"undefined"`` for 0 or an unknown code."""
    return _ONNX_TYPES.get(elem_type, ("undefined", 0))[0]


def dtype_bits(name: str) -> int:
    """Storage bits per element of a dtype name; 0 when the dtype is undefined or unknown."""
    return DTYPE_BITS.get(name, 0)


def storage_bytes(numel: int, dtype: str) -> int:
    """Bytes needed to store ``numel`` elements of ``dtype`` (sub-byte types packed, rounded up)."""
    return (numel * dtype_bits(dtype) + 7) // 8


#: name -> ONNX TensorProto code.
DTYPE_CODES: dict[str, int] = {name: code for code, (name, _bits) in _ONNX_TYPES.items()}
