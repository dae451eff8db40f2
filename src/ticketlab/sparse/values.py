"""What kept and pruned weights start from (Zhou et al. 2019, "mask-1" and "mask-0" actions).

Kept weights (``--reinit``): ``original`` (the ticket: the rewound values), ``reinit`` (a fresh draw from
the init distribution), ``reshuffle`` (the layer's starting values permuted among its kept positions),
``constant`` (+/- the layer's init std). With ``signed`` each keeps the sign of the original value
(for ``reinit``/``reshuffle``: new magnitudes, original signs); unsigned signs are random.

Pruned weights (``--mask-zero``): ``zero`` (default), ``freeze-init`` (held at their initial values,
never trained) or ``toward-zero`` (the paper's rule: zero where training moved them toward zero,
|w_f| < |w_i|, frozen at init elsewhere).
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..sparse import Mask

KEPT_VALUES = ("original", "reinit", "reshuffle", "constant")
PRUNED_VALUES = ("zero", "freeze-init", "toward-zero")


def check_rules(kept: str, pruned: str) -> None:
    if kept not in KEPT_VALUES:
        raise UserError(f"unknown --reinit {kept!r}; choose one of: {', '.join(KEPT_VALUES)}")
    if pruned not in PRUNED_VALUES:
        raise UserError(f"unknown --mask-zero {pruned!r}; choose one of: {', '.join(PRUNED_VALUES)}")


def _random_signs(shape, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=g).float() * 2 - 1


def kept_values(
    rule: str,
    signed: bool,
    start: dict[str, torch.Tensor],
    mask: Mask,
    fresh: dict[str, torch.Tensor],
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """New starting values for the masked parameters (entries outside the mask are left as in ``start``).

    ``fresh`` is an independent draw from the init distribution (used by ``reinit``).
    """
    out = {}
    for n, m in mask.items():
        w = start[n].detach().cpu().float()
        keep = m.cpu()
        sign = torch.sign(w)
        if rule == "original":
            new = w.clone()
        elif rule == "reinit":
            new = fresh[n].detach().cpu().float().clone()
            if signed:
                new = new.abs() * sign
        elif rule == "reshuffle":
            new = w.clone()
            vals = w[keep]
            perm = torch.randperm(vals.numel(), generator=generator)
            shuffled = vals[perm]
            new[keep] = shuffled.abs() * sign[keep] if signed else shuffled
        elif rule == "constant":
            std = float(w.std(correction=0))  # population std, as np.std in Zhou et al.'s code
            new = std * (sign if signed else _random_signs(w.shape, generator))
        else:
            raise UserError(f"unknown --reinit {rule!r}; choose one of: {', '.join(KEPT_VALUES)}")
        out[n] = torch.where(keep, new, w).to(dtype=start[n].dtype, device=start[n].device)
    return out


def pruned_values(
    rule: str, init: dict[str, torch.Tensor], final: dict[str, torch.Tensor] | None, mask: Mask
) -> dict[str, torch.Tensor] | None:
    """Values held at pruned positions, or None for zeros."""
    if rule == "zero":
        return None
    out = {}
    for n in mask:
        wi = init[n].detach()
        if rule == "freeze-init":
            out[n] = wi.clone()
        elif rule == "toward-zero":
            wf = final[n].detach().to(wi.device)
            out[n] = torch.where(wf.abs() < wi.abs(), torch.zeros_like(wi), wi)
        else:
            raise UserError(f"unknown --mask-zero {rule!r}; choose one of: {', '.join(PRUNED_VALUES)}")
    return out
