"""Certified training losses for the training loop: IBP (Gowal et al. 2018) and CROWN-IBP (Zhang et al. 2020).

The loss at iteration t of T is kappa * CE(f(x), y) + (1 - kappa) * CE(z, y), where z is the worst-case logit
vector the bounds allow: z_y = 0 and z_j = -(lower bound of logit_y - logit_j) over the L-inf ball of radius
eps(t) around the pixels (clipped to the pixel range). The schedule is the reference code's: eps 0 for the
first ``cert_start`` of training, then rising linearly to ``cert_eps`` over ``cert_ramp``, kappa falling from
1 to ``cert_kappa`` over the same ramp, and for CROWN-IBP the bound beta * CROWN-IBP + (1 - beta) * IBP with
beta falling from 1 to 0 over the ramp (its defaults: final kappa 0.5, final beta 0).

Bounds are computed in train mode on the model's live parameters, so gradients reach every weight; masks are
then enforced by the loop as for any loss. Models with BatchNorm are refused (their bounds would need the
batch's statistics, which the reference code handles and ticketlab does not).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import to_pixels
from ..errors import UserError
from ..train.losses import LossTerm, register_loss
from .bounds import crown, ibp, input_box, margin_spec, other_classes
from .graph import ReLU, check_ops, to_ops


def schedule(cfg, it: int, total: int) -> tuple[float, float, float]:
    """(eps, kappa, beta) at iteration ``it`` of ``total``."""
    start, ramp = cfg.cert_start * total, cfg.cert_ramp * total
    frac = 0.0 if it < start else 1.0 if ramp <= 0 or it >= start + ramp else (it - start) / ramp
    return cfg.cert_eps * frac, 1.0 - (1.0 - cfg.cert_kappa) * frac, 1.0 - frac


def robust_ce(lower: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cross-entropy of the worst-case logits from margin lower bounds (B, K-1) (rows as ``margin_spec``)."""
    z = torch.zeros(len(y), num_classes, dtype=lower.dtype, device=lower.device)
    return F.cross_entropy(z.scatter(1, other_classes(y, num_classes), -lower), y)


class CertifiedLoss:
    """``loss(model, x, y, it)`` for standardised batches, as ``cfg.certified`` says."""

    def __init__(self, cfg, data, total: int):
        self.cfg, self.data, self.total = cfg, data, total
        self.k = data.num_classes
        self.ops = None

    def _ops(self, model: nn.Module):
        if self.ops is None:
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                raise UserError(
                    "--certified does not support models with BatchNorm; pick lenet300, mlp1d, "
                    "cnn-small, conv2/4/6 or cnn1d"
                )
            d = self.data  # on the model's device, standardisation included (Dataset.to)
            self.ops = to_ops(model, d.input_shape, d.mean, d.std)
            check_ops(self.ops, model, d.input_shape, d.mean, d.std)
        return self.ops

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, it: int) -> torch.Tensor:
        ops = self._ops(model)
        eps, kappa, beta = schedule(self.cfg, it, self.total)
        logits = model(x)
        natural = F.cross_entropy(logits, y)
        if eps <= 0:
            return natural
        lo, hi = input_box(to_pixels(x, self.data), eps, self.data.pixel_range)
        C = margin_spec(y, self.k).to(x.dtype)
        b_ibp = ibp(ops, lo, hi, C)
        lower = b_ibp.lower
        if self.cfg.certified == "crown-ibp" and beta > 0:
            b_crown = crown(ops, lo, hi, C, intermediate="ibp", upper=False, pre=b_ibp.pre)
            lower = beta * b_crown.lower + (1 - beta) * b_ibp.lower
        return kappa * natural + (1 - kappa) * robust_ce(lower, y, self.k)


class StabilityLoss:
    """The ReLU-stability regulariser (Xiao et al. 2019's RS loss, as Li et al.'s CertifiedPruning code adds it
    to training with weight 0.01): the mean over the batch and every ReLU neuron of -tanh(1 + l u), with [l, u]
    the neuron's IBP pre-activation bounds over the ``rs_eps`` ball. It is lowest when every interval sits on
    one side of 0, so it pushes neurons to be stable - what makes a net cheap and tight to verify."""

    def __init__(self, cfg, data):
        self.eps, self.data, self.ops = cfg.rs_eps, data, None

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.ops is None:
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                raise UserError(
                    "--rs-weight does not support models with BatchNorm; pick lenet300, mlp1d, "
                    "cnn-small, conv2/4/6 or cnn1d"
                )
            d = self.data
            self.ops = to_ops(model, d.input_shape, d.mean, d.std)
            check_ops(self.ops, model, d.input_shape, d.mean, d.std)
        lo, hi = input_box(to_pixels(x, self.data), self.eps, self.data.pixel_range)
        pre = ibp(self.ops, lo, hi).pre
        terms = [-torch.tanh(1 + l * u).flatten() for i, (l, u) in pre.items() if isinstance(self.ops[i], ReLU)]
        return torch.cat(terms).mean() if terms else x.new_zeros(())


def _stability_penalty(cfg, data, seed: int, total: int):
    """--rs-weight times the ReLU-stability loss of the batch."""
    loss = StabilityLoss(cfg, data)
    return lambda model, x, y, it: cfg.rs_weight * loss(model, x)


CERTIFIED = register_loss(
    LossTerm(
        "certified",
        "objective",
        lambda cfg: cfg.certified != "none",
        lambda cfg, data, seed, total: CertifiedLoss(cfg, data, total),
    )
)
STABILITY = register_loss(LossTerm("stability", "penalty", lambda cfg: cfg.rs_weight > 0, _stability_penalty))
