"""``ticketlab instability RUN``: linear mode connectivity and instability (Frankle et al. 2020).

For each rewinding iteration K: the dense network's weights at iteration K of training (the IMP run's own
dense training replayed from its initialisation with its seed, so its data order, to K), then for the dense
net and the tickets of the chosen rounds (their masks applied to those weights) two copies trained from K to
the end with different data orders (SGD noise). The error barrier along the straight line between the two
trained copies is the test error at ``points`` evenly spaced interpolations, maximum minus the mean of the
two endpoints. A barrier near 0 means the copies land in one linearly connected minimum: training is stable
from K. The smallest K whose barrier is under ``tolerance`` (2 points of error, Frankle et al.'s threshold)
is the suggested ``--rewind K``.

Every training is cached in ``RUN/instability-<hash>/`` (resumable); ``results.json`` holds the curves.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..data import load_dataset
from ..errors import UserError
from ..io import read_json, write_json
from ..models import build_model
from ..plotting import plt, save_figure
from ..runs import config_hash, load_mask, load_state, lockstep, resolve_device, train_cached
from ..seeding import derive_seed
from ..sparse import density, ones_mask, prunable_names
from ..train.loop import evaluate
from .config import IMPConfig


def interpolate(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) a + alpha b for floating tensors; others (counters) from ``a``."""
    return {k: ((1 - alpha) * a[k] + alpha * b[k]) if a[k].is_floating_point() else a[k] for k in a}


def error_curve(model, a: dict, b: dict, x: torch.Tensor, y: torch.Tensor, points: int = 30) -> list[float]:
    """Test error of the interpolations at ``points`` evenly spaced alphas from 0 to 1."""

    out = []
    for i in range(points):
        model.load_state_dict(interpolate(a, b, i / (points - 1)))
        out.append(1.0 - evaluate(model, x, y)[1])
    return out


