"""The trained models of a finished run, for the analyses that evaluate them:
each experiment's ``models`` says which files of its run folder hold them (IMP's rounds and controls, DST's
members and their ensemble, ...); here they are read back and checked."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from ..io import load_tensors, read_json
from ..models.graft import graft_from_state
from .experiment import experiments
from .files import fit_state


def trained_model(label: str, group: str, density: float, weights: Path) -> dict:
    """One trained model of a run, as an experiment's ``models`` lists it: a label, the group it is averaged or
    plotted with, its density and its weights file."""
    return {"label": label, "group": group, "density": density, "weights": weights}


def trained_models(run: Path, kinds: tuple[str, ...] | None = None, refusal: str = "") -> tuple[dict, list[dict]]:
    """(the run's config record, [{"label", "group", "density", "weights": path}]) of a finished run, as its
    experiment's ``models`` describes them.

    ``kinds``: the run kinds a caller takes; another kind is refused with ``refusal`` (what it takes)."""
    try:
        record = read_json(run / "config.json")
        kind = record["kind"]
        summary = read_json(run / "summary.json")
    except (UserError, KeyError, TypeError, FileNotFoundError):
        raise UserError(f"{run} is not a finished ticketlab run (no readable config.json and summary.json)") from None
    if kinds is not None and kind not in kinds:
        raise UserError(f"{run} is a {kind} run; {refusal}")
    exps = experiments()
    if kind not in exps or exps.get(kind).models is None:
        takes = [k for k in exps if exps.get(k).models is not None]
        raise UserError(
            f"{run} is a {kind} run, which holds no trained models to evaluate; give a run of: {', '.join(takes)}"
        )
    try:
        out = exps.get(kind).models(run, summary)
    except (KeyError, TypeError, IndexError, AttributeError):
        raise UserError(f"{run / 'summary.json'} is corrupt or from another program") from None
    missing = [m["label"] for m in out if not m["weights"].exists()]
    if missing:
        raise UserError(f"{run} holds no trained model for {missing[0]}; finish the run first")
    return record, out


def load_weights(model: torch.nn.Module, path: Path, name: str) -> None:
    """``path``'s weights into ``model`` (a ``name``), refused in one line unless every tensor fits
    (``files.fit_state``'s check, with the message of a finished run's evaluation). A file of a grafted
    net (``ticketlab neurons --method graft``) first turns ``model``'s ReLUs into grafted ones."""

    try:
        state = load_tensors(path)  # read once: the grafted layers' shapes, then the weights
        graft_from_state(model, {k: tuple(v.shape) for k, v in state.items() if k.endswith(".graft")})
        state = fit_state(state, model, path)
    except UserError:
        raise UserError(f"{path} does not hold weights of {name}; the run is damaged") from None
    model.load_state_dict(state)
