"""Reading back what a run wrote: masks and weights, checked against the model they are for."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..io import first_non_finite, load_tensors
from ..sparse import Mask


def load_mask(path: Path, reference: Mask) -> Mask:
    """A mask file read back for a model whose mask is shaped like ``reference``; refused (one line) unless
    every layer is there, bool and of the right shape."""
    m = load_tensors(path)
    if set(m) != set(reference) or any(m[n].shape != reference[n].shape or m[n].dtype != torch.bool for n in reference):
        raise UserError(f"{path} is not a mask for this model; delete it to recompute")
    return {n: m[n].to(reference[n].device) for n in reference}


def load_state(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """A weights file read back for ``model``: refused unless every tensor fits it and is finite."""
    return fit_state(load_tensors(path), model, path)


def fit_state(state: dict[str, torch.Tensor], model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """``state`` (read from ``path``) on the model's device, refused unless every tensor fits ``model``."""
    ref = model.state_dict()
    if set(state) != set(ref) or any(state[k].shape != ref[k].shape for k in ref):
        raise UserError(f"{path} holds weights for a different model; delete it or use another --out")
    bad = first_non_finite(state.items())
    if bad is not None:
        raise UserError(
            f"{path} holds non-finite weights (NaN or inf in {bad}): a diverged training or a damaged file; "
            "delete it to retrain it (with a lower --lr if it diverged)"
        )
    dev = next(model.parameters()).device
    return {k: v.to(dev) for k, v in state.items()}
