"""A host input pipeline and process shared by the boards of one run: the per-image host time, the images a
board's call waits for (batch x boards), the kernels the host issues per call (launches x boards), and
constants fitted on one-board machines carried to an eight-board machine."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pandas as pd
import pytest

from estimator.cost.kernels import fuse_kernels
from estimator.cost.nodes import count_costs
from estimator.energy.hardware import load_profile
from estimator.energy.prior_fit import FitCase, loss, scaled_host
from estimator.energy.prior_v2 import V2Constants, assemble, device_terms
from estimator.energy.runtimes import get_runtime
from estimator.graph.load import load_graph
from estimator.learn import gpu_training
from estimator.learn.gpu_pipeline import host_call_images, pipeline_boards
from tests.test_gpu_learning import _mlp

#: The pipeline's host time per image of the synthetic machines below, s (a Quadro-like host: ~0.5 ms).
S_PER_IMAGE = 5e-4
RUNTIME = get_runtime("pytorch-cuda")


def test_images_and_boards_per_call_follow_the_recorded_layout():
    table = pd.DataFrame({"batch": [4, 32, 32, 32, 1], "accelerators": [8, 8, 1, None, 8]})
    pipeline = np.array([True, True, True, True, False])
    # TF MirroredStrategy: 4 per board x 8 boards = the global batch of 32; PyTorch DataParallel: 32 x 8; one
    # board: its batch; no recorded boards: one; a row that timed no pipeline: per call (1)
    np.testing.assert_array_equal(host_call_images(table, pipeline), [32.0, 256.0, 32.0, 32.0, 1.0])
    np.testing.assert_array_equal(pipeline_boards(table, pipeline), [8.0, 8.0, 1.0, 1.0, 1.0])
    no_column = pd.DataFrame({"batch": [16, 16]})
    np.testing.assert_array_equal(host_call_images(no_column, np.array([True, False])), [16.0, 1.0])
    np.testing.assert_array_equal(pipeline_boards(no_column, np.array([True, False])), [1.0, 1.0])


def test_scaled_host_multiplies_a_set_host_call_and_the_host_time_per_kernel():
    c = V2Constants(host_dispatch_s=1e-5, host_call_s=2e-3)
    assert scaled_host(c, RUNTIME, 8.0).host_call_s == pytest.approx(1.6e-2)
    assert scaled_host(c, RUNTIME, 8.0).host_dispatch_s == 1e-5
    assert scaled_host(c, RUNTIME, 1.0, 8.0).host_dispatch_s == pytest.approx(8e-5)
    assert scaled_host(c, RUNTIME, 1.0, 8.0).host_call_s == 2e-3
    # the runtime's own per-call value is never scaled; its per-kernel value is
    assert scaled_host(V2Constants(), RUNTIME, 8.0) == V2Constants()
    assert scaled_host(None, RUNTIME, 8.0, 8.0).host_call_s is None
    assert scaled_host(None, RUNTIME, 8.0, 8.0).host_dispatch_s == pytest.approx(8 * RUNTIME.host_dispatch_s)
    assert scaled_host(None, RUNTIME) is None and scaled_host(c, RUNTIME, 1.0, 1.0) is c


def _terms(path, batch, device):
    kernels = fuse_kernels(count_costs(load_graph(path, batch=batch)), fuse=False)
    hw = load_profile(device)
    return device_terms(kernels, hw, RUNTIME), hw, RUNTIME


def test_a_call_waits_for_every_boards_images_and_kernels_closed_form(tmp_path):
    """The call's host time enters the prior additively (``T = c + end_last``, the board waiting at
    idle-with-context power): a board of 8 sharing the pipeline at batch 4 waits 32 images' host time per
    call, N = 8 times the per-sample wait of a lone board at the same batch. Host-bound (every kernel shorter
    than the host time per kernel), ``end_last = L h + g_last``: issuing the kernels of 8 boards adds
    ``7 L h``."""
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(64, 64), path)
    terms, hw, rt = _terms(path, 4, "a100")
    per_image = V2Constants(host_call_s=S_PER_IMAGE)
    none = assemble(terms, hw, rt, V2Constants(host_call_s=0.0))
    shared = assemble(terms, hw, rt, scaled_host(per_image, rt, 4 * 8))
    alone = assemble(terms, hw, rt, scaled_host(per_image, rt, 4))
    assert shared.seconds - none.seconds == pytest.approx(S_PER_IMAGE * 32, rel=1e-9)
    assert shared.joules - none.joules == pytest.approx(hw.idle_with_context_w * S_PER_IMAGE * 32, rel=1e-9)
    assert (shared.seconds - none.seconds) / (alone.seconds - none.seconds) == pytest.approx(8.0)
    launches = float(terms.launches.sum())
    issued = assemble(terms, hw, rt, scaled_host(V2Constants(host_call_s=0.0), rt, 1.0, 8.0))
    assert issued.seconds - none.seconds == pytest.approx(7 * launches * rt.host_dispatch_s, rel=1e-9)
    # the fit's loss reads the case's scales: a case measured at the shared layout has zero loss
    both = assemble(terms, hw, rt, scaled_host(per_image, rt, 32.0, 8.0))
    case = FitCase(terms, hw, rt, both.joules, both.seconds, host_call_scale=32.0, host_dispatch_scale=8.0)
    assert loss([case], per_image) == pytest.approx(0.0, abs=1e-20)
    assert loss([replace(case, host_call_scale=1.0)], per_image) > 0.1
    assert loss([replace(case, host_dispatch_scale=1.0)], per_image) > 1e-4


@pytest.fixture
def pipeline_set(tmp_path, monkeypatch):
    """Rows of a source that timed its input pipeline (fischer_eff22), measured = the v2 prior whose call waits
    ``S_PER_IMAGE`` x batch x boards and whose host issues the kernels of every board: one board of a
    gtx1080ti at batch 32 (Quadro-like), and an 8-board a100 whose boards share one pipeline and process at
    batch 4 (TensorFlow's layout) and 32 (PyTorch's)."""
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
                c = V2Constants(
                    host_call_s=S_PER_IMAGE * batch * boards, host_dispatch_s=rt.host_dispatch_s * boards
                )
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
    # read per call and per board instead (the constants of a batch-32 call on one board, whatever the layout),
    # the 8-board PyTorch rows (32 x 8 images per call) would miss 7/8 of the images' wait and of the issue
    per_call = replace(fitted, host_call_s=fitted.host_call_s * 32)
    flat = gpu_training.GpuSet(gs.table.assign(source="synthetic"), gs.configs, gs.missing)  # no pipeline
    log_flat, _ = gpu_training.prior_and_features(flat, {"pytorch-cuda": per_call})
    pt8 = a100 & (gs.table["batch"].to_numpy() == 32)
    p_wait = load_profile("a100").idle_with_context_w
    missed = gs.measured_j[pt8] - np.exp(log_flat[pt8])
    launches = np.array([gs.configs[k].terms.launches.sum() for k in gs.table["config"][pt8]])
    call_part = p_wait * S_PER_IMAGE * 32 * 7
    assert np.all(missed >= call_part * (1 - 2e-3))
    assert np.all(missed <= (call_part + p_wait * 7 * launches * RUNTIME.host_dispatch_s) * (1 + 2e-3))
    # and the fit on the 8-board rows alone finds the same per-image time (layout read from the rows)
    back = gpu_training.fit_runtime_constants(gs, a100)["pytorch-cuda+input-pipeline"]
    assert back.host_call_s == pytest.approx(S_PER_IMAGE, rel=1e-3)
    assert "host_call_s per image" in back.fitted_on


def test_a_per_image_host_call_at_the_edge_of_its_range_is_kept_per_call(tmp_path):
    """Rows with no host time per call drive a per-image ``host_call_s`` to the low edge of its search range:
    not identified, it is kept as None (the runtime's per-call value, which no layout scales), not as the
    runtime's per-call value read per image."""
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(256, 128), path)
    hw, rt = load_profile("a100"), get_runtime("tensorflow-gpu")  # a runtime with a per-call host time
    terms = device_terms(fuse_kernels(count_costs(load_graph(path, batch=32)), fuse=False), hw, rt)
    assert rt.host_call_s > 1e-4
    made = assemble(terms, hw, rt, V2Constants(host_call_s=0.0))
    cases = [FitCase(terms, hw, rt, made.joules, made.seconds, host_call_scale=32.0)]
    per_image = gpu_training._fit_identifiable(cases, "one row", per_image=True)
    assert per_image.host_call_s is None and "kept as shipped" in per_image.fitted_on
    assert "host_call_s per image" in per_image.fitted_on
    # a per-call fit never leaves its host_call_s to the runtime (a kept one is the runtime's value, a number)
    per_call = gpu_training._fit_identifiable([replace(cases[0], host_call_scale=1.0)], "one row")
    assert per_call.host_call_s is not None and "per image" not in per_call.fitted_on
