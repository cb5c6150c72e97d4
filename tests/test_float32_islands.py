"""Re-typing keeps the float32 islands of a graph exported in a 16-bit float type (diffusers' RMSNorm in a
bfloat16 pipeline: ``hidden_states.to(torch.float32)`` ... ``.to(weight.dtype)``), and re-types a float32 export
wholesale as before. Bytes against closed forms written from the element counts."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.physics import kept_dtypes, kernel_arrays
from estimator.graph.load import load_graph

N, S, D = 2, 16, 64  # batch, tokens, channels
E = N * S * D  # elements of the normalised tensor


def _rms_norm_graph(elem: int, upcast: int):
    """``h = x @ W`` in ``elem``, then diffusers' RMSNorm with its variance and product computed in ``upcast``
    (``Cast`` up, ``Pow``, ``ReduceMean``, ``Add``, ``Sqrt``, ``Reciprocal``, ``Mul``, ``Cast`` down), then
    ``* weight`` in ``elem``."""
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="matmul"),
        helper.make_node("Cast", ["h"], ["hf"], name="cast_up", to=upcast),
        helper.make_node("Pow", ["hf", "two"], ["p"], name="pow"),
        helper.make_node("ReduceMean", ["p", "axes"], ["v"], name="mean", keepdims=1),
        helper.make_node("Add", ["v", "eps"], ["ve"], name="add_eps"),
        helper.make_node("Sqrt", ["ve"], ["r"], name="sqrt"),
        helper.make_node("Reciprocal", ["r"], ["q"], name="reciprocal"),
        helper.make_node("Mul", ["hf", "q"], ["y"], name="normalise"),
        helper.make_node("Cast", ["y"], ["yb"], name="cast_down", to=elem),
        helper.make_node("Mul", ["yb", "g"], ["out"], name="scale"),
    ]
    inits = [
        helper.make_tensor("W", elem, [D, D], np.ones(D * D).tolist()),
        helper.make_tensor("g", elem, [D], np.ones(D).tolist()),
        helper.make_tensor("two", upcast, [], [2.0]),
        helper.make_tensor("eps", upcast, [], [1e-6]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [-1]),
    ]
    graph = helper.make_graph(
        nodes,
        "rms_norm",
        [helper.make_tensor_value_info("x", elem, [N, S, D])],
        [helper.make_tensor_value_info("out", elem, [N, S, D])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    # Eager PyTorch: one kernel per node that computes.
    return fuse_kernels(count_costs(load_graph(model.SerializeToString())), fuse=False)


def _launched(kernels, ka) -> list[tuple[str, str, float, float, float]]:
    """Per launched kernel, in launch order: (name, dtype it runs in, weight, activation and written bytes)."""
    return [
        (k.name, ka.dtypes[i], ka.weight_bytes[i], ka.activation_bytes[i], ka.write_bytes[i])
        for i, k in enumerate(kernels.kernels)
        if k.launches
    ]


def _expected(w: int, f: int, w64: int = 0) -> list[tuple[str, str, int, int, int]]:
    """The kernels of :func:`_rms_norm_graph` with ``w`` bytes a run-dtype element and ``f`` bytes an island
    element: (name, dtype, weight, activation and written bytes). E elements, E / D of the variance."""
    run, island = {2: "bfloat16", 4: "float32"}[w], {2: "bfloat16", 4: "float32", 8: "float64"}[f]
    v = E // D
    return [
        ("MatMul", run, w * D * D, w * E, w * E),
        ("Cast", run, 0, w * E, f * E),  # x.to(torch.float32)
        ("Pow", island, f, f * E, f * E),  # the exponent 2 is a one-element constant
        ("ReduceMean", island, 0, f * E, f * v),
        ("Add", island, f, f * v, f * v),
        ("Sqrt", island, 0, f * v, f * v),
        ("Reciprocal", island, 0, f * v, f * v),
        ("Mul", island, 0, f * E + f * v, f * E),  # hidden_states * rsqrt(variance + eps)
        ("Cast", island, 0, f * E, w * E),  # .to(weight.dtype)
        ("Mul", run, w * D, w * E, w * E),  # * weight
    ]


BF16, F32, F64 = TensorProto.BFLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE


def test_a_bfloat16_export_keeps_its_float32_island_at_four_bytes_an_element():
    kernels = _rms_norm_graph(BF16, F32)
    assert kernels.dominant_dtype == "bfloat16"  # the MatMul's 2 N S D^2 FLOPs
    assert kept_dtypes(kernels) == {"float32", "float64"}
    ka = kernel_arrays(kernels, "bfloat16")
    assert _launched(kernels, ka) == _expected(2, 4)
    # Nothing is scaled: the export is already in the run's dtype.
    raw = kernels.arrays
    np.testing.assert_array_equal(ka.activation_bytes, raw["activation_read_bytes"])
    np.testing.assert_array_equal(ka.write_bytes, raw["write_bytes"])
    # The island's arithmetic is on the float32 vector path, the MatMul on bfloat16's matrix path.
    assert set(ka.path_keys) == {("bfloat16", True), ("bfloat16", False), ("float32", False)}


def test_another_dtype_retypes_the_bfloat16_kernels_and_keeps_the_island():
    kernels = _rms_norm_graph(BF16, F32)
    fp16 = [(n, "float16" if d == "bfloat16" else d, *b) for n, d, *b in _expected(2, 4)]
    assert _launched(kernels, kernel_arrays(kernels, "float16")) == fp16  # 16 to 16 bits: the same bytes
    # float32: the bfloat16 kernels' bytes doubled (the cast kernels too, as a float32 export's no-op casts).
    fp32 = _launched(kernels, kernel_arrays(kernels, "float32"))
    assert fp32[0] == ("MatMul", "float32", 4 * D * D, 4 * E, 4 * E)
    assert fp32[2:8] == _expected(2, 4)[2:8]


@pytest.mark.parametrize("upcast", [F32, F64])
def test_a_float32_export_is_retyped_wholesale_as_before(upcast):
    # A float32 export: the upcast is a no-op (float32) or a float64 island; either way every float kernel is
    # re-typed to the requested dtype, its bytes scaled by the ratio of bits.
    kernels = _rms_norm_graph(F32, upcast)
    assert kernels.dominant_dtype == "float32"
    assert kept_dtypes(kernels) == frozenset()
    ka = kernel_arrays(kernels, "bfloat16")
    assert set(ka.dtypes) == {"bfloat16"}
    raw = kernels.arrays
    own = np.array([{"float32": 32, "float64": 64}[d] for d in kernels.dtypes], dtype=float)
    np.testing.assert_array_equal(ka.activation_bytes, raw["activation_read_bytes"] * 16 / own)
    np.testing.assert_array_equal(ka.write_bytes, raw["write_bytes"] * 16 / own)
    unscaled = _launched(kernels, kernel_arrays(kernels, None))
    assert unscaled == _expected(4, {F32: 4, F64: 8}[upcast])
