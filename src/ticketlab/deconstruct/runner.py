"""``ticketlab deconstruct RUN``: the criteria x kept-value x sign matrix of Zhou et al. (2019).

From an IMP run (trained first if needed) it takes the initial weights w_i and the dense net's trained
weights w_f (round 0), and for each chosen round's per-layer densities it builds one-shot masks with
every criterion M(w_i, w_f). Each mask is evaluated untrained (the supermask table: masked initial
weights, and masked signed constants) and, unless ``--untrained-only``, trained from its kept values.
The kept-value ablation retrains ``--kept-criterion``'s masks from original / reinit / reshuffle /
constant values, each with random or original signs. Every cell is cached, so a rerun resumes.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..criteria import CRITERIA, criterion_mask
from ..errors import UserError
from ..io import read_json, write_json
from ..lottery import IMPConfig, IMPRun, normalize_config
from ..runs import config_hash, load_state, lockstep, open_run_dir
from ..seeding import generator
from ..sparse import Mask, apply_mask_, density
from ..sparse.values import KEPT_VALUES, kept_values
from ..train import TrainConfig, evaluate
from .plots import plot_deconstruct
from .report import format_deconstruct


@dataclass
class DeconstructConfig:
    criteria: list[str] = field(default_factory=lambda: CRITERIA.names())
    rounds: list[int] = field(default_factory=list)  # IMP rounds whose per-layer densities are used (default all)
    kept_criterion: str = "large_final"
    kept: list[str] = field(default_factory=lambda: list(KEPT_VALUES))
    trained: bool = True
    iterations: int | None = None  # training budget of each cell (default: the IMP run's)

    def validate(self) -> None:
        for c in self.criteria + [self.kept_criterion]:
            CRITERIA.get(c)
        bad = [k for k in self.kept if k not in KEPT_VALUES]
        if bad:
            raise UserError(f"unknown kept-value rule {bad[0]!r}; choose from: {', '.join(KEPT_VALUES)}")
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"--cell-iterations must be >= 1, got {self.iterations}")


def open_imp_run(run_dir: Path, imp_cfg: IMPConfig | None, **kw) -> IMPRun:
    """The IMP run in ``run_dir``: reopened from its config, or (absent) created from ``imp_cfg``."""
    cfg_file = run_dir / "config.json"
    if cfg_file.exists():
        stored = read_json(cfg_file)
        if not isinstance(stored, dict) or stored.get("kind") != "imp":
            raise UserError(f"{run_dir} is not an IMP run directory; give one made by `ticketlab imp`")
        cfg = IMPConfig.from_dict({k: v for k, v in normalize_config(stored["config"]).items() if k != "architecture"})
        if str(cfg.model).startswith("custom:"):
            raise UserError(f"{run_dir} was made with a custom nn.Module; deconstruct it from Python")
        return IMPRun(cfg, run_dir, **kw)
    if imp_cfg is None:
        raise UserError(f"{run_dir} holds no IMP run; give an existing run, or IMP flags to train one there")
    return IMPRun(imp_cfg, run_dir, **kw)


def run_deconstruct(
    run_dir: str | Path,
    dcfg: DeconstructConfig,
    imp_cfg: IMPConfig | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    dcfg.validate()
    run_dir = Path(run_dir)
    run = open_imp_run(
        run_dir, imp_cfg, device=device, data_dir=data_dir, quiet=quiet, checkpoint_every=checkpoint_every
    )
    imp_summary = run.run()  # resumes (or no-ops) so every round's densities exist
    rounds = {r["round"]: r for r in imp_summary["rounds"]}
    use = dcfg.rounds or [k for k in rounds if k > 0]
    missing = [k for k in use if k not in rounds or k == 0]
    if missing:
        raise UserError(f"round {missing[0]} is not a pruned round of {run_dir} (rounds 1..{max(rounds)})")
    # Named by its own options (the IMP run is the parent folder); the stored IMP config is compared in the
    # current schema, so a ticketlab upgrade that adds IMP settings does not orphan finished cells.
    config = asdict(dcfg) | {"imp_run": imp_summary["config"]}
    out = open_run_dir(
        run_dir / f"deconstruct-{config_hash(asdict(dcfg))}",
        "deconstruct",
        config,
        normalize=lambda c: {**c, "imp_run": normalize_config(c["imp_run"])},
    )
    if not quiet:
        print(f"deconstruct directory: {out}", file=sys.stderr)

    init = load_state(run_dir / "init.safetensors", run.model)
    final = load_state(run_dir / "round_00" / "final.safetensors", run.model)
    names = run.names
    train_cfg = run.cfg.train
    if dcfg.iterations is not None:
        train_cfg = TrainConfig(**{**asdict(train_cfg), "iterations": dcfg.iterations, "epochs": None})
    ones = {n: torch.ones_like(init[n], dtype=torch.bool) for n in names}
    signed_const = {n: torch.sign(init[n]) * init[n].std(correction=0) for n in names}  # np.std, as Zhou et al.

    def untrained_acc(model: nn.Module, weights: dict, mask: Mask) -> float:
        model.load_state_dict({**init, **weights})
        apply_mask_(model, mask)
        return evaluate(model, run.data.x_test, run.data.y_test)[1]

    def cell(key: str, mask: Mask, start: dict, label: str) -> dict:
        path = out / "cells" / f"{key}.json"
        if path.exists():
            return read_json(path)
        model = lockstep.own_model(run.model)  # the cells may train together
        res = {"density": density(mask), "untrained_test_acc": untrained_acc(model, start, mask)}
        if key.startswith("criterion__"):
            res["untrained_signed_constant_test_acc"] = untrained_acc(model, signed_const, mask)
        if dcfg.trained:
            s, _ = run.train_one(
                out / "cells" / key,
                mask,
                {**init, **start},
                0,
                label,
                train_cfg=train_cfg,
                save_final=False,
                model=model,
            )
            res.update({k: s[k] for k in ("test_acc", "early_stop_iter", "early_stop_test_acc")})
        write_json(path, res)
        return res

    masks: dict[tuple[str, int], Mask] = {}

    def mask_for(crit: str, k: int) -> Mask:
        if (crit, k) not in masks:
            masks[(crit, k)] = criterion_mask(
                crit, init, final, ones, rounds[k]["layer_densities"], generator(run.cfg.seed, "deconstruct", crit, k)
            )
        return masks[(crit, k)]

    result: dict = {"config": config, "criteria": {}, "kept_values": {}}
    cells = []  # (table, row name, round, cell key, mask, start, label): prepared first, then trained together
    for k in use:
        for crit in dcfg.criteria:
            cells.append(
                ("criteria", crit, k, f"criterion__{crit}__r{k:02d}", mask_for(crit, k), init, f"{crit} @ round {k}")
            )
        for rule in dcfg.kept:
            for signed in (False, True):
                if rule == "original" and signed:
                    continue  # the original values already carry their signs
                name = rule + ("-signed" if signed else "")
                mask = mask_for(dcfg.kept_criterion, k)
                fresh = run.reinit_state("deconstruct", k) if rule == "reinit" else {}
                start = kept_values(rule, signed, init, mask, fresh, generator(run.cfg.seed, "kept", rule, k))
                cells.append(
                    (
                        "kept_values",
                        name,
                        k,
                        f"kept__{name}__r{k:02d}",
                        mask,
                        start,
                        f"{dcfg.kept_criterion} {name} @ round {k}",
                    )
                )
    done = lockstep.together([lambda c=c: cell(*c[3:]) for c in cells])
    for (table, name, k, *_), r in zip(cells, done):
        result[table].setdefault(name, []).append({"round": k, **r})
    write_json(out / "summary.json", result)
    plot_deconstruct(result, out)
    result["dir"] = str(out)
    return result


__all__ = ["DeconstructConfig", "run_deconstruct", "format_deconstruct"]
