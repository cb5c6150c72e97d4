"""The shortcuts of loading, costing and fusion give what the plain code gives: records built by frozen_record equal
their dataclass's own, ONNX's inference run on the model itself only when a light copy would be the same, stored
tensors read once, zero fills, dead nodes found with set operations."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import pytest
from onnx import parser

import estimator.graph.inference as inference
from estimator.cost.kernels import Kernel, fuse_kernels
from estimator.cost.nodes import NodeCost, TensorRead, count_costs
from estimator.errors import ModelFormatError
from estimator.graph.folding import _fold_constant_of_shape
from estimator.graph.freeze import _decode_attributes, _decode_tensor
from estimator.graph.liveness import _is_zero_constant, dead_nodes
from estimator.graph.load import load_graph
from estimator.graph.reading import RawSize, node_views, stored_tensor, stored_tensors, to_array_fast
from estimator.graph.structure import Node, TensorInfo
from estimator.graph.validate import SMALL_TENSOR_BYTES, _check_stored, _has_data, is_small_tensor
from estimator.zoo.nasbench201 import nasbench201
from estimator.zoo.transformers import bert_encoder

HEADER = '<ir_version: 10, opset_import: ["" : 20]>\n'
CELL = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


def _same_record(record: object) -> bool:
    """``record`` has exactly its dataclass's fields and equals the object its ``__init__`` builds from them."""
    cls = type(record)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    computed = ("numel", "nbytes") if cls is TensorInfo else ()  # TensorInfo's computed_once values
    kept = {k for k in vars(record) if k not in computed}
    return kept == set(names) and cls(**{k: getattr(record, k) for k in names}) == record


@pytest.mark.parametrize(
    "model",
    [nasbench201(CELL), bert_encoder(layers=1, hidden=32, heads=2, ffn=64, batch=1, seq=8)],
    ids=["nb201", "bert"],
)
def test_records_built_by_frozen_record_equal_their_dataclass_init(model):
    graph = load_graph(model)
    report = count_costs(graph)
    kernels = fuse_kernels(report)
    records = [*graph.nodes, *graph.tensors.values(), *report.nodes, *kernels.kernels]
    records += [r for n in report.nodes for r in n.reads]
    kinds = {type(r) for r in records}
    assert kinds == {Node, TensorInfo, NodeCost, TensorRead, Kernel}
    assert all(_same_record(r) for r in records if type(r) is not Node)
    # Node holds numpy attribute values (no == between whole records): compare field by field.
    for node in graph.nodes:
        names = [f.name for f in dataclasses.fields(Node)]
        assert set(vars(node)) == set(names)


def _parts(graph) -> tuple:
    return (
        [(n.name, n.op_type, n.inputs, n.outputs, n.constant_folded) for n in graph.nodes],
        dict(graph.tensors),
        dict(graph.constant_roots),
        {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in graph.constants.items()},
    )


@pytest.mark.parametrize(
    "text, batch, reused",
    [
        ("g (float[1,4] x) => (float[1,4] y) { y = Relu (x) }", None, True),
        ("g (float[N,4] x) => (float[N,4] y) { y = Relu (x) }", 3, False),  # a symbol to bind
        ("g (float[2,4] x) => (float[2,4] y) { y = Relu (x) }", 5, False),  # re-batched
        (  # a large initializer becomes a typed input in the light copy
            "g (float[1,4] x) => (float[1,5000] y) { y = MatMul (x, w) }",
            None,
            False,
        ),
    ],
)
def test_inference_runs_on_the_model_itself_only_when_a_light_copy_would_be_the_same(
    text, batch, reused, monkeypatch
):
    model = parser.parse_model(HEADER + text)
    if "MatMul" in text:
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((4, 5000), np.float32), "w"))
    seen = []
    infer = inference._infer

    def spy(m):
        seen.append(m)
        return infer(m)

    monkeypatch.setattr("estimator.graph.load._infer", spy)
    fast = load_graph(model, batch=batch)
    assert (seen[0] is model) is reused
    monkeypatch.setattr(inference, "_light_already", lambda *args: False)
    plain = load_graph(model, batch=batch)
    assert seen[-1] is not model
    assert _parts(fast) == _parts(plain)


