"""Loading: weights never read, dimensions bound, constants followed to where they live, bad input rejected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper
import pytest
from conftest import parse

from estimator.cost.nodes import count_costs
from estimator.errors import (
    EstimatorError,
    GraphStructureError,
    InputFileError,
    InvalidDimensionError,
    ModelFormatError,
    UnboundDimensionError,
)
from estimator.graph.load import load_graph
from estimator.zoo.transformers import gpt2_decoder

LINEAR = """
<ir_version: 8, opset_import: ["" : 17]>
agraph (float[batch, 64] X) => (float[batch, 32] Y) {
    Y = Gemm <transB = 1> (X, W, B)
}
"""


def _linear_model(external: bool):
    graph = oh.make_graph(
        [oh.make_node("Gemm", ["X", "W", "B"], ["Y"], transB=1)],
        "linear",
        [oh.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["batch", 64])],
        [oh.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, ["batch", 32])],
        [
            onnx.numpy_helper.from_array(np.ones((32, 64), np.float32), "W"),
            onnx.numpy_helper.from_array(np.ones((32,), np.float32), "B"),
        ],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def test_batch_binds_symbolic_leading_dim_and_costs_scale():
    for batch in (1, 8):
        report = count_costs(load_graph(_linear_model(False), batch=batch))
        assert report.graph.tensor("Y").shape == (batch, 32)
        assert report.totals.macs == batch * 64 * 32
        assert report.totals.params == 32 * 64 + 32


def test_unbound_dimension_names_input_and_axis():
    with pytest.raises(UnboundDimensionError, match=r"input 'X' dimension 0 \('batch'\)"):
        load_graph(_linear_model(False))


def test_shape_by_input_name_and_by_dim_name():
    g = load_graph(_linear_model(False), shapes={"X": (4, 64)})
    assert g.tensor("Y").shape == (4, 32)
    g = load_graph(_linear_model(False), shapes={"batch": (3,)})
    assert g.tensor("Y").shape == (3, 32)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"batch": 0}, InvalidDimensionError),
        ({"batch": -2}, InvalidDimensionError),
        ({"shapes": {"X": (2, 0)}}, InvalidDimensionError),
        ({"shapes": {"X": (2, 64, 1)}}, InvalidDimensionError),
        ({"shapes": {"X": (1 << 30, 1 << 20)}}, InvalidDimensionError),
        ({"shapes": {"nope": (1,)}}, UnboundDimensionError),
    ],
)
def test_bad_dimensions(kwargs, error):
    with pytest.raises(error):
        load_graph(_linear_model(False), **kwargs)


def test_external_data_absent_is_never_read(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(
        _linear_model(False),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.data",
        size_threshold=0,
    )
    (tmp_path / "m.data").unlink()
    report = count_costs(load_graph(path, batch=2))
    assert report.totals.params == 32 * 64 + 32
    assert report.totals.param_bytes == 4 * (32 * 64 + 32)
    assert report.totals.macs == 2 * 64 * 32


def test_weights_over_2gb_in_absent_external_file(tmp_path):
    rows, cols = 70_000, 8192  # 2.29 GB of float32
    w = onnx.TensorProto(name="W", data_type=onnx.TensorProto.FLOAT, dims=[rows, cols])
    w.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", str(rows * cols * 4))):
        w.external_data.add(key=k, value=v)
    graph = oh.make_graph(
        [oh.make_node("Gather", ["W", "ids"], ["E"]), oh.make_node("MatMul", ["E", "P"], ["Y"])],
        "big",
        [oh.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 16])],
        [oh.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
        [w, onnx.numpy_helper.from_array(np.zeros((cols, 8), np.float32), "P")],
    )
    path = tmp_path / "big.onnx"
    onnx.save_model(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), path)
    report = count_costs(load_graph(path))
    assert report.totals.params == rows * cols + cols * 8
    assert report.totals.param_bytes > 2**31
    assert report.graph.tensor("Y").shape == (1, 16, 8)
    assert report.totals.macs == 16 * cols * 8


def test_constant_of_shape_weights_are_parameters_counted_where_they_live():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 16] X) => (float[1, 8] Y) {
            s = Constant <value = int64[2] {8, 16}> ()
            W = ConstantOfShape <value = float[1] {0.5}> (s)
            Wi = Identity (W)
            Wc = Cast <to = 1> (Wi)
            Y = Gemm <transB = 1> (X, Wc)
        }
        """
    )
    report = count_costs(load_graph(model))
    assert report.totals.params == 8 * 16
    assert report.node("Gemm_4").params == 8 * 16
    assert {
        n.status for n in report.nodes if n.op_type in ("Constant", "ConstantOfShape", "Identity", "Cast")
    } == {"folded"}


