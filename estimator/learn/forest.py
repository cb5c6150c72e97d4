"""A fitted xgboost booster's trees as numpy arrays (:class:`Forest`), walked for every tree at once.

Estimating predicts one row per network (or one per kernel): xgboost's per-call set-up costs milliseconds where the
walk itself costs microseconds, and importing xgboost (with scikit-learn) costs 1-2 s of a command's start-up. The
forest is built from the saved model's content (xgboost's JSON schema, read from the UBJSON file by
:mod:`estimator.learn.ubjson`) and predicts what xgboost predicts, bit for bit (``tests/test_fast_paths.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Forest:
    """The booster's trees as numpy arrays, walked for all trees at once: the same float32 comparisons and the
    same float32 sum, tree after tree, as xgboost's CPU predictor, so the predictions are bit-identical (tested);
    for the few rows of an estimate it takes ~0.1 ms where xgboost's per-call set-up takes ~5 ms.

    Attributes (trees x nodes, padded): ``feature`` split feature, ``threshold`` go left when ``x < threshold``,
    ``children`` the flat ids (``tree * nodes + node``) of the left and right child of each flat id,
    interleaved (``[2 * id]`` left, ``[2 * id + 1]`` right; a leaf's children are itself), ``default_left`` where a
    missing value (NaN) goes, ``value`` the leaf values; ``base_score`` the margin every prediction starts from;
    ``depth`` the longest path.
    """

    feature: np.ndarray
    threshold: np.ndarray
    children: np.ndarray
    default_left: np.ndarray
    value: np.ndarray
    base_score: np.float32
    depth: int

    @staticmethod
    def of(booster: Any) -> Forest | None:
        """The forest of a single-target ``reg:squarederror`` gbtree with numerical splits; None otherwise
        (the caller then predicts with xgboost)."""
        return Forest.of_model(json.loads(bytes(booster.save_raw(raw_format="json"))))

    @staticmethod
    def of_model(saved: dict) -> Forest | None:
        """:meth:`of` from a saved model's content (xgboost's JSON schema, as read from JSON or UBJSON)."""
        learner = saved["learner"]
        params = learner["learner_model_param"]
        booster_json = learner["gradient_booster"]
        if (
            learner["objective"]["name"] != "reg:squarederror"
            or booster_json["name"] != "gbtree"
            or params.get("num_target", "1") != "1"
            or params.get("num_class", "0") != "0"
            or booster_json["model"]["gbtree_model_param"].get("num_parallel_tree", "1") != "1"
        ):
            return None
        trees = booster_json["model"]["trees"]
        if not trees or any(np.any(t["split_type"]) or len(t["categories"]) for t in trees):
            return None
        if any(int(t["tree_param"].get("size_leaf_vector", "1")) > 1 for t in trees):
            return None
        sizes = np.array([len(t["left_children"]) for t in trees])
        width = int(sizes.max())
        shape = (len(trees), width)
        used = np.arange(width) < sizes[:, None]  # the trees' nodes, row after row, in the padded arrays

        def padded(key: str, dtype: type, fill: float = 0) -> np.ndarray:
            out = np.full(shape, fill, dtype=dtype)
            out[used] = np.concatenate([np.asarray(t[key]) for t in trees]).astype(dtype)
            return out

        lc, rc = padded("left_children", np.intp, -1), padded("right_children", np.intp, -1)
        leaf = lc == -1  # leaves and padding
        own = np.broadcast_to(np.arange(width), shape)
        conditions = padded("split_conditions", np.float32)
        feature = padded("split_indices", np.int32)  # int32 ids: half the bytes a worker process receives
        threshold = conditions
        default_left = padded("default_left", bool)
        value = np.where(leaf, conditions, np.float32(0))
        depth = _depth(lc, rc)
        base = params["base_score"].strip("[]").split(",")
        if len(base) != 1:
            return None
        offset = (np.arange(len(trees)) * width)[:, None]
        left, right = np.where(leaf, own, lc) + offset, np.where(leaf, own, rc) + offset
        children = np.stack([left.ravel(), right.ravel()], axis=1).ravel().astype(np.int32)
        return Forest(feature, threshold, children, default_left, value, np.float32(float(base[0])), depth)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions (float32) for rows ``X`` (rows x features, float32)."""
        n_rows, n_features = X.shape
        # A walker's state is twice its flat node id (tree * width + node): its left child's slot in the
        # interleaved ``children``, the right one's next to it; the per-node arrays are read at the state.
        walk = self._walk
        at = np.broadcast_to(walk.roots, (n_rows, len(walk.roots))).copy()
        flat_x = X.ravel()
        missing = bool(np.isnan(flat_x).any())
        row_offset = (np.arange(n_rows, dtype=np.intp) * n_features)[:, None] if n_rows > 1 else None
        for _ in range(self.depth):
            column = walk.feature.take(at)
            if row_offset is not None:
                column += row_offset
            x = flat_x.take(column)
            if missing:
                go_right = ~(x < walk.threshold.take(at))
                go_right = np.where(np.isnan(x), ~walk.default_left.take(at), go_right)
            else:
                go_right = x >= walk.threshold.take(at)  # ~(x < threshold) when x is a number
            at += go_right
            at = walk.children.take(at)
        leaves = walk.value.take(at)
        # xgboost adds the trees' leaves one after another to the base score, in float32: cumsum does the same.
        margin = np.concatenate([np.full((n_rows, 1), self.base_score, dtype=np.float32), leaves], axis=1)
        return np.cumsum(margin, axis=1, dtype=np.float32)[:, -1]

    @cached_property
    def _walk(self) -> _Walk:
        """The arrays a walk reads, indexed by walker state: built on the first prediction (never pickled)."""
        n_trees, width = self.feature.shape

        def per_state(a: np.ndarray) -> np.ndarray:
            return np.repeat(a.ravel(), 2)  # state 2 * id (and its right slot) reads node id

        return _Walk(
            roots=np.arange(n_trees, dtype=np.intp) * (2 * width),
            feature=per_state(self.feature),
            threshold=per_state(self.threshold),
            default_left=per_state(self.default_left),
            value=per_state(self.value),
            children=self.children.astype(np.intp) * 2,
        )

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_walk"}


@dataclass(frozen=True)
class _Walk:
    """A forest's arrays by walker state (twice the flat node id): the roots' states, each state's split
    feature, threshold, default direction and leaf value, and ``children`` (state + go-right -> child state)."""

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    value: np.ndarray
    children: np.ndarray


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Edges on the longest root-to-leaf path of any tree (``left``, ``right``: trees x nodes, -1 for none)."""
    n_trees, width = left.shape
    parent = np.flatnonzero(left.ravel() != -1)  # flat ids of split nodes
    row = parent // width * width
    children = np.concatenate([left.ravel()[parent] + row, right.ravel()[parent] + row])
    parents = np.concatenate([parent, parent])
    depth = np.zeros(n_trees * width, dtype=np.intp)
    for _ in range(width + 1):  # a node's depth is its parent's plus one; settles after the longest path
        new = depth[parents] + 1
        if np.array_equal(depth[children], new):
            return int(depth.max())
        depth[children] = new
    raise ValueError("a tree's children form a cycle")
