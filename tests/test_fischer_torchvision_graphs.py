"""The graph of every PyTorch row of fischer_eff22 is the torchvision network the run measured, at its input.

Fischer et al. 2022 (github.com/raphischer/imagenet-energy-efficiency @ 65eb68c) ran torchvision models under
PyTorch; each row names a timm twin (estimator/data/importers/_cnn_graphs.py ``TORCHVISION_TO_TIMM``). Two
published facts of the run check each twin, independently of how the graph was exported:

* the input: ``mlee/ml_pytorch/pt_utils.py`` ``set_model_args`` sets ``val_crop_size``, the centre crop of the
  evaluation preset, per model (EfficientNetB0-B7: 224, 240, 288, 300, 380, 456, 528, 600; all others 224);
  the row's graph binds its spatial size from the graph, so the graph must carry that crop;
* the parameters: each run's ``results/infer_*.json`` records ``sum(p.numel() for p in model.parameters())``
  of the torchvision model (``model_info['params']``), which the graph's stored parameters must equal
  (BatchNormalization kept, as eager PyTorch runs it). InceptionV3 is the exception: the run's count includes
  torchvision's auxiliary classifier (3,326,696 parameters), which never runs at inference and is not in the
  graph.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from estimator.cost.nodes import count_costs
from estimator.data.importers._cnn_graphs import TORCHVISION_TO_TIMM
from estimator.graph.load import load_graph

REPO = Path(__file__).resolve().parents[1]

#: torchvision name in the run -> (val_crop_size, px; params the run recorded).
RUN: dict[str, tuple[int, int]] = {
    "EfficientNetB0": (224, 5_288_548),
    "EfficientNetB1": (240, 7_794_184),
    "EfficientNetB2": (288, 9_109_994),
    "EfficientNetB3": (300, 12_233_232),
    "EfficientNetB4": (380, 19_341_616),
    "EfficientNetB5": (456, 30_389_784),
    "EfficientNetB6": (528, 43_040_704),
    "EfficientNetB7": (600, 66_347_960),
    "InceptionV3": (299, 27_161_264),
    "MobileNetV2": (224, 3_504_872),
    "MobileNetV3Large": (224, 5_483_032),
    "MobileNetV3Small": (224, 2_542_856),
    "RegNetX400MF": (224, 5_495_976),
    "RegNetX8GF": (224, 39_572_648),
    "RegNetX32GF": (224, 107_811_560),
    "ResNet50": (224, 25_557_032),
    "ResNet101": (224, 44_549_160),
    "ResNet152": (224, 60_192_808),
    "ResNext50": (224, 25_028_904),
    "ResNext101": (224, 88_791_336),
    "VGG16": (224, 138_357_544),
    "VGG19": (224, 143_667_240),
}
#: torchvision inception_v3's AuxLogits: 1x1 conv 768->128 + BN, 5x5 conv 128->768 + BN, fc 768->1000.
INCEPTION_AUX_PARAMS = 768 * 128 + 2 * 128 + 128 * 768 * 25 + 2 * 768 + 768 * 1000 + 1000


def _pytorch_rows() -> pd.DataFrame:
    t = pd.read_csv(REPO / "data" / "fischer_eff22.csv.gz")
    return t[t["runtime"] == "pytorch-cuda"]


def test_every_pytorch_row_has_a_committed_graph():
    rows = _pytorch_rows()
    assert set(rows["architecture"]) == set(RUN)
    missing = sorted({r for r in rows["model_ref"] if not (REPO / r).exists()})
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(RUN))
def test_graph_carries_the_runs_crop_and_parameters(name):
    crop, run_params = RUN[name]
    refs = set(_pytorch_rows().loc[lambda t: t["architecture"] == name, "model_ref"])
    assert refs == {f"data/graphs/{TORCHVISION_TO_TIMM[name][0]}.onnx"}
    graph = load_graph(REPO / refs.pop(), batch=32)
    (shape,) = [graph.tensors[n].shape for n in graph.inputs]
    assert shape == (32, 3, crop, crop)
    params = count_costs(graph).totals.params
    expected = run_params - (INCEPTION_AUX_PARAMS if name == "InceptionV3" else 0)
    assert params == expected
