"""The host time of a source's timed input pipeline, per image, and how it reaches each board of a run whose
boards share one pipeline.

Sources that timed their ImageNet input pipeline with the inference (``INPUT_PIPELINE_SOURCES`` in
:mod:`estimator.learn.gpu_training`) have their own v2 host constants, fitted at ``gpu-board-nvml``. Their
``host_call_s`` is read as the pipeline's host time **per image**, not per call: the host decodes and resizes
every image the run processes, so a call's host time grows with the images behind it (as the pipeline energy
per sample at other boundaries does: :func:`~estimator.learn.gpu_training.fit_pipeline_terms`).

Assumption (stated here, used for every such row): one host pipeline feeds all the run's ``accelerators``. A
board's call at per-board batch ``b`` then waits for the images of every board's share of the step,
``b x N`` for ``N`` boards, so per sample it processes a board waits ``N`` times the pipeline's time per image,
not once. ImageNetEff22's published scripts (github.com/raphischer/imagenet-energy-efficiency @ 65eb68c,
``mlee/ml_tensorflow/infer.py`` and ``mlee/ml_pytorch/infer.py``) run one process: TensorFlow's
MirroredStrategy splits each global batch of 32 from one ``tf.data`` pipeline over the 8 A100s (4 per board);
PyTorch's ``nn.DataParallel`` scatters a global batch of 32 x 8 from one ``DataLoader`` (32 per board). Its
Quadro RTX 5000 rows are one board on another host (N = 1). A row without ``accelerators`` counts one board.

The same one process issues every board's kernels: per call of one board it issues ``N`` x the graph's
launches (MirroredStrategy's replicas in one runtime; DataParallel's replicas from one Python process, whose
threads contend for the GIL: PyTorch's tutorial "Getting Started with Distributed Data Parallel",
github.com/pytorch/tutorials ``intermediate_source/ddp_tutorial.rst``). So the host time per kernel is
multiplied by ``N`` too (``host_dispatch_s`` stays per kernel and board). Checked on ImageNetEff22's recorded
run times (diagnosis only, nothing is fitted on them): on the 8 A100s the TensorFlow step of the 224-pixel
networks grows by ~8-10e-5 s per launched kernel of one replica (ResNet-50 to -152, DenseNet-121 to -201), 8 x
the runtime's 1e-5 s; the PyTorch steps hardly grow with the kernels (0.40-0.48 s): there the 16 DataLoader
workers' pipeline hides the issue, an overlap the v2 prior (host and GPU time added) does not model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pipeline_boards(table: pd.DataFrame, pipeline: np.ndarray) -> np.ndarray:
    """Per row, the boards one host pipeline and process serve (dimensionless): the row's ``accelerators`` (1
    when missing) for a row that timed its input pipeline (``pipeline`` True), 1 for every other row."""
    boards = (
        table["accelerators"].astype("Float64").fillna(1.0).to_numpy(dtype=float)
        if "accelerators" in table
        else np.ones(len(table))
    )
    return np.where(np.asarray(pipeline, dtype=bool), np.maximum(boards, 1.0), 1.0)


def host_call_images(table: pd.DataFrame, pipeline: np.ndarray) -> np.ndarray:
    """Per row, the images whose host time one call of that row waits for (dimensionless): for a row that
    timed its input pipeline (``pipeline`` True), its per-board ``batch`` x :func:`pipeline_boards`; 1 for
    every other row, whose ``host_call_s`` is per call."""
    batch = table["batch"].to_numpy(dtype=float)
    return np.where(np.asarray(pipeline, dtype=bool), batch * pipeline_boards(table, pipeline), 1.0)


def host_layout(table: pd.DataFrame, pipeline: np.ndarray) -> dict[str, np.ndarray]:
    """Per row, ``host_call_images`` (:func:`host_call_images`) and ``pipeline_boards``
    (:func:`pipeline_boards`), the two scales of its host constants (dimensionless), as columns."""
    return {
        "host_call_images": host_call_images(table, pipeline),
        "pipeline_boards": pipeline_boards(table, pipeline),
    }


__all__ = ["host_call_images", "host_layout", "pipeline_boards"]
