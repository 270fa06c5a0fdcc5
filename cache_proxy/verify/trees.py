"""Gradient-boosted trees as plain arrays: the feature verifier's exported model.

The trainer (cache_tools) fits scikit-learn's HistGradientBoostingClassifier and writes its
trees here; the proxy scores with numpy alone (no scikit-learn, no pickle). All trees walk
together, one level per step, so a call costs `depth` vectorised steps whatever the tree count.
Semantics are scikit-learn's: go left when x <= threshold, NaN goes where the split sent it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

TREES_FILE = "trees.npz"
_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.int64]
_Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class TreeEnsemble:
    """Nodes of every tree in one table; `roots[t]` is tree t's first node."""

    feature: _Ints
    threshold: _Floats
    missing_left: _Bools
    left: _Ints
    right: _Ints
    is_leaf: _Bools
    value: _Floats
    roots: _Ints
    baseline: float
    depth: int

    def save(self, directory: Path) -> None:
        np.savez(
            directory / TREES_FILE,
            feature=self.feature, threshold=self.threshold, missing_left=self.missing_left,
            left=self.left, right=self.right, is_leaf=self.is_leaf, value=self.value,
            roots=self.roots, baseline=np.float64(self.baseline), depth=np.int64(self.depth),
        )  # fmt: skip

    @classmethod
    def load(cls, directory: Path) -> TreeEnsemble:
        with np.load(directory / TREES_FILE, allow_pickle=False) as data:
            return cls(
                feature=data["feature"].astype(np.int64),
                threshold=data["threshold"].astype(np.float64),
                missing_left=data["missing_left"].astype(bool),
                left=data["left"].astype(np.int64),
                right=data["right"].astype(np.int64),
                is_leaf=data["is_leaf"].astype(bool),
                value=data["value"].astype(np.float64),
                roots=data["roots"].astype(np.int64),
                baseline=float(data["baseline"]),
                depth=int(data["depth"]),
            )

    def probability(self, features: _Floats) -> _Floats:
        """P(positive class) per row: the sigmoid of baseline + the sum of every tree's leaf."""
        rows = np.arange(features.shape[0])[:, None]
        nodes = np.broadcast_to(self.roots, (features.shape[0], self.roots.size)).copy()
        for _ in range(self.depth):
            x = features[rows, self.feature[nodes]]
            go_left = np.where(np.isnan(x), self.missing_left[nodes], x <= self.threshold[nodes])
            step = np.where(go_left, self.left[nodes], self.right[nodes])
            nodes = np.where(self.is_leaf[nodes], nodes, step)
        raw = self.baseline + self.value[nodes].sum(axis=1)
        probability: _Floats = 1.0 / (1.0 + np.exp(-raw))
        return probability
