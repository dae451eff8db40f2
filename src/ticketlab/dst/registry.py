"""SPARSE_TRAINERS: method name -> SparseTrainer subclass; ``make`` builds one for a model and optimizer."""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

SPARSE_TRAINERS: Registry = Registry("sparse trainer")


def make(name: str, model: nn.Module, optimizer: torch.optim.Optimizer, **kwargs):
    """``make("rigl", model, opt, density=0.1, total_steps=T)``: see each class for its options."""
    return SPARSE_TRAINERS.get(name)(model, optimizer, **kwargs)