def test_tied_weight_counted_once():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 16] X) => (float[2, 16] Y) {
            A = MatMul (X, W)
            Y = MatMul (A, W)
        }
        """,
        check=False,
    )
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((16, 16), np.float32), "W"))
    report = count_costs(load_graph(model))
    assert report.totals.params == 16 * 16
    assert report.totals.weight_bytes == 2 * 16 * 16 * 4  # read twice, counted once


def test_int8_weight_through_dequantize_counted_in_int8():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 32] X) => (float[1, 8] Y) {
            Wf = DequantizeLinear (Wq, scale, zp)
            Y = MatMul (X, Wf)
        }
        """,
        check=False,
    )
    model.graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.zeros((32, 8), np.int8), "Wq"),
            onnx.numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
            onnx.numpy_helper.from_array(np.array(0, np.int8), "zp"),
        ]
    )
    report = count_costs(load_graph(model))
    assert report.totals.params == 32 * 8
    assert report.totals.param_bytes == 32 * 8  # one byte each, where they live


def test_shape_arithmetic_is_folded_and_reshape_resolves():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 3, 4, 5] X) => (float[2, 60] Y) {
            s = Shape (X)
            i0 = Constant <value = int64[1] {0}> ()
            n = Gather (s, i0)
            m = Constant <value = int64[1] {-1}> ()
            shp = Concat <axis = 0> (n, m)
            Y = Reshape (X, shp)
        }
        """
    )
    g = load_graph(model)
    assert g.tensor("Y").shape == (2, 60)
    report = count_costs(g)
    assert report.totals.flops == 0 and report.totals.read_bytes == 0
    assert report.node("Reshape_5").status == "zero-cost"


def test_cycle_is_rejected():
    graph = oh.make_graph(
        [oh.make_node("Relu", ["b"], ["a"]), oh.make_node("Relu", ["a"], ["b"])],
        "cyclic",
        [oh.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1])],
    )
    with pytest.raises(GraphStructureError, match="cycle"):
        load_graph(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]))


def test_dangling_input_is_rejected():
    graph = oh.make_graph(
        [oh.make_node("Relu", ["nowhere"], ["Y"])],
        "dangling",
        [oh.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [1])],
    )
    with pytest.raises(GraphStructureError, match="nowhere"):
        load_graph(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]))


def test_undeclared_domain_is_rejected():
    graph = oh.make_graph(
        [oh.make_node("Thing", ["X"], ["Y"], domain="com.example")],
        "d",
        [oh.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [1])],
    )
    with pytest.raises(ModelFormatError, match=r"com\.example"):
        load_graph(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]))


def test_declared_unknown_domain_is_reported_not_zero():
    graph = oh.make_graph(
        [oh.make_node("Thing", ["X"], ["Y"], domain="com.example"), oh.make_node("Relu", ["Y"], ["Z"])],
        "d",
        [oh.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [4])],
        [oh.make_tensor_value_info("Z", onnx.TensorProto.FLOAT, [4])],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.example", 1)])
    report = count_costs(load_graph(model))
    assert report.unsupported == {"com.example::Thing": 1}
    # The Relu reads Thing's output, whose shape nobody knows: it is not costed either (never 0 bytes).
    assert report.not_costed == {"com.example::Thing": 1, "Relu": 1}
    assert report.coverage == 0.0


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", ModelFormatError),
        (b"hello, I am not a protobuf at all \xff\xfe", ModelFormatError),
    ],
)
def test_not_onnx_bytes(tmp_path, content, error):
    path = tmp_path / "x.onnx"
    path.write_bytes(content)
    with pytest.raises(error):
        load_graph(path)


def test_truncated_protobuf(tmp_path, light_dir):
    data = (light_dir / "light_resnet50.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        load_graph(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        load_graph(tmp_path / "absent.onnx")
    with pytest.raises(InputFileError, match="directory"):
        load_graph(tmp_path)
    with pytest.raises(EstimatorError):
        load_graph(12345)  # type: ignore[arg-type]


def test_bytes_and_modelproto_sources_agree(light_dir):
    path = light_dir / "light_squeezenet.onnx"
    a = count_costs(load_graph(path)).totals
    b = count_costs(load_graph(path.read_bytes())).totals
    c = count_costs(load_graph(onnx.load(path))).totals
    assert a == b == c


def test_expanded_constant_counts_its_stored_elements():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4, 32] X) => (float[2, 5, 32] Y) {
            shp = Constant <value = int64[3] {2, 1, 32}> ()
            t = Expand (cls, shp)
            Y = Concat <axis = 1> (t, X)
        }
        """,
        check=False,
    )
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((1, 1, 32), np.float32), "cls"))
    report = count_costs(load_graph(model))
    assert report.totals.params == 32  # the class token as stored, not its batch-expanded copy


