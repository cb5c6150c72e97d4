"""Habits of real exporters that tiny hand-written graphs missed (issue 9), each as a tiny graph.

Expected figures are closed forms of the graph written in each test.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper
import pytest
from conftest import parse

from estimator.cost.nodes import count_costs
from estimator.errors import InvalidDimensionError
from estimator.graph.load import load_graph


def _with_external_weights(model: onnx.ModelProto, tmp_path, arrays: dict[str, np.ndarray]):
    """``model`` with ``arrays`` as initializers whose external data file is absent."""
    for name, value in arrays.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="m.data", size_threshold=0)
    (tmp_path / "m.data").unlink()
    return path


def test_one_d_weights_seen_through_identity_cast_unsqueeze_reshape_keep_their_length(tmp_path):
    # The TorchScript exporter writes an Identity for every weight equal to another; a 1-D weight of an
    # external (or large) initializer gets a symbolic length for ONNX's inference, which must come back on
    # every tensor derived from it, not only on the initializer.
    c = 24
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, {c}, 5, 5] X) => (float[2, {c}, 5, 5] Y) {{
            g1 = Identity (g)
            h1 = Identity (h)
            b1 = Cast <to = 1> (b)
            axes = Constant <value = int64[2] {{1, 2}}> ()
            g3 = Unsqueeze (h1, axes)
            shp = Constant <value = int64[3] {{{c}, 1, 1}}> ()
            s3 = Reshape (s, shp)
            n = BatchNormalization (X, g1, b1, m, v)
            p = Mul (n, g3)
            Y = Add (p, s3)
        }}
        """,
        check=False,
    )
    rng = np.random.default_rng(0)
    weights = {k: rng.standard_normal(c).astype(np.float32) for k in ("g", "h", "b", "m", "v", "s")}
    report = count_costs(load_graph(_with_external_weights(model, tmp_path, weights)))
    assert report.coverage == 1.0, report.not_costed
    assert report.graph.tensor("g3").shape == (c, 1, 1)
    assert report.graph.tensor("s3").shape == (c, 1, 1)
    # learned: BN scale and shift, the Mul's scale, the Add's shift (running statistics are not learned)
    assert report.totals.params == 4 * c


def test_a_weight_read_by_a_node_that_ends_shape_unknown_is_counted_at_its_next_reader():
    graph = oh.make_graph(
        [
            oh.make_node("Foo", ["X"], ["u"], domain="custom.x"),
            oh.make_node("Gemm", ["X", "W", "u"], ["a"], transB=1),
            oh.make_node("Gemm", ["X", "W"], ["Y"], transB=1),
        ],
        "g",
        [oh.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [2, 8])],
        [oh.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [2, 4])],
        [onnx.numpy_helper.from_array(np.arange(32, dtype=np.float32).reshape(4, 8), "W")],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("custom.x", 1)])
    report = count_costs(load_graph(model))
    first, second = (n for n in report.nodes if n.op_type == "Gemm")
    assert first.status == "shape-unknown" and first.params == 0
    assert second.status == "costed" and second.params == 32


def test_a_gathered_attention_bias_table_counts_the_table_not_its_expansion():
    # LeViT / CoaT: attention_biases[:, idx] with a constant index table larger than the biases.
    heads, n = 4, 9
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, {heads}, {n}, {n}] S) => (float[1, {heads}, {n}, {n}] Y) {{
            ab = Gather <axis = 1> (table, idx)
            Y = Add (S, ab)
        }}
        """,
        check=False,
    )
    rng = np.random.default_rng(0)
    model.graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(rng.standard_normal((heads, n)).astype(np.float32), "table"),
            onnx.numpy_helper.from_array(rng.integers(0, n, (n, n)).astype(np.int64), "idx"),
        ]
    )
    report = count_costs(load_graph(model))
    assert report.totals.params == heads * n


def test_a_float_mask_made_from_a_stored_bool_mask_is_not_a_parameter():
    s = 80  # a mask too large for its values to be kept (above 4096 elements)
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 2, {s}, {s}] S) => (float[1, 2, {s}, {s}] Y) {{
            zero = Constant <value = float {{0.0}}> ()
            low = Constant <value = float {{-10000.0}}> ()
            mask = Where (causal, zero, low)
            Y = Add (S, mask)
        }}
        """,
        check=False,
    )
    tril = np.tril(np.ones((1, 1, s, s), dtype=bool))
    model.graph.initializer.append(onnx.numpy_helper.from_array(tril, "causal"))
    report = count_costs(load_graph(model))
    assert report.coverage == 1.0
    assert report.totals.params == 0
    assert report.totals.weight_bytes == 4 * s * s  # the mask is still read


