"""Verified robustness: sound bounds (IBP, CROWN, alpha-CROWN), complete verification (MILP, Marabou, branch and
bound with beta-CROWN) and certified training losses (IBP, CROWN-IBP), for feed-forward ReLU networks in pixel
units."""

from .bab import BaB
from .bounds import METHODS, Bounds, alpha_crown, crown, ibp, input_box, margin_spec, pre_bounds, stability
from .complete import SOLVERS, Complete, Verdict
from .graph import ReLU, check_ops, to_ops
from .training import CertifiedLoss, StabilityLoss

__all__ = [
    "METHODS",
    "BaB",
    "ReLU",
    "SOLVERS",
    "Bounds",
    "CertifiedLoss",
    "Complete",
    "StabilityLoss",
    "Verdict",
    "alpha_crown",
    "check_ops",
    "crown",
    "ibp",
    "input_box",
    "margin_spec",
    "pre_bounds",
    "stability",
    "to_ops",
]
