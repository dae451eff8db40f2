"""Saliency scores for pruning at initialization (higher = keep).

- ``random``: uniform noise.  ``magnitude``: |w|.
- ``snip`` (Lee et al. 2019): connection sensitivity |w * dL/dw| on a few labelled batches.
- ``grasp`` (Wang et al. 2020): keep the weights whose removal would most reduce gradient flow: the
  score is w * (H g), H the Hessian and g the gradient of the loss (logits at temperature 200, as the
  reference code), computed with a Hessian-vector product. GraSP prunes the largest -w * Hg.
- ``synflow`` (Tanaka et al. 2020): data-free. With every weight replaced by its absolute value and an
  all-ones input, R = sum of the outputs; the score is |w * dR/dw|, computed in float64. Iterated with
  an exponential density schedule (``prune_at_init``), which avoids layer collapse.
- ``gap`` (greedy adversarial pruning, O'Brien Weiss et al. 2022): removes the parameters most important
  to the model's behaviour on adversarial inputs, judged by the gradient there. PGD examples (L-inf,
  ``eps`` in pixel units) are made against the current masked model on the scoring batches; with g the
  gradient of the loss on them, removing w changes that loss by about -w g, so the weights with the
  largest w g (those the adversarial examples lean on most) are removed first: the score (higher = keep)
  is -w g. Greedy: each step of an iterative schedule re-attacks the pruned model. Needs the dataset's
  pixel space, passed as ``context={"data": dataset}`` (``prune_at_init``); the paper gives only this
  idea in its abstract here, the signed first-order reading is ticketlab's.

Scores are computed on the masked model (pruned weights at zero), so iterative schedules re-score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import AttackConfig, PixelSpace, pgd, to_pixels
from ..errors import UserError
from .registry import PRUNERS

GRASP_TEMPERATURE = 200.0


def _params(model: nn.Module, names: list[str]) -> list[torch.Tensor]:
    p = dict(model.named_parameters())
    return [p[n] for n in names]


@PRUNERS.register("random")
def random_scores(model, names, batches, g):
    return {n: torch.rand(p.shape, generator=g).to(p.device) for n, p in zip(names, _params(model, names))}


@PRUNERS.register("magnitude")
def magnitude_scores(model, names, batches, g):
    return {n: p.detach().abs() for n, p in zip(names, _params(model, names))}


@PRUNERS.register("snip")
def snip_scores(model, names, batches, g):
    params = _params(model, names)
    grads = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        for acc, gr in zip(grads, torch.autograd.grad(loss, params)):
            acc += gr
    return {n: (p.detach() * gr).abs() for n, p, gr in zip(names, params, grads)}


@PRUNERS.register("grasp")
def grasp_scores(model, names, batches, g):
    params = _params(model, names)
    # g: the gradient of the (temperature-scaled) loss, summed over batches, held constant.
    gvec = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        loss = F.cross_entropy(model(x) / GRASP_TEMPERATURE, y)
        for acc, gr in zip(gvec, torch.autograd.grad(loss, params)):
            acc += gr
    # H g: differentiate g(w)^T g_const with respect to w, batch by batch.
    hg = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        loss = F.cross_entropy(model(x) / GRASP_TEMPERATURE, y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        z = sum((gr * gc).sum() for gr, gc in zip(grads, gvec))
        for acc, h in zip(hg, torch.autograd.grad(z, params)):
            acc += h
    return {n: p.detach() * h for n, p, h in zip(names, params, hg)}


@PRUNERS.register("gap")
def gap_scores(model, names, batches, g, *, data=None, eps: float = 0.1, steps: int = 10):
    if data is None:
        raise UserError("the gap pruner attacks the model: it needs the dataset (context={'data': ...})")
    params = _params(model, names)
    net = PixelSpace(model, data.mean, data.std)
    attack = AttackConfig(eps=eps, steps=steps)
    attack.validate()
    grads = [torch.zeros_like(p) for p in params]
    was = model.training
    model.eval()  # attack and gradient with BatchNorm's running statistics, none updated
    try:
        for x, y in batches:
            adv = pgd(net, to_pixels(x, data), y, attack, pixel_range=data.pixel_range, generator=g)
            loss = F.cross_entropy(net(adv), y)
            for acc, gr in zip(grads, torch.autograd.grad(loss, params)):
                acc += gr
    finally:
        model.train(was)
    return {n: -(p.detach() * gr) for n, p, gr in zip(names, params, grads)}


gap_scores.takes_context = True


@PRUNERS.register("synflow")
def synflow_scores(model, names, batches, g):
    was_training = model.training
    model.eval()
    model.double()
    try:
        with torch.no_grad():
            signs = {n: torch.sign(p) for n, p in model.state_dict().items() if p.is_floating_point()}
            for p in model.state_dict().values():
                if p.is_floating_point():
                    p.abs_()
        params = _params(model, names)
        x0 = batches[0][0] if batches else None
        if x0 is None:
            raise ValueError("synflow needs the input shape: pass one batch (its values are ignored)")
        ones = torch.ones((1,) + tuple(x0.shape[1:]), dtype=torch.float64, device=x0.device)
        R = model(ones).sum()
        grads = torch.autograd.grad(R, params)
        scores = {n: (p.detach() * gr).abs().float() for n, p, gr in zip(names, params, grads)}
        with torch.no_grad():
            for n, p in model.state_dict().items():
                if n in signs:
                    p.mul_(signs[n])
    finally:
        model.float()
        model.train(was_training)
    return scores
