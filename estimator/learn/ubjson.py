"""A reader of Universal Binary JSON (UBJSON, https://ubjson.org), the format of xgboost's saved models.

Reading a shipped model's trees with it lets an estimate walk them as numpy arrays without importing xgboost
(about 1-2 s of CPU, scikit-learn included). Numbers are big-endian, as the specification says; typed
arrays (``[$d#...``) come back as numpy arrays of that type, everything else as Python values.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

#: Fixed-size value markers -> (struct format, numpy dtype), big-endian.
_NUMBERS = {
    ord("i"): (struct.Struct(">b"), np.dtype("i1")),
    ord("U"): (struct.Struct(">B"), np.dtype("u1")),
    ord("I"): (struct.Struct(">h"), np.dtype(">i2")),
    ord("l"): (struct.Struct(">i"), np.dtype(">i4")),
    ord("L"): (struct.Struct(">q"), np.dtype(">i8")),
    ord("d"): (struct.Struct(">f"), np.dtype(">f4")),
    ord("D"): (struct.Struct(">d"), np.dtype(">f8")),
}
_FLOATS = (ord("d"), ord("D"))
_NOOP, _DOLLAR, _HASH = ord("N"), ord("$"), ord("#")


class UBJSONError(ValueError):
    """The bytes are not valid UBJSON (or use a feature this reader does not know)."""


def loads(data: bytes) -> Any:
    """The value encoded in ``data``; raises :class:`UBJSONError` when it is malformed or has trailing bytes."""
    reader = _Reader(bytes(data))
    try:
        value = reader.value(reader.marker())
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise UBJSONError(f"truncated or malformed UBJSON ({exc})") from None
    if reader.pos != len(data):
        raise UBJSONError("trailing bytes after the UBJSON value")
    return value


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def marker(self) -> int:
        data, pos = self.data, self.pos
        while data[pos] == _NOOP:
            pos += 1
        self.pos = pos + 1
        return data[pos]

    def number(self, m: int) -> Any:
        fmt = _NUMBERS[m][0]
        value = fmt.unpack_from(self.data, self.pos)[0]
        self.pos += fmt.size
        return value

    def length(self) -> int:
        m = self.marker()
        if m not in _NUMBERS or m in _FLOATS:
            raise UBJSONError(f"a length must be an integer, got marker {chr(m)!r}")
        n = self.number(m)
        if n < 0:
            raise UBJSONError("negative length")
        return n

    def string(self) -> str:
        n = self.length()
        end = self.pos + n
        if end > len(self.data):
            raise UBJSONError("a string runs past the end of the data")
        text = self.data[self.pos : end].decode("utf-8")
        self.pos = end
        return text

    def value(self, m: int) -> Any:
        if m in _NUMBERS:
            return self.number(m)
        c = chr(m)
        if c in "SH":
            return self.string()
        if c == "C":
            self.pos += 1
            return chr(self.data[self.pos - 1])
        if c in "TF":
            return c == "T"
        if c == "Z":
            return None
        if c == "[":
            return self.array()
        if c == "{":
            return self.object()
        raise UBJSONError(f"unknown UBJSON marker {c!r}")

    def container_header(self) -> tuple[int | None, int | None]:
        kind, count = None, None
        data = self.data
        if data[self.pos] == _DOLLAR:
            self.pos += 1
            kind = self.marker()
            if data[self.pos] != _HASH:
                raise UBJSONError("a typed container must give its count")
        if data[self.pos] == _HASH:
            self.pos += 1
            count = self.length()
        return kind, count

    def array(self) -> Any:
        kind, count = self.container_header()
        if kind in _NUMBERS and count is not None:
            dtype = _NUMBERS[kind][1]
            end = self.pos + dtype.itemsize * count
            if end > len(self.data):
                raise UBJSONError("a typed array runs past the end of the data")
            out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
            self.pos = end
            return out.astype(dtype.newbyteorder("="))
        items = []
        if count is not None:
            for _ in range(count):
                items.append(self.value(kind if kind is not None else self.marker()))
            return items
        while True:
            m = self.marker()
            if m == ord("]"):
                return items
            items.append(self.value(m))

    def object(self) -> dict[str, Any]:
        kind, count = self.container_header()
        out: dict[str, Any] = {}
        if count is not None:
            for _ in range(count):
                key = self.string()
                out[key] = self.value(kind if kind is not None else self.marker())
            return out
        while True:
            if self.data[self.pos] == ord("}"):
                self.pos += 1
                return out
            key = self.string()
            out[key] = self.value(self.marker())
