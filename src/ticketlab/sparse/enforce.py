"""Keeping pruned weights exactly zero through every optimizer step.

``MaskEnforcer`` zeroes the gradients of pruned entries before the step (so no optimizer state -
momentum, Adam moments - builds up for them) and multiplies the weights by the mask after the step (so
decoupled weight decay or any other update cannot resurrect them). When a mask is (re)applied it also
clears the optimizer state of the pruned entries. Both passes are single fused ``_foreach_mul_`` calls.

In your own loop::

    enforcer = MaskEnforcer(model, mask, optimizer)   # zeroes pruned weights and their state now
    ...
    loss.backward()
    enforcer.step()          # = mask_grads_(); optimizer.step(); mask_weights_()

or ``enforcer.attach()`` once, to run the two passes as hooks around every ``optimizer.step()``.

``frozen`` (optional) gives values that pruned entries are held at instead of zero (Zhou et al.'s
"freeze at init" ablations): they still get no gradient and no optimizer state.

``after_step=False`` skips the weight pass. That is exact for elementwise optimizers (SGD, Adam, AdamW,
with or without weight decay): a pruned entry has weight 0, optimizer state 0 (cleared here) and
gradient 0 (the first pass), so its update is exactly 0. ticketlab's trainer uses it to halve the cost;
keep the default for optimizers that couple entries or for held (``frozen``) values.
"""

from __future__ import annotations

import torch
from torch import nn

from .mask import Mask


def mask_grads_(params: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    """Multiply each parameter's gradient (where it has one) by its float mask, in one fused call."""
    with torch.no_grad():
        pairs = [(p.grad, m) for p, m in zip(params, masks) if p.grad is not None]
        if pairs:
            grads, ms = zip(*pairs)
            torch._foreach_mul_(list(grads), list(ms))


def clear_optimizer_state_(
    optimizer: torch.optim.Optimizer, params: list[torch.Tensor], keep: list[torch.Tensor]
) -> None:
    """Zero every per-element optimizer state tensor (momentum, moments) of ``params`` where ``keep`` is 0."""
    with torch.no_grad():
        for p, k in zip(params, keep):
            for value in optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.mul_(k.to(value.dtype))


class MaskEnforcer:
    """Keeps ``model``'s pruned weights at exactly zero (or at ``frozen``'s held values) through training: call
    ``step()`` in place of ``optimizer.step()``, or ``attach()`` once to do it through the optimizer's hooks.
    Pruned weights' gradients are zeroed before each step; with an elementwise optimizer (SGD, momentum, Adam,
    weight decay) and its state cleared at pruned positions (``clear_optimizer_state_``, when a mask is set) the
    step cannot move them. ``after_step`` also multiplies the weights by the mask after the step (needed for
    held values).

    >>> enforcer = MaskEnforcer(model, mask, optimizer).attach()  # then train as usual
    """

    def __init__(
        self,
        model: nn.Module,
        mask: Mask,
        optimizer: torch.optim.Optimizer | None = None,
        frozen: dict[str, torch.Tensor] | None = None,
        after_step: bool = True,
    ):
        params = dict(model.named_parameters())
        unknown = [n for n in mask if n not in params]
        if unknown:
            raise KeyError(f"mask names not in the model: {unknown[:3]}")
        if frozen is not None and not after_step:
            raise ValueError("held (frozen) values need the after-step weight pass")
        self.optimizer = optimizer
        self.after_step = after_step
        self.names = list(mask)
        self.params = [params[n] for n in self.names]
        # Float copies on the parameter's device, so enforcement is one multiply with no conversion.
        self._float = [mask[n].to(device=p.device, dtype=p.dtype) for n, p in zip(self.names, self.params)]
        # Pruned entries' held values, zero where kept, so enforcement is ``w = w * m + held``.
        self.held = None
        if frozen is not None:
            self.held = [
                (frozen[n].to(device=p.device, dtype=p.dtype) * (1 - m))
                for n, p, m in zip(self.names, self.params, self._float)
            ]
        self._handles: list = []
        self.mask_weights_()
        if optimizer is not None:
            self.clear_optimizer_state_()

    @property
    def masks(self) -> Mask:
        """The masks it enforces, ``{param name: bool tensor}`` (True = kept)."""
        return {n: m.bool() for n, m in zip(self.names, self._float)}

    def mask_weights_(self) -> None:
        """Multiply the weights by the mask now (and put held values back)."""
        with torch.no_grad():
            torch._foreach_mul_(self.params, self._float)
            if self.held is not None:
                torch._foreach_add_(self.params, self.held)

    def mask_grads_(self) -> None:
        """Zero the pruned weights' gradients now."""
        mask_grads_(self.params, self._float)

    def clear_optimizer_state_(self) -> None:
        """Zero every per-element optimizer state tensor (momentum, moments) at pruned positions."""
        clear_optimizer_state_(self.optimizer, self.params, self._float)

    def step(self, closure=None):
        """Masked ``optimizer.step()``."""
        self.mask_grads_()
        out = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        if self.after_step:
            self.mask_weights_()
        return out

    def attach(self) -> MaskEnforcer:
        """Enforce around every ``optimizer.step()`` via optimizer hooks (no change to the user's loop)."""
        self._handles = [
            self.optimizer.register_step_pre_hook(lambda *_: self.mask_grads_()),
        ]
        if self.after_step:
            self._handles.append(self.optimizer.register_step_post_hook(lambda *_: self.mask_weights_()))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
