"""``static``: a fixed random mask at the distribution's per-layer densities (the baseline DST improves on)."""

from .base import SparseTrainer
from .registry import SPARSE_TRAINERS

SPARSE_TRAINERS.register("static")(SparseTrainer)