def barrier(errors: list[float]) -> float:
    """Maximum error along the path minus the mean of the endpoints' errors."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def run_instability(
    run: str | Path,
    rewinds: list[int],
    rounds: list[int] | None = None,
    points: int = 30,
    tolerance: float = 0.02,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    run = Path(run)
    try:
        record = read_json(run / "config.json")
        assert record["kind"] == "imp"
        cfg = IMPConfig.from_dict(record["config"])
        summary = read_json(run / "summary.json")
    except (UserError, KeyError, AssertionError, TypeError, FileNotFoundError):
        raise UserError(
            f"{run} is not a finished IMP run (no readable config.json and summary.json of kind "
            "imp); give one made by `ticketlab imp`"
        ) from None
    if points < 3:
        raise UserError(f"--points must be >= 3, got {points}")
    if not rewinds or any(k < 0 for k in rewinds):
        raise UserError(f"--rewind needs iterations >= 0, got {rewinds}")
    done_rounds = [r["round"] for r in summary["rounds"]]
    rounds = [0] if rounds is None else rounds
    missing = [r for r in rounds if r not in done_rounds]
    if missing:
        raise UserError(f"{run} has no finished round {missing[0]}; it has rounds {done_rounds}")
    dev = resolve_device(device)
    data = load_dataset(cfg.dataset, data_dir, quiet=True)
    total = cfg.train.total_iterations(len(data.y_train))
    late = [k for k in rewinds if k >= total]
    if late:
        raise UserError(f"--rewind {late[0]} is not before the end of training ({total} iterations)")
    data = data.to(dev)
    model = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed).to(dev)
    init = load_state(run / "init.safetensors", model)
    ref = ones_mask(model, prunable_names(model, cfg.prune_include, cfg.prune_exclude))
    settings = {"rewinds": sorted(set(rewinds)), "rounds": rounds, "points": points}
    out = run / f"instability-{config_hash(settings)}"
    out.mkdir(exist_ok=True)
    rows = []
    for k in sorted(set(rewinds)):
        where = out / f"k{k}"
        if k > 0:  # the dense training replayed to iteration K: same init, seed and data order
            train_cached(
                where / "dense_to_k",
                model,
                data,
                cfg.train,
                start=init,
                total=k,
                seed=cfg.seed,
                checkpoint_every=checkpoint_every,
                label=f"dense to {k}",
                quiet=True,
                reload_final=True,
            )
            at_k = {n: v.detach().clone() for n, v in model.state_dict().items()}
        else:
            at_k = {n: v.detach().clone() for n, v in init.items()}
        masks = {r: load_mask(run / f"round_{r:02d}" / "mask.safetensors", ref) if r > 0 else None for r in rounds}

        def copy_of(r: int, c: int, k: int = k, where: Path = where, at_k: dict = at_k) -> dict:
            """Copy c of round r's ticket trained from iteration k (the copies train together when they can)."""
            mask = masks[r]
            net = lockstep.own_model(model)
            start = {n: (v * mask[n].to(v.dtype) if mask is not None and n in mask else v) for n, v in at_k.items()}
            train_cached(
                where / f"round_{r:02d}" / f"copy_{c}",
                net,
                data,
                cfg.train,
                start=start,
                total=total,
                start_iter=k,
                seed=derive_seed(cfg.seed, "instability", c),
                checkpoint_every=checkpoint_every,
                label=f"K={k} round {r} copy {c}",
                quiet=True,
                mask=mask,
                reload_final=True,
            )
            return {n: v.detach().clone() for n, v in net.state_dict().items()}

        trained = lockstep.together([lambda r=r, c=c: copy_of(r, c) for r in rounds for c in (0, 1)])
        for i, r in enumerate(rounds):
            mask, finals = masks[r], trained[2 * i : 2 * i + 2]
            errs = error_curve(model, finals[0], finals[1], data.x_test, data.y_test, points)
            row = {
                "rewind": k,
                "round": r,
                "density": 1.0 if mask is None else density(mask),
                "errors": errs,
                "barrier": barrier(errs),
            }
            rows.append(row)
            if not quiet:
                print(
                    f"K={k:>6} round {r}: barrier {row['barrier']:.4f} (endpoints {errs[0]:.4f}, {errs[-1]:.4f})",
                    file=sys.stderr,
                    flush=True,
                )
    suggest = {}
    for r in rounds:
        stable = [row["rewind"] for row in rows if row["round"] == r and row["barrier"] < tolerance]
        suggest[str(r)] = min(stable) if stable else None
    result = {
        "run": str(run),
        "settings": settings,
        "tolerance": tolerance,
        "rows": rows,
        "suggested_rewind": suggest,
        "dir": str(out),
    }
    write_json(out / "results.json", result)
    _plot(result, out / "instability.png")
    return result


def _plot(result: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r in result["settings"]["rounds"]:
        rows = [row for row in result["rows"] if row["round"] == r]
        ax.plot(
            [row["rewind"] for row in rows],
            [100 * row["barrier"] for row in rows],
            marker="o",
            label=f"round {r} ({100 * rows[0]['density']:.1f}%)",
        )
    ax.axhline(100 * result["tolerance"], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("rewinding iteration K")
    ax.set_ylabel("error barrier (points)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def format_instability(result: dict) -> str:
    lines = ["     K  round  density  barrier   endpoint errors"]
    for row in result["rows"]:
        e = row["errors"]
        lines.append(
            f"{row['rewind']:>6}  {row['round']:>5}  {100 * row['density']:6.2f}%  {row['barrier']:7.4f}"
            f"   {e[0]:.4f} / {e[-1]:.4f}"
        )
    for r, k in result["suggested_rewind"].items():
        lines.append(
            f"round {r}: "
            + (
                f"stable from K = {k} (barrier < {result['tolerance']:g}): try --rewind {k}"
                if k is not None
                else f"no K given is stable (barrier >= {result['tolerance']:g})"
            )
        )
    return "\n".join(lines)