def test_mod_in_shape_arithmetic_is_folded():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[6, 10] X) => (float[?, ?] Y) {
            a = Constant <value = int64[1] {7}> ()
            b = Constant <value = int64[1] {4}> ()
            r = Mod (a, b)
            m = Constant <value = int64[1] {-1}> ()
            shp = Concat <axis = 0> (r, m)
            Y = Reshape (X, shp)
        }
        """
    )
    assert load_graph(model).tensor("Y").shape == (3, 20)


def test_reshape_with_baked_in_batch_is_rebound(light_dir):
    # The Caffe2 export bakes batch 1 into its final Reshape ([1, 2048]); it is re-bound with the batch.
    one = count_costs(load_graph(light_dir / "light_resnet50.onnx"))
    eight = count_costs(
        load_graph(light_dir / "light_resnet50.onnx", shapes={"gpu_0/data_0": (8, 3, 224, 224)})
    )
    assert eight.coverage == one.coverage == 1.0
    assert eight.totals.macs == 8 * one.totals.macs and eight.totals.params == one.totals.params


# ONNX's data propagation once kept ~70 B per element of every long 1-D weight given to it with its length
# (about 400 MB for the biases of a 65B-parameter LLM); the loader hides those lengths from it.
_LOAD_GRAPH_PEAK_MB = """
import sys
from pathlib import Path
from estimator.graph.load import load_graph

def high_water_mb():
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

before = high_water_mb()
load_graph(sys.argv[1])
print(high_water_mb() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the kernel's VmHWM (Linux)")
def test_load_graph_memory_does_not_grow_with_bias_lengths(tmp_path):
    path = tmp_path / "llm.onnx"
    onnx.save_model(gpt2_decoder(80, 8192, 64, vocab=32000, max_positions=4096, batch=1, seq=16), path)
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_GRAPH_PEAK_MB, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=True,
    )
    # 2,726 nodes and 1,284 weight tensors need a few tens of MB; the absent weights are 259 GB.
    assert float(done.stdout) < 100


def test_unknown_op_inside_a_subgraph_makes_the_report_a_lower_bound():
    then = oh.make_graph(
        [oh.make_node("Foo", ["X"], ["t"], domain="custom.x")],
        "then",
        [],
        [oh.make_tensor_value_info("t", onnx.TensorProto.FLOAT, [4])],
    )
    other = oh.make_graph(
        [oh.make_node("Relu", ["X"], ["e"])],
        "else",
        [],
        [oh.make_tensor_value_info("e", onnx.TensorProto.FLOAT, [4])],
    )
    graph = oh.make_graph(
        [oh.make_node("If", ["c"], ["Y"], then_branch=then, else_branch=other)],
        "g",
        [
            oh.make_tensor_value_info("c", onnx.TensorProto.BOOL, []),
            oh.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [4]),
        ],
        [oh.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [4])],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("custom.x", 1)])
    report = count_costs(load_graph(model))
    assert report.not_costed == {"custom.x::Foo": 1} == report.unsupported


def test_a_node_reading_a_tensor_of_unknown_shape_is_not_read_as_zero_bytes():
    graph = oh.make_graph(
        [oh.make_node("Foo", ["X"], ["u"], domain="custom.x"), oh.make_node("Relu", ["u"], ["Y"])],
        "g",
        [oh.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [4])],
        [oh.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [4])],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("custom.x", 1)])
    report = count_costs(load_graph(model))
    relu = next(n for n in report.nodes if n.op_type == "Relu")
    assert relu.status == "shape-unknown" and "'u'" in relu.message
    assert report.not_costed == {"custom.x::Foo": 1, "Relu": 1}


def test_dequantized_weights_are_read_as_stored():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 64] X) => (float[1, 32] Y) {
            Wf = DequantizeLinear (Wq, scale, zp)
            Y = MatMul (X, Wf)
        }
        """,
        check=False,
    )
    model.graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.zeros((64, 32), np.int8), "Wq"),
            onnx.numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
            onnx.numpy_helper.from_array(np.array(0, np.int8), "zp"),
        ]
    )
    matmul = next(n for n in count_costs(load_graph(model)).nodes if n.op_type == "MatMul")
    assert matmul.weight_bytes == 64 * 32  # int8 as stored, not 4 x that as float32
    assert matmul.params == 64 * 32 and matmul.param_bytes == 64 * 32
