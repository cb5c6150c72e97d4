"""Every measured row of Fischer's tables has a committed graph; the Keras twins timm has none for
(scripts/keras_twins.py: NASNetMobile, larq-zoo's QuickNets) match the counts their sources publish.

Independent facts each twin is checked against (no torch needed):

* parameters Keras counts (``model.count_params()``: BatchNormalization's moving mean and variance included),
  as each run recorded them (github.com/raphischer/imagenet-energy-efficiency @ 65eb68c ``results/infer_*.json``,
  ``params``): NASNetMobile 5,326,716 (also the Keras Applications table's 5.3M), QuickNet 13,243,720,
  QuickNetSmall 12,664,344, QuickNetLarge 23,359,304. The graph stores the moving statistics as the inputs 3
  and 4 of each BatchNormalization, which the cost engine does not count as parameters; QuickNet's stem
  ``BatchNormalization(scale=False, center=False)`` on ``section_filters[0] // 4`` channels has no scale or
  shift in Keras, and constant ones and zeros in the graph (counted there);
* larq-zoo's published parameter table (github.com/larq/zoo @ 77c5853 ``larq_zoo/sota/quicknet.py``
  docstrings: 13,234,088 / 12,655,688 / 23,342,248), which counts 2 per BatchNorm channel;
* NASNet-A (4 @ 1056): 564 M multiply-adds (Zoph et al., 'Learning Transferable Architectures for Scalable
  Image Recognition', CVPR 2018, Table 2);
* larq's binary convolution as TensorFlow runs it (github.com/larq/larq @ fe3ce52: ``math.sign`` =
  ``sign(sign(x) + 0.1)`` on the input and on the stored kernel, ``tf.pad`` with ``pad_values=1.0``): one per
  residual block, ``sum(section_blocks)`` of larq-zoo's factory (4 x 4, 4 x 4, 6 + 8 + 12 + 6).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import onnx
import pandas as pd
import pytest
from onnx import numpy_helper

from estimator.cost.nodes import count_costs
from estimator.data.importers._cnn_graphs import KERAS_TO_TIMM
from estimator.graph.load import load_graph

REPO = Path(__file__).resolve().parents[1]
GRAPHS = REPO / "data" / "graphs"
FISCHER_TABLES = ("fischer_eff22.csv.gz", "fischer_rtx4090.csv.gz", "validation_fischer.csv.gz")

#: Keras name -> (graph, Keras' parameter count as the runs recorded it, larq-zoo's published count or None,
#: binary convolutions, channels of a BatchNorm without scale and shift in Keras).
TWINS: dict[str, tuple[str, int, int | None, int, int]] = {
    "NASNetMobile": ("keras-nasnet-mobile", 5_326_716, None, 0, 0),
    "QuickNet": ("larq-quicknet", 13_243_720, 13_234_088, 4 + 4 + 4 + 4, 64 // 4),
    "QuickNetSmall": ("larq-quicknet-small", 12_664_344, 12_655_688, 4 + 4 + 4 + 4, 32 // 4),
    "QuickNetLarge": ("larq-quicknet-large", 23_359_304, 23_342_248, 6 + 8 + 12 + 6, 64 // 4),
}
NASNET_MOBILE_MULT_ADDS = 564e6
LARQ_SIGN_OFFSET = 0.1


@pytest.mark.parametrize("table", FISCHER_TABLES)
def test_every_fischer_row_has_a_committed_graph(table):
    refs = set(pd.read_csv(REPO / "data" / table)["model_ref"])
    unbuilt = sorted(r for r in refs if not r.startswith("data/graphs/") or not (REPO / r).exists())
    assert not unbuilt, unbuilt


def test_rows_of_the_rebuilt_networks_name_their_twins():
    rows = pd.concat(pd.read_csv(REPO / "data" / t) for t in FISCHER_TABLES)
    for keras_name, (graph, *_) in TWINS.items():
        assert KERAS_TO_TIMM[keras_name][0] == graph
        refs = set(rows.loc[rows["architecture"] == keras_name, "model_ref"])
        assert refs == {f"data/graphs/{graph}.onnx"}, keras_name


@cache
def _model(graph: str) -> onnx.ModelProto:
    return onnx.load(str(GRAPHS / f"{graph}.onnx"), load_external_data=False)


def _moving_statistics(model: onnx.ModelProto) -> int:
    sizes = {t.name: math.prod(t.dims) for t in model.graph.initializer}
    return sum(
        sizes[n.input[i]] for n in model.graph.node if n.op_type == "BatchNormalization" for i in (3, 4)
    )


@pytest.mark.parametrize("name", sorted(TWINS))
def test_parameters_match_keras_and_larq_zoo(name):
    graph, keras_count, larq_zoo_count, _, no_affine = TWINS[name]
    params = count_costs(load_graph(GRAPHS / f"{graph}.onnx", batch=1)).totals.params
    assert params - 2 * no_affine + _moving_statistics(_model(graph)) == keras_count
    if larq_zoo_count is not None:
        assert params == larq_zoo_count


def test_nasnet_mobile_mult_adds_match_the_paper():
    macs = count_costs(load_graph(GRAPHS / "keras-nasnet-mobile.onnx", batch=1)).totals.macs
    assert abs(macs - NASNET_MOBILE_MULT_ADDS) <= 0.005 * NASNET_MOBILE_MULT_ADDS


def _larq_sign_of(model: onnx.ModelProto, tensor: str) -> str | None:
    """The input x when ``tensor`` is Sign(Add(Sign(x), 0.1)), else None."""
    producer = {o: n for n in model.graph.node for o in n.output}
    constants = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in model.graph.node
        if n.op_type == "Constant"
    }
    constants.update(
        {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.raw_data or t.float_data}
    )
    outer = producer.get(tensor)
    if outer is None or outer.op_type != "Sign":
        return None
    add = producer.get(outer.input[0])
    if add is None or add.op_type != "Add":
        return None
    inner, offset = add.input
    if offset not in constants or constants[offset].size != 1:
        return None
    if not math.isclose(float(constants[offset].reshape(())), LARQ_SIGN_OFFSET, rel_tol=1e-6):
        return None
    sign = producer.get(inner)
    return sign.input[0] if sign is not None and sign.op_type == "Sign" else None


@pytest.mark.parametrize("name", ["QuickNet", "QuickNetSmall", "QuickNetLarge"])
def test_quicknet_binary_convolutions_run_larqs_signs(name):
    graph, _, _, binary, _ = TWINS[name]
    model = _model(graph)
    producer = {o: n for n in model.graph.node for o in n.output}
    stored = {t.name for t in model.graph.initializer}
    found = 0
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        kernel = _larq_sign_of(model, conv.input[1])
        if kernel is None:
            assert conv.input[1] in stored, f"{conv.name}: a float convolution reads its stored kernel"
            continue
        assert kernel in stored, f"{conv.name}: the sign is taken of the stored kernel"
        pad = producer[conv.input[0]]
        assert pad.op_type == "Pad"
        value = numpy_helper.to_array(producer[pad.input[2]].attribute[0].t)
        assert float(value.reshape(())) == 1.0, "larq pads binary convolutions with pad_values=1.0"
        assert _larq_sign_of(model, pad.input[0]) is not None, "the input quantizer runs before the pad"
        found += 1
    assert found == binary