def test_nasbench201_cells_are_inferred_in_place_and_load_as_from_a_copy(monkeypatch):
    model = nasbench201(CELL)
    fast = load_graph(model)
    monkeypatch.setattr(inference, "_light_already", lambda *args: False)
    assert _parts(fast) == _parts(load_graph(model))


@pytest.mark.parametrize(
    "tensor",
    [
        onnx.numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3), "raw"),
        onnx.helper.make_tensor("typed", onnx.TensorProto.INT64, [3], [4, 5, 6]),
        onnx.helper.make_tensor("floats", onnx.TensorProto.FLOAT, [2], [0.5, -1.0]),
        onnx.helper.make_tensor("empty", onnx.TensorProto.FLOAT, [0, 3], []),
        onnx.TensorProto(name="stripped", data_type=onnx.TensorProto.FLOAT, dims=[2, 2]),
        onnx.numpy_helper.from_array(np.arange(20000, dtype=np.float32).reshape(100, 200), "large"),
    ],
    ids=lambda t: t.name,
)
def test_a_stored_tensor_reads_as_its_proto(tensor):
    view = stored_tensor(tensor)
    assert (view.name, view.dims, view.data_type) == (tensor.name, tuple(tensor.dims), tensor.data_type)
    assert view.numel == int(np.prod(tensor.dims)) and not view.external
    stored = bool(len(tensor.raw_data) or len(tensor.int64_data) or len(tensor.float_data))
    assert _has_data(view) is _has_data(tensor) is (stored or view.numel == 0)
    # A weight's bytes are not copied into the view (only their length), yet read as the proto's.
    assert isinstance(view.fields.get("raw_data"), RawSize) is (len(tensor.raw_data) > 65536)
    if _has_data(tensor):
        _check_stored(view, "t")
        got, expected = to_array_fast(view), onnx.numpy_helper.to_array(tensor)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_stored_tensors_and_node_views_follow_the_graph():
    model = nasbench201(CELL)
    assert [t.name for t in stored_tensors(model.graph)] == [t.name for t in model.graph.initializer]
    for view, node in zip(node_views(model.graph), model.graph.node, strict=True):
        assert view.attribute == tuple(node.attribute)
        assert view.attribute_names == tuple(a.name for a in node.attribute)
        assert view.attribute_types == tuple(a.type for a in node.attribute)
        from_view, from_proto = _decode_attributes(view), _decode_attributes(node)
        assert list(from_view) == list(from_proto)  # same names, same order
        for name, value in from_proto.items():
            assert type(from_view[name]) is type(value)
            assert (
                np.array_equal(from_view[name], value)
                if isinstance(value, np.ndarray)
                else from_view[name] == value
            )


@pytest.mark.parametrize(
    "fill, dtype",
    [
        (0.0, np.float32),
        (-0.0, np.float32),
        (1.5, np.float32),
        (0, np.int64),
        (7, np.int64),
        (False, np.bool_),
    ],
)
def test_constant_of_shape_fills_keep_every_bit(fill, dtype):
    value = np.array([fill], dtype=dtype)
    (out,) = _fold_constant_of_shape([np.array([2, 3], np.int64)], {"value": value})
    expected = np.full((2, 3), value[0], dtype=dtype)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    assert out.tobytes() == expected.tobytes()  # -0.0 keeps its sign bit
    (default,) = _fold_constant_of_shape([np.array([4], np.int64)], {})
    assert default.dtype == np.float32 and default.tobytes() == bytes(16)


def _dead_reference(graph) -> list[bool]:
    """Dead nodes by the definition: walk back from the outputs; ``Mul(x, 0)`` needs only its zero."""
    needed = set(graph.outputs)
    dead = [False] * len(graph.nodes)
    for node in reversed(graph.nodes):
        if not any(o in needed for o in node.outputs if o):
            dead[node.index] = True
            continue
        zeros = [i for i in node.inputs if _is_zero_constant(graph, i)]
        for name in node.inputs:
            if name and (node.op_type != "Mul" or not zeros or name in zeros):
                needed.add(name)
    return dead


