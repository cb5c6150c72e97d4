"""Typed values written as wire bytes (estimator.graph.wire) against onnx's own helper and protobuf's encoder."""

from __future__ import annotations

import onnx
import onnx.helper
import pytest

from estimator.graph.wire import GRAPH_INPUT, GRAPH_VALUE_INFO, _varint, typed_values

CASES = [
    ("t", onnx.TensorProto.FLOAT16, ()),  # a scalar: an explicitly empty shape
    ("t", onnx.TensorProto.FLOAT, (2, 3)),
    ("x", onnx.TensorProto.INT64, ("N", 4)),
    ("w", onnx.TensorProto.BFLOAT16, (1,)),
    ("big", onnx.TensorProto.FLOAT, (128256, 2048)),  # multi-byte varints
    ("zero", onnx.TensorProto.BOOL, (0, 5)),  # a zero dim_value is still written (proto2: set explicitly)
    (
        "nonascii_\u00e9\u4e2d",
        onnx.TensorProto.UINT8,
        ("__len_w\u00e9", 300),
    ),  # UTF-8 names, lengths in bytes
    ("neg", onnx.TensorProto.FLOAT, (-1, 3)),  # int64 two's complement (ten bytes)
    ("", onnx.TensorProto.UNDEFINED, (7,)),
]


@pytest.mark.parametrize(("name", "elem", "dims"), CASES)
def test_one_value_serializes_as_the_helper_makes_it(name, elem, dims):
    expected = onnx.helper.make_tensor_value_info(name, elem, list(dims))
    graph = onnx.GraphProto()
    graph.MergeFromString(typed_values(GRAPH_INPUT, [(name, elem, dims)]))
    assert len(graph.input) == 1 and not graph.value_info
    assert graph.input[0].SerializeToString() == expected.SerializeToString()
    assert graph.input[0] == expected


def test_many_values_keep_their_order_and_field():
    graph = onnx.GraphProto(name="g")
    graph.input.add().name = "first"
    graph.MergeFromString(typed_values(GRAPH_VALUE_INFO, CASES))
    graph.MergeFromString(typed_values(GRAPH_INPUT, CASES[:2]))
    assert [vi.name for vi in graph.value_info] == [c[0] for c in CASES]
    assert [vi.name for vi in graph.input] == ["first", "t", "t"]
    for vi, (name, elem, dims) in zip(graph.value_info, CASES, strict=True):
        assert vi == onnx.helper.make_tensor_value_info(name, elem, list(dims))
    assert graph.name == "g"  # merging appends, it replaces nothing


def test_nothing_to_write_is_empty_bytes():
    assert typed_values(GRAPH_INPUT, []) == b""


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63)])
def test_varint_matches_protobuf(value):
    # An int64 field of a message protobuf encodes: dim_value is field 1, varint (key byte 0x08).
    dim = onnx.TensorShapeProto.Dimension(dim_value=value)
    assert dim.SerializeToString() == b"\x08" + _varint(value)
