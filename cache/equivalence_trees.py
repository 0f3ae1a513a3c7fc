"""Boosted decision trees evaluated with numpy, for the equivalence scorer.

``scripts/train_equivalence.py`` fits the trees with LightGBM (a fitting-time
tool only) and stores each one padded to a complete binary tree of a fixed
depth in heap order (children of node ``i`` at ``2i + 1`` and ``2i + 2``): a
leaf reached early becomes pass-through nodes that always go left, and its
value is copied to every padded leaf below it. One pair then costs ``depth``
vectorised steps over all trees at once instead of a Python loop per tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Forest:
    """``feature``/``threshold``: (trees, 2**depth - 1); ``leaf``: (trees, 2**depth)."""

    feature: npt.NDArray[np.int16]
    threshold: npt.NDArray[np.float64]
    leaf: npt.NDArray[np.float64]
    depth: int

    def __post_init__(self) -> None:
        trees, inner = self.feature.shape
        if (
            inner != 2**self.depth - 1
            or self.threshold.shape != (trees, inner)
            or self.leaf.shape != (trees, inner + 1)
        ):
            raise ValueError(f"forest arrays do not describe trees of depth {self.depth}")

    def raw_score(self, x: npt.NDArray[np.float64]) -> float:
        """The summed leaf values (a logit) for one feature vector ``x``."""
        trees, inner = self.feature.shape
        # Flat indices into the raveled (contiguous) arrays: one gather per level.
        base = np.arange(0, trees * inner, inner)
        feature, threshold = self.feature.ravel(), self.threshold.ravel()
        node = np.zeros(trees, dtype=np.intp)
        for _ in range(self.depth):
            at = base + node
            node = 2 * node + 1 + (x[feature[at]] > threshold[at])
        return float(self.leaf.ravel()[base + base // inner + node - inner].sum())