@pytest.mark.parametrize(
    "cell, any_dead",
    [
        (CELL, False),  # every 'none' edge reads a tensor that another edge also reads
        ("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", True),  # node 1 feeds only x * 0
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", True),
    ],
)
def test_dead_nodes_follow_the_definition(cell, any_dead):
    graph = load_graph(nasbench201(cell))
    dead = dead_nodes(graph)
    assert dead.dtype == np.bool_ and dead.tolist() == _dead_reference(graph)
    assert bool(dead.any()) is any_dead


def test_a_large_weight_that_does_not_fill_its_dims_is_still_refused():
    tensor = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[100, 200])
    tensor.raw_data = bytes(70000)  # 17,500 floats for 20,000 declared
    with pytest.raises(ModelFormatError, match="stores 70,000 bytes"):
        _check_stored(stored_tensor(tensor), "initializer 'w'")


def _fill_graph(shape: list[int], shape_type: str, fill: str) -> onnx.ModelProto:
    """``y = x + ConstantOfShape(shape)`` with the shape a stored initializer and ``fill`` the value attribute."""
    dims = ", ".join(str(d) for d in shape)
    attribute = f"<value = {fill}>" if fill else ""
    return parser.parse_model(
        HEADER
        + f"""g (float[{dims}] x) => (float[{dims}] y)
        <{shape_type}[{len(shape)}] s = {{{dims}}}>
        {{ c = ConstantOfShape {attribute} (s)
           y = Add(x, c) }}"""
    )


@pytest.mark.parametrize(
    "shape, shape_type, fill, expected",
    [
        ([2, 3], "int64", "float[1] {0.0}", np.zeros((2, 3), np.float32)),
        ([3, 2], "int64", "float[1] {0.0}", np.zeros((3, 2), np.float32)),  # same bytes count, other shape
        ([2, 3], "int64", "float[1] {1.0}", np.ones((2, 3), np.float32)),  # other value
        ([2, 3], "int64", "float[1] {-0.0}", np.full((2, 3), -0.0, np.float32)),  # other sign bit
        ([2, 3], "int64", "", np.zeros((2, 3), np.float32)),  # no value attribute: float32 zeros
        ([6], "int64", "float[1] {0.0}", np.zeros(6, np.float32)),
    ],
)
def test_remembered_fills_answer_each_content_with_its_own_value(shape, shape_type, fill, expected):
    # Every case is loaded after all the others (the memo holds their fills): each still gets its own value.
    for other in ([2, 3], [3, 2], [6]):
        for other_fill in ("float[1] {0.0}", "float[1] {1.0}", "float[1] {-0.0}", ""):
            load_graph(_fill_graph(other, "int64", other_fill))
    value = load_graph(_fill_graph(shape, shape_type, fill)).constants["c"]
    assert value.dtype == expected.dtype and value.shape == expected.shape
    assert value.tobytes() == expected.tobytes()
    assert not value.flags.writeable  # shared by every graph with this content: nobody may write to it


def test_values_decoded_with_the_views_are_those_of_the_protos():
    tensor = onnx.numpy_helper.from_array(np.array([1.5, -0.0], np.float32), "t")
    attrs = [
        onnx.helper.make_attribute("i", 3),
        onnx.helper.make_attribute("t", tensor),  # a tensor between other kinds: filled in at its place
        onnx.helper.make_attribute("f", 0.25),
        onnx.helper.make_attribute("s", "same"),
        onnx.helper.make_attribute("ints", [1, 2]),
        onnx.helper.make_attribute("floats", [0.5]),
        onnx.helper.make_attribute("strings", ["a", "b"]),
    ]
    repeated = [attrs[1], onnx.helper.make_attribute("t", 7)]  # one name twice: the last value, first place
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Custom", ["x"], ["y"], domain="test.domain"),
            onnx.helper.make_node("Custom", ["x"], ["z"], domain="test.domain"),
            onnx.helper.make_node("Custom", ["x"], ["w"], domain="test.domain"),
        ],
        "g",
        [],
        [],
    )
    graph.node[0].attribute.extend(attrs)
    graph.node[1].attribute.extend(repeated)
    graph.node[2].attribute.extend(attrs[:1] + attrs[2:])  # no tensor: the view's dict as it is
    for view, proto in zip(node_views(graph), graph.node, strict=True):
        from_view, from_proto = _decode_attributes(view), _decode_attributes(proto)
        assert list(from_view) == list(from_proto)
        for name, value in from_proto.items():
            assert type(from_view[name]) is type(value)
            if isinstance(value, np.ndarray):
                assert from_view[name].tobytes() == value.tobytes() and from_view[name].dtype == value.dtype
            else:
                assert from_view[name] == value
    assert node_views(graph)[1].decoded is None  # decoded from the protos, in order