def test_nodes_stored_out_of_topological_order_are_all_costed():
    nodes = [
        oh.make_node("Relu", ["h"], ["Y"]),
        oh.make_node("Gemm", ["a", "W"], ["h"], transB=1),
        oh.make_node("Sigmoid", ["X"], ["a"]),
    ]
    graph = oh.make_graph(
        nodes,
        "g",
        [oh.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [3, 8])],
        [oh.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.ones((5, 8), np.float32), "W")],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    report = count_costs(load_graph(model))
    assert [n.op_type for n in report.nodes] == ["Sigmoid", "Gemm", "Relu"]
    assert report.coverage == 1.0
    assert report.totals.macs == 3 * 8 * 5 and report.totals.params == 40


FIXED_BATCH = """
<ir_version: 8, opset_import: ["" : 17]>
agraph (float[1, 32] X) => (float[1, 4, 5] Y) {
    shp = Constant <value = int64[3] {1, 4, 8}> ()
    r = Reshape (X, shp)
    Y = MatMul (r, W)
}
"""


def _fixed_batch_model() -> onnx.ModelProto:
    model = parse(FIXED_BATCH, check=False)
    w = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    model.graph.initializer.append(onnx.numpy_helper.from_array(w, "W"))
    return model


@pytest.mark.parametrize("how", ["batch", "shape"])
def test_batch_of_a_fixed_batch_export_is_rebound_through_baked_reshapes(how):
    model = _fixed_batch_model()
    kwargs = {"batch": 6} if how == "batch" else {"shapes": {"X": (6, 32)}}
    graph = load_graph(model, **kwargs)
    report = count_costs(graph)
    assert graph.batch == 6
    assert graph.tensor("r").shape == (6, 4, 8) and graph.tensor("Y").shape == (6, 4, 5)
    assert report.totals.macs == 6 * 4 * 8 * 5 and report.totals.params == 40
    assert count_costs(load_graph(model)).totals.macs == 4 * 8 * 5  # the exported batch by default


def test_a_fixed_non_batch_dimension_cannot_be_changed_by_shape():
    with pytest.raises(InvalidDimensionError, match=r"fixed shape \[1, 32\].*only its leading"):
        load_graph(_fixed_batch_model(), shapes={"X": (1, 64)})


