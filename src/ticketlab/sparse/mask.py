"""Masks: parameter name -> boolean tensor (True = kept).

Vocabulary used everywhere in ticketlab: *density* is the fraction of weights kept, *sparsity* the
fraction removed (sparsity = 1 - density).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

Mask = dict[str, torch.Tensor]


class NamedMasks:
    """``masks`` (and its alias ``mask``) as ``{param name: bool tensor}`` (True = kept) for a pruner or sparse
    trainer that keeps ``names`` and the same tensors in parameter order as ``mask_list`` (its hot loops')."""

    names: list[str]
    mask_list: list[torch.Tensor]

    @property
    def masks(self) -> Mask:
        """The current masks, named as static masks are."""
        return dict(zip(self.names, self.mask_list))

    @property
    def mask(self) -> Mask:
        """The same as ``masks``."""
        return self.masks


PRUNABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_names(
    model: nn.Module, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
) -> list[str]:
    """Names of prunable parameters, in module order.

    Default: the ``weight`` of every Linear and Conv layer (not biases, not norm layers). ``include``
    replaces that default with the parameters whose names match any glob pattern; ``exclude`` then
    removes names matching any pattern.
    """
    if include:
        pats = list(include)
        names = [n for n, _ in model.named_parameters() if any(fnmatch.fnmatchcase(n, p) for p in pats)]
    else:
        names = [
            f"{mn}.weight" if mn else "weight"
            for mn, m in model.named_modules()
            if isinstance(m, PRUNABLE_LAYERS) and getattr(m, "weight", None) is not None
        ]
    if exclude:
        pats = list(exclude)
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in pats)]
    return names


def ones_mask(model: nn.Module, names: Iterable[str] | None = None) -> Mask:
    """A dense mask (everything kept) over ``names`` (default: ``prunable_names(model)``)."""
    params = dict(model.named_parameters())
    names = prunable_names(model) if names is None else list(names)
    return {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}


def kept(mask: Mask) -> int:
    """Number of weights kept (True entries) over all layers of the mask."""
    return int(sum(int(m.sum()) for m in mask.values()))


def total(mask: Mask) -> int:
    """Number of masked weights, kept or pruned, over all layers of the mask."""
    return int(sum(m.numel() for m in mask.values()))


def density(mask: Mask) -> float:
    """Fraction of masked weights kept, over all layers of the mask."""
    n = total(mask)
    return kept(mask) / n if n else 1.0


def sparsity(mask: Mask) -> float:
    """Fraction of masked weights removed: 1 - density."""
    return 1.0 - density(mask)


def layer_densities(mask: Mask) -> dict[str, float]:
    """``{name: fraction kept}`` per layer of the mask."""
    return {n: float(m.sum()) / m.numel() for n, m in mask.items()}


def density_report(mask: Mask) -> str:
    """A small table: per-layer kept/total/density and the total."""
    w = max([len(n) for n in mask] + [5])
    lines = [f"{'layer':<{w}}  {'kept':>10}  {'total':>10}  density"]
    for n, m in mask.items():
        k = int(m.sum())
        lines.append(f"{n:<{w}}  {k:>10}  {m.numel():>10}  {k / m.numel():>7.4f}")
    lines.append(f"{'total':<{w}}  {kept(mask):>10}  {total(mask):>10}  {density(mask):>7.4f}")
    return "\n".join(lines)


def apply_mask_(model: nn.Module, mask: Mask) -> None:
    """Zero the pruned entries of the model's parameters in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in mask.items():
            params[n].mul_(m.to(device=params[n].device, dtype=params[n].dtype))


def _split(name: str) -> tuple[str, str]:
    mod, _, attr = name.rpartition(".")
    return mod, attr


def to_torch_prune(model: nn.Module, mask: Mask) -> nn.Module:
    """Attach the mask in ``torch.nn.utils.prune``'s form (``weight_orig`` + ``weight_mask`` buffer)."""
    for name, m in mask.items():
        mod, attr = _split(name)
        module = model.get_submodule(mod)
        torch_prune.custom_from_mask(module, attr, m.to(getattr(module, attr).device))
    return model


def from_torch_prune(model: nn.Module, remove: bool = False) -> Mask:
    """Read masks attached by ``torch.nn.utils.prune``; with ``remove``, bake them in and detach the hooks.

    Returned names are the plain parameter names (``fc.weight``), as used by every other ticketlab API.
    """
    mask: Mask = {}
    for mod_name, module in model.named_modules():
        for buf_name, buf in list(module.named_buffers(recurse=False)):
            if buf_name.endswith("_mask"):
                attr = buf_name[: -len("_mask")]
                mask[f"{mod_name}.{attr}" if mod_name else attr] = buf.detach().bool().clone()
                if remove:
                    torch_prune.remove(module, attr)
    return mask
