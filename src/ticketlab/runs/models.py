"""The trained models of a finished run, for the commands that evaluate them (robustness, card-deck, verify):
IMP rounds and controls, prune-init's, DST's members and their ensemble, structured's final model,
supermask's ticket and its parent, compress's dense parent and compressed net."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from ..io import read_json
from .files import fit_state


def trained_models(run: Path, kinds: tuple[str, ...] | None = None, refusal: str = "") -> tuple[dict, list[dict]]:
    """(the run's config record, [{"label", "group", "density", "weights": path}]) of a finished run.

    ``kinds``: the run kinds a caller takes; another kind is refused with ``refusal`` (what it takes)."""
    try:
        record = read_json(run / "config.json")
        kind = record["kind"]
        summary = read_json(run / "summary.json")
    except (UserError, KeyError, TypeError, FileNotFoundError):
        raise UserError(f"{run} is not a finished ticketlab run (no readable config.json and summary.json)") from None
    if kinds is not None and kind not in kinds:
        raise UserError(f"{run} is a {kind} run; {refusal}")
    out = []
    if kind == "imp":
        for r in summary["rounds"]:
            d = run / f"round_{r['round']:02d}"
            out.append(
                {
                    "label": f"round {r['round']} ticket",
                    "group": "ticket",
                    "density": r["density"],
                    "weights": d / "final.safetensors",
                }
            )
            for c in r["controls"]:
                out.append(
                    {
                        "label": f"round {r['round']} {c}",
                        "group": c,
                        "density": r["density"],
                        "weights": d / c / "final.safetensors",
                    }
                )
    elif kind == "prune-init":
        out.append(
            {
                "label": summary["config"]["method"],
                "group": "prune-init",
                "density": summary["density"],
                "weights": run / "final.safetensors",
            }
        )
    elif kind == "dst":
        for i, m in enumerate(summary["runs"]):
            out.append(
                {
                    "label": f"{summary['config']['method']} run {i}",
                    "group": "dst",
                    "density": m["density"],
                    "weights": run / f"train_{i}" / "final.safetensors",
                }
            )
        if len(out) > 1:  # the ensemble (mean softmax), attacked as one model
            out.append(
                {
                    "label": "ensemble",
                    "group": "ensemble",
                    "density": out[0]["density"],
                    "weights": out[0]["weights"],
                    "members": [m["weights"] for m in list(out)],
                }
            )
    elif kind == "compress":
        src = Path(summary["config"]["source"]) / "round_00" / "final.safetensors"
        out.append({"label": "dense parent", "group": "dense", "density": 1.0, "weights": src})
        c = summary["config"]
        out.append(
            {
                "label": f"{c['method']} ({c['steps']} steps)",
                "group": c["method"],
                "density": summary["density"],
                "weights": run / "final.safetensors",
            }
        )
    elif kind == "neurons":
        c = summary["config"]
        out.append(
            {
                "label": "dense parent",
                "group": "dense",
                "density": 1.0,
                "weights": Path(c["source"]) / "round_00" / "final.safetensors",
            }
        )
        what = "grafted" if c["method"] == "graft" else "pruned"
        out.append(
            {
                "label": f"{c['score']} {what} {c['fraction']:g}",
                "group": f"{c['method']}-{c['score']}",
                "density": summary["weight_density"],
                "weights": run / "final.safetensors",
            }
        )
    elif kind == "deadwood":
        out.append(
            {
                "label": "dense parent",
                "group": "dense",
                "density": 1.0,
                "weights": Path(summary["config"]["source"]) / "round_00" / "final.safetensors",
            }
        )
        out.append(
            {
                "label": "deadwooding",
                "group": "deadwood",
                "density": summary["density"],
                "weights": run / "final.safetensors",
            }
        )
    elif kind == "supermask":
        c = summary["config"]
        if c.get("pretrained"):
            out.append(
                {
                    "label": "dense parent",
                    "group": "dense",
                    "density": 1.0,
                    "weights": Path(c["pretrained"]) / "round_00" / "final.safetensors",
                }
            )
        out.append(
            {
                "label": f"{c['method']} ticket",
                "group": c["method"],
                "density": summary["density"],
                "weights": run / "ticket.safetensors",
            }
        )
    elif kind == "structured":
        out.append(
            {
                "label": "structured (final)",
                "group": "structured",
                "density": summary["passes"][-1]["weight_density"],
                "weights": run / "final.safetensors",
            }
        )
    else:
        raise UserError(
            f"{run} is a {kind} run; robustness and verify take imp, prune-init, dst, structured, compress, neurons, "
            "deadwood and supermask runs"
        )
    missing = [m["label"] for m in out if not m["weights"].exists()]
    if missing:
        raise UserError(f"{run} holds no trained model for {missing[0]}; finish the run first")
    return record, out


def imp_parent(source: str | Path, model: str, dataset: str) -> tuple[Path, dict]:
    """(the trained dense round 0's weights file, the IMP run's summary) of ``--source``, refused in one line
    unless it is a finished round 0 of ``model`` on ``dataset``: the dense parent that compress, neurons and
    deadwood start from."""
    src = Path(source)
    rec = read_json(src / "config.json") if (src / "config.json").exists() else None
    if not isinstance(rec, dict) or rec.get("kind") != "imp":
        raise UserError(f"--source {src} is not an IMP run directory; give one made by `ticketlab imp`")
    c = rec["config"]
    if (c["model"], c["dataset"]) != (model, dataset):
        raise UserError(f"--source {src} trained {c['model']} on {c['dataset']}; use the same --model and --dataset")
    weights = src / "round_00" / "final.safetensors"
    summary = read_json(src / "summary.json") if (src / "summary.json").exists() else None
    if not weights.exists() or not summary or not summary.get("rounds"):
        raise UserError(f"--source {src} has no trained round 0 yet; finish it first (rerun its command)")
    return weights, summary


def load_weights(model: torch.nn.Module, path: Path, name: str) -> None:
    """``path``'s weights into ``model`` (a ``name``), refused in one line unless every tensor fits
    (``files.fit_state``'s check, with the message of a finished run's evaluation). A file of a grafted
    net (``ticketlab neurons --method graft``) first turns ``model``'s ReLUs into grafted ones."""
    from ..io import load_tensors
    from ..models.graft import graft_from_state

    try:
        state = load_tensors(path)  # read once: the grafted layers' shapes, then the weights
        graft_from_state(model, {k: tuple(v.shape) for k, v in state.items() if k.endswith(".graft")})
        state = fit_state(state, model, path)
    except UserError:
        raise UserError(f"{path} does not hold weights of {name}; the run is damaged") from None
    model.load_state_dict(state)