def test_a_batch_folded_into_another_dimension_is_refused_in_one_line():
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 32] X) => (float[32] Y) {
            shp = Constant <value = int64[1] {32}> ()
            Y = Reshape (X, shp)
        }
        """
    )
    with pytest.raises(InvalidDimensionError, match="fixed shape baked in"):
        load_graph(model, batch=4)


@pytest.mark.parametrize("layout", ["4d", "3d"])
def test_opset_23_attention_with_grouped_query_heads_and_past(layout):
    b, hq, hkv, s, past, d = 2, 8, 2, 5, 3, 16
    if layout == "4d":
        sig = f"(float[{b},{hq},{s},{d}] Q, float[{b},{hkv},{s},{d}] K, float[{b},{hkv},{s},{d}] V"
        attrs = "<is_causal = 1>"
    else:
        sig = f"(float[{b},{s},{hq * d}] Q, float[{b},{s},{hkv * d}] K, float[{b},{s},{hkv * d}] V"
        attrs = f"<is_causal = 1, q_num_heads = {hq}, kv_num_heads = {hkv}>"
    sig += f", float[{b},{hkv},{past},{d}] PK, float[{b},{hkv},{past},{d}] PV) => (float[{b},{s},{hq * d}] Y)"
    body = (
        f"Y, pk, pv = Attention {attrs} (Q, K, V, , PK, PV)"
        if layout == "3d"
        else (
            f"y4, pk, pv = Attention {attrs} (Q, K, V, , PK, PV)\n"
            f"            t = Transpose <perm = [0, 2, 1, 3]> (y4)\n"
            f"            shp = Constant <value = int64[3] {{{b}, {s}, {hq * d}}}> ()\n"
            f"            Y = Reshape (t, shp)"
        )
    )
    model = parse(
        f'<ir_version: 10, opset_import: ["" : 23]>\nagraph {sig} {{\n            {body}\n        }}'
    )
    report = count_costs(load_graph(model))
    assert report.coverage == 1.0, report.not_costed
    node = next(n for n in report.nodes if n.op_type == "Attention")
    scores = b * hq * s * (past + s)
    assert node.macs == scores * 2 * d
    assert node.flops == 2 * node.macs + scores * (1 + 5)  # scale + softmax; causal masking is free
    assert node.params == 0


def test_opset_23_rotary_embedding_partial_rotation():
    b, h, s, d, rot = 1, 4, 6, 32, 16
    model = parse(
        f"""
        <ir_version: 10, opset_import: ["" : 23]>
        agraph (float[{b},{h},{s},{d}] X, float[{b},{s},{rot // 2}] C, float[{b},{s},{rot // 2}] S)
            => (float[{b},{h},{s},{d}] Y) {{
            Y = RotaryEmbedding <rotary_embedding_dim = {rot}> (X, C, S)
        }}
        """
    )
    node = count_costs(load_graph(model)).nodes[0]
    assert node.status == "costed" and node.flops == 3 * b * h * s * rot


def test_window_partition_pads_computed_at_run_time_are_folded():
    # Swin pads its feature map to a multiple of the window with pads computed from the runtime shape
    # (Shape -> Gather -> Mod -> Concat -> Reshape -> Transpose -> Reshape -> Pad), then partitions it.
    win = 7
    model = parse(
        f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 10, 10, 8] X) => (float[4, 49, 8] Y) {{
            shp = Shape (X)
            i1 = Constant <value = int64 {{1}}> ()
            h = Gather <axis = 0> (shp, i1)
            w7 = Constant <value = int64 {{{win}}}> ()
            r = Mod (h, w7)
            rem = Sub (w7, r)
            pad_h = Mod (rem, w7)
            pad_h1 = Unsqueeze (pad_h, zero1)
            zero1 = Constant <value = int64[1] {{0}}> ()
            z = Constant <value = int64[1] {{0}}> ()
            begin_end = Concat <axis = 0> (z, z, z, pad_h1, z, pad_h1, z, z)
            s42 = Constant <value = int64[2] {{4, 2}}> ()
            pairs = Reshape (begin_end, s42)
            t = Transpose <perm = [1, 0]> (pairs)
            s8 = Constant <value = int64[1] {{8}}> ()
            pads = Reshape (t, s8)
            p = Pad (X, pads)
            s6 = Constant <value = int64[6] {{1, 2, {win}, 2, {win}, 8}}> ()
            q = Reshape (p, s6)
            u = Transpose <perm = [0, 1, 3, 2, 4, 5]> (q)
            s3 = Constant <value = int64[3] {{4, 49, 8}}> ()
            Y = Reshape (u, s3)
        }}
        """,
        check=False,
    )
    graph = load_graph(model)
    assert graph.tensor("p").shape == (1, 14, 14, 8)
    report = count_costs(graph)
    assert report.coverage == 1.0, report.not_costed


def test_tf_same_padding_computed_with_clip_is_folded():
    # timm's tf_* networks pad like TensorFlow's "SAME": max((ceil(H/s) - 1) * s + k - H, 0) via Clip.
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 3, 9, 9] X, float[4, 3, 3, 3] W) => (float[1, 4, 5, 5] Y) {
            shp = Shape (X)
            i2 = Constant <value = int64 {2}> ()
            h = Gather <axis = 0> (shp, i2)
            hf = Cast <to = 1> (h)
            two = Constant <value = float {2.0}> ()
            out = Ceil (q)
            q = Div (hf, two)
            one = Constant <value = float {1.0}> ()
            k = Constant <value = float {3.0}> ()
            a = Sub (out, one)
            b = Mul (a, two)
            c = Add (b, k)
            d = Sub (c, hf)
            zero = Constant <value = float {0.0}> ()
            total = Clip (d, zero, )
            half = Div (total, two)
            lo = Floor (half)
            hi = Sub (total, lo)
            lo1 = Unsqueeze (lo, ax)
            hi1 = Unsqueeze (hi, ax)
            ax = Constant <value = int64[1] {0}> ()
            z = Constant <value = float[1] {0.0}> ()
            pf = Concat <axis = 0> (z, z, lo1, lo1, z, z, hi1, hi1)
            pads = Cast <to = 7> (pf)
            p = Pad (X, pads)
            Y = Conv <strides = [2, 2]> (p, W)
        }
        """,
        check=False,
    )
    graph = load_graph(model)
    assert graph.tensor("p").shape == (1, 3, 11, 11)
    report = count_costs(graph)
    assert report.coverage == 1.0 and report.totals.macs == 4 * 5 * 5 * 3 * 3 * 3
