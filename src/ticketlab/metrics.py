"""Predictive metrics from class probabilities: accuracy, negative log-likelihood, expected calibration error.

Ensembles average their members' softmax outputs (``ensemble_probs``) and are scored the same way.
"""

from __future__ import annotations

import torch
from torch import nn


def predict_probs(model: nn.Module, x: torch.Tensor, batch: int = 5000) -> torch.Tensor:
    """Softmax outputs of ``model`` (in eval mode) on ``x``, in float64 on the CPU."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat(
                [torch.softmax(model(x[i : i + batch]).double(), dim=1).cpu() for i in range(0, len(x), batch)]
            )
    finally:
        model.train(was)


def ensemble_probs(probs: list[torch.Tensor]) -> torch.Tensor:
    """The ensemble's predictive distribution: the mean of its members' softmax outputs."""
    return torch.stack(probs).mean(0)


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): |accuracy - confidence| over ``bins`` equal-width confidence bins, weighted by
    the fraction of examples in each bin."""
    conf, pred = probs.max(1)
    correct = (pred == y.cpu()).double()
    idx = torch.clamp((conf * bins).ceil().long() - 1, 0, bins - 1)  # bin b holds (b/bins, (b+1)/bins]
    acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, correct)
    cs = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, conf)
    return float((acc - cs).abs().sum() / len(y))


def classification_metrics(probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """{"acc", "nll", "ece"} of predicted probabilities against labels."""
    y = y.cpu()
    picked = probs[torch.arange(len(y)), y].clamp_min(1e-300)
    return {
        "acc": float((probs.argmax(1) == y).double().mean()),
        "nll": float(-picked.log().mean()),
        "ece": expected_calibration_error(probs, y, bins),
    }
