"""What loading reads once and keys by content (this round): a tensor attribute's key read with its node, stored
tensors' values shared by content, a check passed once per content - each against its plain form."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import pytest

from estimator.errors import ModelFormatError
from estimator.graph.freeze import _decode_attributes, _decode_tensor, add_stored
from estimator.graph.load import load_graph
from estimator.graph.reading import node_views, stored_tensor, stored_tensors, to_array_fast
from estimator.graph.validate import SMALL_TENSOR_BYTES, is_small_tensor


def _tensor(name: str, dims: list[int], values: np.ndarray | None, data_type=onnx.TensorProto.FLOAT):
    if values is None:
        return onnx.TensorProto(name=name, data_type=data_type, dims=dims)
    return onnx.numpy_helper.from_array(values.reshape(dims), name)


TENSORS = [
    _tensor("a", [1], np.array([0.5], np.float32)),
    _tensor("b", [4], np.arange(4, dtype=np.int64)),
    _tensor("c", [64], np.zeros(64, np.float32)),  # 256 bytes of data: over the bound with its header
    _tensor("d", [2, 3], None),  # no data
    _tensor("e", [2000], np.ones(2000, np.uint8)),  # more elements than the dims shortcut allows
]


def test_a_nodes_tensor_keys_are_its_small_tensors_serialized():
    node = onnx.helper.make_node("Foo", [], ["y"], domain="x")
    for k, t in enumerate(TENSORS):
        node.attribute.append(onnx.helper.make_attribute(f"t{k}", t))
    node.attribute.append(onnx.helper.make_attribute("n", 3))
    graph = onnx.helper.make_graph([node, onnx.helper.make_node("Relu", ["y"], ["z"])], "g", [], [])
    with_tensors, plain = node_views(graph)
    expected = [t.SerializeToString() if is_small_tensor(t) else None for t in TENSORS] + [None]
    assert with_tensors.tensor_keys == tuple(expected)
    assert expected[0] is not None and expected[2] is None and expected[4] is None  # both kinds covered
    assert plain.tensor_keys == ()
    # decoded by key as without one (the NodeProto path reads each tensor itself)
    by_key, by_proto = _decode_attributes(with_tensors), _decode_attributes(node)
    assert by_key.keys() == by_proto.keys()
    for name, value in by_proto.items():
        other = by_key[name]
        assert type(other) is type(value)
        if isinstance(value, np.ndarray):
            assert value.dtype == other.dtype and np.array_equal(value, other)
        else:
            assert other == value
    for attr, key in zip(node.attribute, with_tensors.tensor_keys, strict=True):
        if attr.type == onnx.AttributeProto.TENSOR:
            plain_value, keyed = _decode_tensor(attr), _decode_tensor(attr, key)
            assert (plain_value is None) is (keyed is None)


def test_stored_values_match_their_protos_and_are_shared_by_content():
    # Two graphs' initializers with the same content: one read-only array; different content: its own.
    first = [
        _tensor("s", [3], np.array([1, 2, 3], np.int64)),
        _tensor("w", [2], np.array([1.5, 2], np.float32)),
    ]
    second = [
        _tensor("s", [3], np.array([1, 2, 3], np.int64)),
        _tensor("s2", [3], np.array([1, 2, 4], np.int64)),
    ]
    big = _tensor("big", [50, 50], np.arange(2500, dtype=np.float32))  # not remembered: read each time
    empty = _tensor("none", [4], None, onnx.TensorProto.INT64)  # no data: a type, no value
    results = []
    for tensors in ([*first, big, empty], [*second, big, empty]):
        stored = [stored_tensor(t) for t in tensors]
        types, constants = {}, {}
        add_stored(stored, types, constants)
        for t in tensors:
            assert types[t.name] == (tuple(t.dims), onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name)
        assert "none" not in constants
        for t in tensors[:-1]:
            expected = onnx.numpy_helper.to_array(t)
            got = constants[t.name]
            assert (
                got.dtype == expected.dtype and got.shape == expected.shape and np.array_equal(got, expected)
            )
        assert not constants["s"].flags.writeable  # shared: read-only
        results.append(constants)
    assert results[0]["s"] is results[1]["s"]  # same content (name, type, dims, values)
    assert results[1]["s2"] is not results[1]["s"] and results[1]["s2"].tolist() == [1, 2, 4]
    assert to_array_fast(stored_tensors(onnx.helper.make_graph([], "g", [], [], [big]))[0]).shape == (50, 50)


def _model_with(initializer: onnx.TensorProto) -> onnx.ModelProto:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", initializer.name], ["y"])], "g", [x], [y], [initializer]
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_a_check_passed_once_per_content_and_a_failed_one_refused_every_time():
    good = _tensor("c", [3], np.array([1, 2, 3], np.float32))
    bad = onnx.TensorProto(name="c", data_type=onnx.TensorProto.FLOAT, dims=[3])
    bad.float_data.extend([1.0, 2.0])  # two values for three elements
    assert bad.ByteSize() <= SMALL_TENSOR_BYTES
    for _ in range(2):
        assert load_graph(_model_with(good)).tensors["y"].shape == (3,)
        with pytest.raises(ModelFormatError, match="initializer 'c' declares dims \\[3\\]"):
            load_graph(_model_with(bad))


def test_stored_inputs_of_the_light_model_are_typed_as_when_read():
    # A BERT whose weights live outside the file (1-D biases as symbolic lengths): the light model declares them as
    # inputs; typed from the stored tensors without reading those inputs, the types and their order are the same.
    from estimator.graph.binding import _bind_dimensions
    from estimator.graph.inference import _collect_types, _infer, _light_model, symbolic_lengths
    from estimator.zoo.transformers import bert_encoder

    model = bert_encoder(layers=2, hidden=64, heads=2, ffn=128, batch=1, seq=8)
    stored = stored_tensors(model.graph)
    names = {t.name for t in stored}
    real = [vi for vi in model.graph.input if vi.name not in names]
    assert any(t.external for t in stored) and any(len(t.dims) == 1 and t.external for t in stored)
    inferred = _infer(_light_model(model, real, _bind_dimensions(real, None, {}), stored=stored)).graph
    lengths = symbolic_lengths(model.graph, stored)
    read, skipped = _collect_types(inferred, lengths), _collect_types(inferred, lengths, stored)
    assert list(read) == list(skipped)
    for types in (read, skipped):
        add_stored(stored, types, {})
    assert list(read.items()) == list(skipped.items())
