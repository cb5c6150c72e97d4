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
``mlee/ml_tensorflow/infer.py``, ``load_imagenet.py`` and ``mlee/ml_pytorch/infer.py``) run one process:
TensorFlow's MirroredStrategy scatters each global batch of 32 x 8 from one ``tf.data`` pipeline over the 8
A100s, PyTorch's ``nn.DataParallel`` a global batch of 32 x 8 from one ``DataLoader`` (32 per board each). Its
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

At a boundary that counts the host too (CodeCarbon's total), what the host adds to a call is a
:class:`PipelineTerm`: energy per image and per call and the host's power over the prior's seconds, fitted per
machine by :func:`fit_pipeline_term`.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class PipelineTerm:
    """What a machine's timed run adds to one call's forward pass at a boundary that counts its host, such as
    CodeCarbon's total (CPU + GPU + RAM over the run's duration), fitted per machine
    (:func:`~estimator.learn.gpu_training.fit_pipeline_terms`).

    Attributes:
        j_per_sample: host energy per image, J (decoding and preparing it, and the host and the waiting board
            drawing power while it is prepared).
        host_w: host power drawn while the board runs the call, W, times the prior's seconds of the call.
        j_per_call: host energy per call, J (the framework's per-step work outside the prior's host time).
    """

    j_per_sample: float
    host_w: float
    j_per_call: float

    def joules(self, batch: np.ndarray | float, seconds: np.ndarray | float) -> np.ndarray | float:
        """Joules added to calls of ``batch`` images whose prior lasts ``seconds``, s."""
        return self.j_per_sample * batch + self.host_w * seconds + self.j_per_call


#: A pipeline term per (constants key, boundary, device).
PipelineTerms = dict[tuple[str, str, str], PipelineTerm]


def fit_pipeline_term(
    prior_j: np.ndarray, batch: np.ndarray, seconds: np.ndarray, measured_j: np.ndarray
) -> PipelineTerm:
    """The :class:`PipelineTerm` of one machine from its rows: calls whose forward pass the prior puts at
    ``prior_j`` (J) and ``seconds`` (s), of ``batch`` images, measured at ``measured_j`` (J).

    The non-negative coefficients minimise the summed squared relative error of ``prior_j + term`` against
    ``measured_j`` (non-negative least squares, Lawson-Hanson: ``scipy.optimize.nnls``; a convex problem, so
    one answer and no search range). With fewer rows than the three coefficients, only ``j_per_sample``.
    """
    from scipy.optimize import nnls

    prior_j, batch, seconds, measured_j = (
        np.asarray(a, dtype=float) for a in (prior_j, batch, seconds, measured_j)
    )
    columns = np.column_stack([batch, seconds, np.ones(len(batch))])
    if len(batch) < columns.shape[1]:
        columns = columns[:, :1]
    coef, _ = nnls(columns / measured_j[:, None], 1.0 - prior_j / measured_j)
    return PipelineTerm(*(float(x) for x in np.pad(coef, (0, 3 - len(coef)))))


__all__ = [
    "PipelineTerm",
    "PipelineTerms",
    "fit_pipeline_term",
    "host_call_images",
    "host_layout",
    "pipeline_boards",
]