def test_fills_remembered_by_identity_answer_as_the_plain_fold():
    from estimator.graph import folding

    fill = {"value": np.array([2.5], np.float32)}
    fill["value"].setflags(write=False)
    shape = np.array([2, 3], np.int64)
    writable = folding._fold_fill(shape, fill)  # a writable shape: remembered by content only
    assert (id(shape), id(fill["value"])) not in folding._FILLS_BY_ID
    shape.setflags(write=False)
    for _ in range(2):  # the second answer comes from the identity memo
        out = folding._fold_fill(shape, fill)
        assert [a.tobytes() for a in out] == [np.full((2, 3), 2.5, np.float32).tobytes()]
        assert out[0].dtype == np.float32 and not out[0].flags.writeable
    assert (id(shape), id(fill["value"])) in folding._FILLS_BY_ID
    assert [a.tobytes() for a in writable] == [a.tobytes() for a in out]
    # A new array of the same content answers the same (by content), however the ids fall.
    other = np.array([2, 3], np.int64)
    other.setflags(write=False)
    assert folding._fold_fill(other, fill)[0].tobytes() == out[0].tobytes()
    # A weight-sized fill is no value: remembered as None.
    large = np.array([64, 64, 3, 3], np.int64)
    large.setflags(write=False)
    assert folding._fold_fill(large, fill) is None and folding._fold_fill(large, fill) is None


def test_remembered_fills_keep_the_fill_dtype():
    ints = parser.parse_model(
        HEADER
        + """g (int64[4] x) => (int64[4] y) <int64[1] s = {4}>
        { c = ConstantOfShape <value = int64[1] {0}> (s)
          y = Add(x, c) }"""
    )
    floats = parser.parse_model(
        HEADER
        + """g (float[4] x) => (float[4] y) <int64[1] s = {4}>
        { c = ConstantOfShape <value = float[1] {0.0}> (s)
          y = Add(x, c) }"""
    )
    for model, dtype in ((ints, np.int64), (floats, np.float32), (ints, np.int64)):
        graph = load_graph(model)
        assert graph.constants["c"].dtype == dtype and graph.tensors["c"].dtype == np.dtype(dtype).name
        assert graph.constants["c"].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "dims, raw_bytes, extra, ok",
    [
        ([2, 3], 24, {}, True),
        ([2, 3], 20, {}, False),  # too few bytes
        ([2, 3], 24, {"int64_data": [1]}, False),  # values in a field of another type too
        (
            [2, 3],
            24,
            {"float_data": [1.0] * 6},
            True,
        ),  # its own typed field as well: the full check allows it
        ([0], 0, {}, True),
    ],
)
def test_raw_only_tensors_are_checked_as_the_full_check_does(dims, raw_bytes, extra, ok):
    tensor = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=dims, **extra)
    if raw_bytes:
        tensor.raw_data = bytes(raw_bytes)
    if ok:
        _check_stored(stored_tensor(tensor), "initializer 'w'")
    else:
        with pytest.raises(ModelFormatError):
            _check_stored(stored_tensor(tensor), "initializer 'w'")


