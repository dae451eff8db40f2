"""Learning a supermask over frozen weights: untrained (random init or signed constant) or pretrained
(lottery jackpots, Zhang et al.: edge-popup search on trained weights starting from their magnitude mask;
robust tickets, Zheng et al. 2022: hard-concrete gates with a smoothed L0 penalty, learned with an
adversarial loss when training takes ``--adv``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import UserError
from ..sparse import Mask
from .masks import BernoulliMask, HardConcreteMask, TopKMask

METHODS = ("bernoulli", "edge-popup", "jackpot", "hard-concrete")
WEIGHTS = ("init", "signed-constant")


def signed_constant_(model: nn.Module, names: list[str]) -> None:
    """Replace each weight by sign(w) * std(w) (the layer's init std: the population std, np.std as Zhou et
    al.'s code has it), in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            w = params[n]
            w.copy_(torch.sign(w) * w.std(correction=0))


def attach(
    model: nn.Module, names: list[str], method: str, density: float = 0.5, seed: int = 0, init_logit: float = 0.0
) -> dict[str, nn.Module]:
    """Freeze every parameter and put a learnable mask on each of ``names``; returns name -> mask module.

    ``bernoulli``: logits start at ``init_logit`` (0 = probability 1/2). ``edge-popup``: scores start from
    Kaiming-uniform noise. ``jackpot``: scores start at |w|, so the first mask is the magnitude mask.
    ``hard-concrete``: log_alpha starts at ``init_logit`` (+ N(0, 0.01^2)); its binary mask keeps ``density``.
    """
    if method not in METHODS:
        raise UserError(f"unknown supermask method {method!r}; choose one of: {', '.join(METHODS)}")
    if method != "bernoulli" and not 0 < density <= 1:
        raise UserError(f"--density must be in (0, 1], got {density}")
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    modules = {}
    for n in names:
        w = params[n]
        if method == "bernoulli":
            mod = BernoulliMask(w.shape, init_logit, seed=seed, tag=n)
        elif method == "hard-concrete":
            mod = HardConcreteMask(w.shape, density, init_logit, seed=seed, tag=n)
        elif method == "edge-popup":
            fan_in = w[0].numel()
            bound = 1 / math.sqrt(fan_in)  # kaiming_uniform with a=sqrt(5), as in the reference code
            mod = TopKMask(torch.empty(w.shape).uniform_(-bound, bound, generator=g), density)
        else:
            mod = TopKMask(w.detach().abs().cpu(), density)
        mod = mod.to(w.device)
        owner, _, attr = n.rpartition(".")
        parametrize.register_parametrization(model.get_submodule(owner), attr, mod, unsafe=True)
        modules[n] = mod
    return modules


def set_eval_mode(modules: dict[str, nn.Module], mode: str) -> None:
    """Bernoulli masks: expected, sample or round; hard-concrete gates: gate or binary."""
    for m in modules.values():
        if isinstance(m, (BernoulliMask, HardConcreteMask)):
            m.eval_mode = mode


def hard_masks(modules: dict[str, nn.Module]) -> Mask:
    """The binary mask each module settles on (Bernoulli: probability > 1/2; top-k: the top k)."""
    return {n: m.hard_mask().cpu() for n, m in modules.items()}


def expected_density(modules: dict[str, nn.Module]) -> float:
    num = den = 0.0
    for m in modules.values():
        if isinstance(m, BernoulliMask):
            num += float(m.probabilities().detach().sum())
        elif isinstance(m, HardConcreteMask):
            num += float(m.open_probability().detach().sum())
        else:
            num += m.k
        den += m.scores.numel()
    return num / den
