"""A host input pipeline shared by the boards of one run: the per-image host time, the images a board's call
waits for (batch x boards), and constants fitted on one-board machines carried to an eight-board machine."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pandas as pd
import pytest

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.hardware import load_profile
from estimator.energy.prior_fit import FitCase, loss, scaled_host_call
from estimator.energy.prior_v2 import V2Constants, assemble, device_terms
from estimator.energy.runtimes import get_runtime
from estimator.graph.load import load_graph
from estimator.learn import gpu_training
from estimator.learn.gpu_pipeline import host_call_images
from tests.test_gpu_learning import _mlp

#: The pipeline's host time per image of the synthetic machines below, s (a Quadro-like host: ~0.5 ms).
S_PER_IMAGE = 5e-4


def test_images_per_call_are_batch_times_the_boards_that_share_the_pipeline():
    table = pd.DataFrame(
        {
            "batch": [4, 32, 32, 32, 1],
            "accelerators": [8, 8, 1, None, 8],
        }
    )
    pipeline = np.array([True, True, True, True, False])
    # TF MirroredStrategy: 4 per board x 8 boards = the global batch of 32; PyTorch DataParallel: 32 x 8; one
    # board: its batch; no recorded boards: one; a row that timed no pipeline: per call (1)
    np.testing.assert_array_equal(host_call_images(table, pipeline), [32.0, 256.0, 32.0, 32.0, 1.0])
    no_column = pd.DataFrame({"batch": [16, 16]})
    np.testing.assert_array_equal(host_call_images(no_column, np.array([True, False])), [16.0, 1.0])


def test_scaled_host_call_multiplies_a_set_host_call_only():
    c = V2Constants(host_dispatch_s=1e-5, host_call_s=2e-3)
    assert scaled_host_call(c, 8.0).host_call_s == pytest.approx(1.6e-2)
    assert scaled_host_call(c, 8.0).host_dispatch_s == 1e-5
    assert scaled_host_call(V2Constants(), 8.0) == V2Constants()  # the runtime's own per-call value
    assert scaled_host_call(None, 8.0) is None
    assert scaled_host_call(c, 1.0) is c


def _terms(path, batch, device):
    kernels = fuse_kernels(count_costs(load_graph(path, batch=batch)), fuse=False)
    hw, rt = load_profile(device), get_runtime("pytorch-cuda")
    return device_terms(kernels, hw, rt), hw, rt


def test_a_call_waits_for_every_boards_images_closed_form(tmp_path):
    """The call's host time enters the prior additively (``T = c + end_last``, the board waiting at
    idle-with-context power): a board of 8 sharing the pipeline at batch 4 waits 32 images' host time per
    call, N = 8 times the per-sample wait of a lone board at the same batch."""
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(64, 64), path)
    terms, hw, rt = _terms(path, 4, "a100")
    per_image = V2Constants(host_call_s=S_PER_IMAGE)
    none = assemble(terms, hw, rt, V2Constants(host_call_s=0.0))
    shared = assemble(terms, hw, rt, scaled_host_call(per_image, 4 * 8))
    alone = assemble(terms, hw, rt, scaled_host_call(per_image, 4))
    assert shared.seconds - none.seconds == pytest.approx(S_PER_IMAGE * 32, rel=1e-9)
    assert shared.joules - none.joules == pytest.approx(hw.idle_with_context_w * S_PER_IMAGE * 32, rel=1e-9)
    assert (shared.seconds - none.seconds) / (alone.seconds - none.seconds) == pytest.approx(8.0)
    # the fit's loss reads the case's scale: a case measured at the shared layout has zero loss
    case = FitCase(terms, hw, rt, shared.joules, shared.seconds, host_call_scale=32.0)
    assert loss([case], per_image) == pytest.approx(0.0, abs=1e-20)
    assert loss([replace(case, host_call_scale=1.0)], per_image) > 0.1


@pytest.fixture
def pipeline_set(tmp_path, monkeypatch):
    """Rows of a source that timed its input pipeline (fischer_eff22), measured = the v2 prior whose call waits
    ``S_PER_IMAGE`` x batch x boards: one board of a gtx1080ti at batch 32 (Quadro-like), and an 8-board
    a100 whose boards share one pipeline at batch 4 (TensorFlow's layout) and 32 (PyTorch's)."""
    monkeypatch.setattr(gpu_training, "FIT_STEPS", 40)
    # host_call_s alone is fitted (the rows were made with the runtime's own host_dispatch_s, which a
    # one-sweep fit of both would trade against the call on these host-bound rows)
    monkeypatch.setattr(gpu_training, "HOST_SHARE_TO_FIT", 1.01)
    layouts = {"gtx1080ti": ((32, 1),), "a100": ((4, 8), (32, 8))}
    rows = []
    for name, (k, m) in {"net_a": (64, 64), "net_b": (256, 128), "net_c": (512, 512)}.items():
        path = tmp_path / f"{name}.onnx"
        onnx.save(_mlp(k, m), path)
        for device, pairs in layouts.items():
            for batch, boards in pairs:
                terms, hw, rt = _terms(path, batch, device)
                c = V2Constants(host_call_s=S_PER_IMAGE * batch * boards)
                prior = assemble(terms, hw, rt, c)
                rows.append(
                    {
                        "model_ref": str(path),
                        "group": name,
                        "family": name,
                        "task": "synthetic",
                        "batch": batch,
                        "dtype": "float32",
                        "hardware": device,
                        "runtime": "pytorch-cuda",
                        "boundary": "gpu-board-nvml",
                        "joules_per_inference": prior.joules,
                        "latency_s": prior.seconds,
                        "source": "fischer_eff22",
                        "accelerators": boards,
                        "boards": 1,
                    }
                )
    return gpu_training.build_gpu_set(pd.DataFrame(rows), root=tmp_path, cache_dir=tmp_path / "cache")


def test_host_time_per_image_fitted_on_one_board_carries_to_boards_sharing_a_pipeline(pipeline_set):
    gs = pipeline_set
    devices = gs.table["hardware"].to_numpy()
    a100 = devices == "a100"
    constants = gpu_training.fit_runtime_constants(gs, ~a100)
    fitted = constants["pytorch-cuda+input-pipeline"]
    assert "gtx1080ti" in fitted.fitted_on and "a100" not in fitted.fitted_on
    assert fitted.host_call_s == pytest.approx(S_PER_IMAGE, rel=1e-3)
    log_prior, _ = gpu_training.prior_and_features(gs, constants)
    # the held-out 8-board rows are predicted as they were made: every board waits for the whole step's images
    np.testing.assert_allclose(np.exp(log_prior[a100]), gs.measured_j[a100], rtol=1e-3)
    # read per call instead (the constant of a batch-32 call on one board, whatever the layout), the 8-board
    # PyTorch rows (32 x 8 images per call) would miss 7/8 of their wait
    per_call = {"pytorch-cuda+input-pipeline": replace(fitted, host_call_s=fitted.host_call_s * 32)}
    t = gs.table.assign(source="synthetic")  # no input pipeline: host_call_s is per call
    flat = gpu_training.GpuSet(t, gs.configs, gs.missing)
    log_flat, _ = gpu_training.prior_and_features(
        flat, {"pytorch-cuda": per_call["pytorch-cuda+input-pipeline"]}
    )
    pt8 = a100 & (gs.table["batch"].to_numpy() == 32)
    hw = load_profile("a100")
    missed = hw.idle_with_context_w * S_PER_IMAGE * 32 * 7
    np.testing.assert_allclose(gs.measured_j[pt8] - np.exp(log_flat[pt8]), missed, rtol=1e-3)
    # and the fit on the 8-board rows alone finds the same per-image time (layout read from the rows)
    back = gpu_training.fit_runtime_constants(gs, a100)["pytorch-cuda+input-pipeline"]
    assert back.host_call_s == pytest.approx(S_PER_IMAGE, rel=1e-3)
    assert "s per image" in gpu_training._constants_text(back, per_image=True)
