"""Loss terms: what a training minimises besides (or instead of) the cross-entropy of its batch, as a registry
so that the loop knows no family. Adversarial training (robust/), certified training and the ReLU-stability
regulariser (verify/) register theirs; a plugin registers its own through the ``ticketlab.losses`` entry
point group (``commands.load_losses``).

A term is an *objective* (it replaces the batch's cross-entropy: the loss on adversarial examples, on certified
bounds; at most one is on) or a *penalty* (added to the objective, weighted by the term itself). Each is built
once per training from the training's config: ``build(cfg, data, seed, total)`` returns ``f(model, x, y, it)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import commands
from ..errors import UserError
from ..registry import Registry

KINDS = ("objective", "penalty")


@dataclass(frozen=True)
class LossTerm:
    name: str
    kind: str  # "objective" (replaces the cross-entropy) or "penalty" (added to it)
    enabled: Callable  # enabled(train_cfg) -> bool: whether this training uses it
    build: Callable  # build(train_cfg, data, seed, total) -> f(model, x, y, it) -> loss tensor


LOSS_TERMS: Registry[LossTerm] = Registry("loss term")


def register_loss(term: LossTerm) -> LossTerm:
    if term.kind not in KINDS:
        raise ValueError(f"a loss term's kind is one of {KINDS}, got {term.kind!r}")
    LOSS_TERMS.register(term.name)(term)
    return term


def enabled_terms(cfg) -> list[LossTerm]:
    """The loss terms a training's config turns on."""
    commands.load_losses()
    return [LOSS_TERMS.get(n) for n in LOSS_TERMS if LOSS_TERMS.get(n).enabled(cfg)]


def build_losses(cfg, data, seed: int, total: int) -> tuple[Callable | None, list[Callable]]:
    """(the objective replacing the cross-entropy, or None; the penalties added to it) of a training."""
    on = enabled_terms(cfg)
    objectives = [t for t in on if t.kind == "objective"]
    if len(objectives) > 1:
        raise UserError(f"the losses {', '.join(t.name for t in objectives)} each replace the training loss; keep one")
    objective = objectives[0].build(cfg, data, seed, total) if objectives else None
    return objective, [t.build(cfg, data, seed, total) for t in on if t.kind == "penalty"]
