"""Robustness of (sparse) networks: white-box attacks in pixel units and adversarial training losses."""

from ..attacks import NORMS, AttackConfig, PixelSpace, fgsm, fgsm_rs, from_pixels, pgd, robust_accuracy, to_pixels
from .training import AdversarialLoss

__all__ = [
    "NORMS",
    "AdversarialLoss",
    "AttackConfig",
    "PixelSpace",
    "fgsm",
    "fgsm_rs",
    "from_pixels",
    "pgd",
    "robust_accuracy",
    "to_pixels",
]