def _shape_tensor(name: str, values: list[int], data_type: int = onnx.TensorProto.INT64) -> onnx.TensorProto:
    tensor = onnx.TensorProto(name=name, data_type=data_type, dims=[len(values)])
    (tensor.int64_data if data_type == onnx.TensorProto.INT64 else tensor.int32_data).extend(values)
    return tensor


def test_remembered_stored_tensors_read_as_their_own_proto():
    tensors = [
        _shape_tensor("s", [16, 3, 3, 3]),
        _shape_tensor("s", [16, 3, 3, 4]),  # one value differs
        _shape_tensor("t", [16, 3, 3, 3]),  # the name differs
        _shape_tensor("s", [16, 3, 3, 3], onnx.TensorProto.INT32),  # the element type differs
    ]
    for _ in range(2):  # the second round is answered from what the first remembered
        for tensor in tensors:
            view = stored_tensor(tensor)
            assert view.proto is tensor and view.name == tensor.name and view.dims == tuple(tensor.dims)
            assert view.data_type == tensor.data_type and not view.external
            expected = onnx.numpy_helper.to_array(tensor)
            got = to_array_fast(view)
            assert got.dtype == expected.dtype and got.tolist() == expected.tolist()


def test_a_remembered_stored_tensor_holds_nothing_of_the_proto_it_was_read_from():
    first = _shape_tensor("s", [1, 2, 3])
    stored_tensor(first)
    first.int64_data[0] = 99  # the caller changes its model after loading it
    again = stored_tensor(_shape_tensor("s", [1, 2, 3]))
    assert list(again.fields["int64_data"]) == [1, 2, 3]
    assert to_array_fast(again).tolist() == [1, 2, 3]
    _check_stored(again, "initializer 's'")


_SUB_BYTE_BITS = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4, onnx.TensorProto.INT2: 2}


def _tensor(dims: list[int], data_type: int, payload: str | None) -> onnx.TensorProto:
    t = onnx.TensorProto(name="c", data_type=data_type, dims=dims)
    count = int(np.prod(dims)) if dims else 1
    if payload == "raw":
        bits = _SUB_BYTE_BITS.get(data_type) or 8 * onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
        t.raw_data = bytes(-(-count * bits // 8))  # packed, as ONNX stores sub-byte types
    elif payload == "typed":
        t.int32_data.extend([1] * count)
    elif payload == "external":
        t.data_location = onnx.TensorProto.EXTERNAL
        t.external_data.add(key="location", value="w.bin")
    return t


@pytest.mark.parametrize(
    "dims, data_type, payload",
    [
        ([], onnx.TensorProto.FLOAT, "raw"),
        ([64], onnx.TensorProto.FLOAT, "raw"),  # 256 bytes of data: just over with name, type and dims
        ([60], onnx.TensorProto.FLOAT, "raw"),
        ([512], onnx.TensorProto.UINT8, "raw"),
        ([513], onnx.TensorProto.UINT8, "raw"),
        ([100, 200], onnx.TensorProto.FLOAT, "raw"),
        ([40], onnx.TensorProto.INT8, "typed"),
        ([600], onnx.TensorProto.INT8, "typed"),
        ([600], onnx.TensorProto.INT2, "raw"),  # 150 bytes of data: small, though 600 elements
        ([1025], onnx.TensorProto.INT2, "raw"),
        ([2, 3], onnx.TensorProto.FLOAT, None),
    ],
)
def test_small_tensor_attributes_are_those_that_serialize_small(dims, data_type, payload):
    # with its data present, the dims shortcut answers as ByteSize() itself does
    tensor = _tensor(dims, data_type, payload)
    assert is_small_tensor(tensor) is (tensor.ByteSize() <= SMALL_TENSOR_BYTES)


def test_a_large_external_tensor_attribute_decodes_as_before():
    # 20,000 elements declared, data outside the file: not remembered, and no value either way
    tensor = _tensor([100, 200], onnx.TensorProto.FLOAT, "external")
    assert tensor.ByteSize() <= SMALL_TENSOR_BYTES and not is_small_tensor(tensor)
    attr = onnx.helper.make_attribute("value", tensor)
    assert _decode_tensor(attr) is None
