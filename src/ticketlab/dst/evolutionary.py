"""``set``, Sparse Evolutionary Training (Mocanu et al. 2018): drop the smallest-magnitude weights, regrow as
many at random positions."""

from __future__ import annotations

import torch

from .base import SparseTrainer
from .registry import SPARSE_TRAINERS


@SPARSE_TRAINERS.register("set")
class SET(SparseTrainer):
    name = "set"
    updates = True

    def grow_scores(self, t: int, g: torch.Generator) -> list[torch.Tensor]:
        return self.random_scores(g)
