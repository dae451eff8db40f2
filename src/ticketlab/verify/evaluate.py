"""``ticketlab verify RUN``: verified robustness of every trained model of a run.

Per model, on the first ``samples`` test examples at one eps (pixel units, L-inf, clipped to the pixel range):
clean accuracy, PGD accuracy (an upper bound on verified accuracy), verified accuracy under IBP, CROWN and
alpha-CROWN, with ``complete`` each sample's exact verdict (verified / falsified / timeout / unknown) from
Marabou or the MILP, unstable ReLUs per layer (IBP and CROWN), and time per sample of each method.

Bounds run in float64 (rounding cannot flip a verdict at the margins seen here) with pruned weights as sparse
matrices where that is faster. Results are cached in ``RUN/verify-<hash of the settings>/results.json``
after each model, so an interrupted evaluation resumes; seed groups give mean ± std rows.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..attacks import AttackConfig, PixelSpace, pgd
from ..data import load_dataset
from ..errors import UserError
from ..io import read_json, write_json
from ..models import build_model
from ..runs import config_hash, open_run_dir
from ..runs.models import load_weights, trained_models
from ..runs.seeds import aggregate, display, finished_seeds, seed_dir
from ..runs.setup import resolve_device
from .bounds import ALPHA, METHODS, alpha_crown, crown, ibp, input_box, margin_spec, pre_bounds, stability
from .complete import SOLVERS, Complete
from .graph import check_ops, to_ops

ALL_METHODS = (*METHODS, "complete")


@dataclass
class VerifyConfig:
    """The settings of `ticketlab verify` (its flags: each field's, with its help)."""

    eps: float = field(default=0.1, metadata={"help": "radius in pixel units, images in [0, 1]"})
    methods: list[str] = field(
        default_factory=lambda: ["ibp", "crown", "alpha-crown"],
        metadata={
            "flag": "--method",
            "comma": True,
            "metavar": "M[,M...]",
            "help": "ibp, crown, alpha-crown, complete, or all (default ibp,crown,alpha-crown)",
        },
    )
    samples: int = field(default=100, metadata={"metavar": "N", "help": "the first N test examples"})
    solver: str = field(
        default="milp",
        metadata={
            "help": "complete verification: milp (HiGHS through scipy), bab (branch and bound with beta-CROWN, the "
            "MILP its fallback) or marabou (pip install 'ticketlab[verify]')"
        },
    )
    timeout: float = field(default=30.0, metadata={"metavar": "S", "help": "complete verification: seconds per sample"})
    pgd_steps: int = field(default=50, metadata={"help": "PGD steps of the attack"})
    pgd_restarts: int = field(default=3, metadata={"help": "PGD random restarts"})
    alpha_steps: int = field(default=20, metadata={"help": "alpha-CROWN optimisation steps"})
    alpha: str = field(
        default="optimized",
        metadata={
            "help": "alpha-CROWN: optimized (every intermediate bound's slopes too, auto_LiRPA's settings) or "
            "last-layer (only the final bound's: the setting of results folders made before it)"
        },
    )
    batch: int = field(default=25, metadata={"help": "samples bounded together"})
    seed: int = field(default=0, metadata={"help": "seed of the attack's random starts"})

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.alpha == "last-layer":  # the setting before the field: earlier folders keep their hash
            d.pop("alpha")
        else:  # its second revision (each sample's own neurons, intermediate bounds from the current slopes
            # alone) gives tighter bounds than the first: a folder of the first is not resumed with them
            d["alpha_revision"] = 2
        if "complete" not in self.methods:
            d.pop("solver")
            d.pop("timeout")
        return d

    def validate(self) -> None:
        if not (self.eps >= 0 and self.eps < float("inf")):
            raise UserError(f"--eps must be >= 0 (pixel units), got {self.eps}")
        bad = [m for m in self.methods if m not in ALL_METHODS]
        if bad or not self.methods:
            raise UserError(
                f"unknown --method {bad[0] if bad else ''!r}; choose from: {', '.join(ALL_METHODS)} "
                "(a comma list, or all)"
            )
        if self.alpha not in ALPHA:
            raise UserError(f"unknown --alpha {self.alpha!r}; choose one of: {', '.join(ALPHA)}")
        if self.solver not in SOLVERS:
            raise UserError(f"unknown --solver {self.solver!r}; choose one of: {', '.join(SOLVERS)}")
        if self.samples < 1:
            raise UserError(f"--samples must be >= 1, got {self.samples}")
        if not self.timeout > 0:
            raise UserError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.pgd_steps < 1 or self.pgd_restarts < 1 or self.alpha_steps < 0 or self.batch < 1:
            raise UserError("--pgd-steps, --pgd-restarts and --batch must be >= 1, --alpha-steps >= 0")


def verify_model(
    model: torch.nn.Module,
    data,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: VerifyConfig,
    progress=None,
    device: str | torch.device = "cpu",
) -> dict:
    """The row of one model (converted to float64 in place; ``x`` standardised test inputs). Bounds and the
    attack run on ``device``; complete verification on the CPU (its solvers are CPU programs)."""

    device = torch.device(device)
    cpu_model = copy.deepcopy(model).double().eval() if "complete" in cfg.methods else None
    model = model.to(device).double().eval()
    x, y = x.to(device), y.to(device)
    mean = None if data.mean is None else data.mean.to(device).double()
    std = None if data.std is None else data.std.to(device).double()
    ops = to_ops(model, data.input_shape, mean, std, sparse=True)
    check_ops(ops, model, data.input_shape, mean, std)
    net = PixelSpace(model, mean, std).eval()
    xp, n, k = x.double() if mean is None else x.double() * std + mean, len(y), data.num_classes
    row: dict = {}
    with torch.no_grad():
        clean = net(xp).argmax(1) == y
    row["clean_acc"] = int(clean.sum()) / n
    g = torch.Generator().manual_seed(cfg.seed)
    attack = AttackConfig(eps=cfg.eps, steps=cfg.pgd_steps, restarts=cfg.pgd_restarts)
    robust = clean.clone()
    if cfg.eps > 0:
        for i in range(0, n, 500):
            adv = pgd(net, xp[i : i + 500], y[i : i + 500], attack, pixel_range=data.pixel_range, generator=g)
            with torch.no_grad():
                robust[i : i + 500] &= net(adv).argmax(1) == y[i : i + 500]
    row["pgd_acc"] = int(robust.sum()) / n
    methods = [m for m in cfg.methods if m != "complete"]
    ok = {m: [] for m in methods}
    spent = dict.fromkeys(methods, 0.0)
    stats: dict[str, list] = {m: [] for m in methods if m in ("ibp", "crown")}  # per batch, per layer
    for i in range(0, n, cfg.batch):
        lo, hi = input_box(xp[i : i + cfg.batch], cfg.eps, data.pixel_range)
        C = margin_spec(y[i : i + cfg.batch], k).double()
        found = {}
        if "ibp" in methods:
            t0 = time.perf_counter()
            with torch.no_grad():
                found["ibp"] = ibp(ops, lo, hi, C)
            spent["ibp"] += time.perf_counter() - t0
        if "crown" in methods or "alpha-crown" in methods:  # CROWN's pre-activation bounds serve both; the
            t0 = time.perf_counter()  # time of each includes them
            with torch.no_grad():
                pre, _ = pre_bounds(ops, lo, hi, "crown")
            t_pre = time.perf_counter() - t0
            if "crown" in methods:
                t0 = time.perf_counter()
                with torch.no_grad():
                    found["crown"] = crown(ops, lo, hi, C, upper=False, pre=pre)
                spent["crown"] += t_pre + time.perf_counter() - t0
            if "alpha-crown" in methods:
                t0 = time.perf_counter()
                found["alpha-crown"] = alpha_crown(ops, lo, hi, C, steps=cfg.alpha_steps, pre=pre, **ALPHA[cfg.alpha])
                spent["alpha-crown"] += t_pre + time.perf_counter() - t0
        for m, b in found.items():
            ok[m].append(b.verified())
            if m in stats:
                stats[m].append(stability(ops, b.pre))
    verified = {m: int(torch.cat(ok[m]).sum()) / n for m in methods}
    seconds = {m: spent[m] / n for m in methods}
    keys = ("unstable", "active", "inactive", "grafted")
    unstable = {
        m: [
            {
                "layer": layers[0]["layer"],
                "neurons": layers[0]["neurons"],
                **{key: sum(lay[key] for lay in layers) / n for key in keys},
            }
            for layers in zip(*per_batch)
        ]
        for m, per_batch in stats.items()
    }
    if progress:
        progress("  ".join(f"{m} {verified[m]:.3f}" for m in methods))
    row.update(verified=verified, seconds_per_sample=seconds, neurons_per_sample=unstable)
    if "complete" in cfg.methods:
        cmean, cstd = (None, None) if mean is None else (mean.cpu(), std.cpu())
        cops = to_ops(cpu_model, data.input_shape, cmean, cstd, sparse=True)
        row["complete"] = complete_verdicts(
            cops, PixelSpace(cpu_model, cmean, cstd).eval(), xp.cpu(), y.cpu(), k, data.pixel_range, cfg, progress
        )
        verified["complete"] = row["complete"]["verified"] / n
        seconds["complete"] = row["complete"]["seconds_mean"]
    return row


def complete_verdicts(ops, net, xp, y, k, pixel_range, cfg: VerifyConfig, progress=None) -> dict:
    """Counts of each verdict, the methods that decided them, time per sample (mean, median, max), and the
    counterexamples' margins (each re-checked on ``net``)."""
    solver = Complete(ops, net, k, cfg.eps, pixel_range, cfg.solver, cfg.timeout, alpha=cfg.alpha)
    counts = {"verified": 0, "falsified": 0, "timeout": 0, "unknown": 0}
    by: dict[str, int] = {}
    times, margins = [], []
    for i in range(len(y)):
        v = solver(xp[i], int(y[i]))
        counts[v.verdict] += 1
        by[f"{v.verdict} by {v.by}"] = by.get(f"{v.verdict} by {v.by}", 0) + 1
        times.append(v.seconds)
        if v.verdict == "falsified":
            with torch.no_grad():  # the counterexample, run through the model once more
                out = net(v.counterexample[None].to(xp))[0]
            if int(out.argmax()) == int(y[i]):
                raise RuntimeError("a counterexample did not change the prediction")  # never: Complete checked it
            margins.append(v.margin)
        if progress and (i + 1) % 10 == 0:
            progress(f"complete {i + 1}/{len(y)}")
    ts = sorted(times)
    return {
        **counts,
        "by": by,
        "seconds_mean": sum(ts) / len(ts),
        "seconds_median": ts[len(ts) // 2],
        "seconds_max": ts[-1],
        "min_counterexample_margin": min(margins) if margins else None,
    }


def run_verify(
    run_dir: str | Path, cfg: VerifyConfig, *, data_dir: str | None = None, quiet: bool = False, device: str = "cpu"
) -> dict:
    """Every trained model of ``run_dir`` (or of each seed of a seed group, then mean ± std)."""

    cfg.validate()
    dev = resolve_device(device)
    run = Path(run_dir)
    rec = read_json(run / "config.json") if (run / "config.json").is_file() else None
    if isinstance(rec, dict) and rec.get("kind") == "seeds":
        return _run_group(run, cfg, data_dir, quiet, device)
    record, models = trained_models(
        run, refusal="verify takes imp, prune-init, dst, structured, compress, neurons, deadwood and supermask runs"
    )
    data = load_dataset(record["config"]["dataset"], data_dir, quiet=True)
    name = record["config"]["model"]
    model = build_model(name, data.input_shape, data.num_classes, seed=0)
    check_ops(to_ops(model, data.input_shape, data.mean, data.std), model, data.input_shape, data.mean, data.std)
    if "complete" in cfg.methods:
        Complete([], None, data.num_classes, cfg.eps, data.pixel_range, cfg.solver)  # the solver is there
    config = cfg.to_dict()
    out = open_run_dir(run / f"verify-{config_hash(config)}", "verify", config)
    x, y = data.x_test[: cfg.samples], data.y_test[: cfg.samples]
    path = out / "results.json"
    rows = read_json(path)["rows"] if path.exists() else []
    done = {r["label"] for r in rows}
    for i, m in enumerate(models):
        if m["label"] in done or "members" in m:  # an ensemble averages softmaxes: not a ReLU network
            continue
        load_weights(model, m["weights"], name)
        say = (
            (lambda s, i=i, m=m: print(f"[{i + 1}/{len(models)}] {m['label']}: {s}", file=sys.stderr, flush=True))
            if not quiet
            else None
        )
        row = {
            "label": m["label"],
            "group": m["group"],
            "density": m["density"],
            **verify_model(model, data, x, y, cfg, say, dev),
        }
        model.cpu().float()
        rows.append(row)
        write_json(path, {"run": str(run), "config": config, "rows": rows})
    return {"run": str(run), "config": config, "rows": rows, "dir": str(out)}


def _run_group(group: Path, cfg: VerifyConfig, data_dir, quiet, device) -> dict:
    seeds = finished_seeds(group)
    if not seeds:
        raise UserError(f"{group} is a seed group with no finished seed yet; finish it first")
    results = [
        run_verify(
            seed_dir(group, s), replace(cfg, methods=list(cfg.methods)), data_dir=data_dir, quiet=quiet, device=device
        )
        for s in seeds
    ]
    labels = [[r["label"] for r in res["rows"]] for res in results]
    if any(lab != labels[0] for lab in labels):
        raise UserError(f"the seeds of {group} hold different models; finish every seed first")
    config = results[0]["config"]
    agg = aggregate([[_numbers(r) for r in res["rows"]] for res in results])
    out = open_run_dir(group / f"verify-{config_hash(config)}", "verify", config)
    write_json(out / "results.json", {"run": str(group), "config": config, "seeds": seeds, "rows": agg})
    return {"run": str(group), "config": config, "seeds": seeds, "rows": display(agg), "dir": str(out)}


def _numbers(row: dict) -> dict:
    """A row with what averages over seeds (accuracies, times, unstable counts per layer)."""
    out = {k: row[k] for k in ("label", "group", "density", "clean_acc", "pgd_acc", "verified", "seconds_per_sample")}
    out["unstable"] = {m: [lay["unstable"] for lay in layers] for m, layers in row["neurons_per_sample"].items()}
    if "complete" in row:
        out["complete_timeouts"] = row["complete"]["timeout"]
    return out


def format_verify(result: dict) -> str:
    c = result["config"]
    methods = list(c["methods"])
    seeds = f"; mean ± std over seeds {result['seeds']}" if result.get("seeds") else ""
    lines = [
        f"verified accuracy at eps {c['eps']} (L-inf, pixel units) on the first {c['samples']} test examples{seeds}",
        f"{'model':<24} {'density':>8} {'clean':>7} {'pgd':>7}"
        + "".join(f" {m:>11}" for m in methods)
        + "  unstable ReLUs/sample (crown)   ms/sample "
        + " ".join(methods),
    ]
    for r in result["rows"]:
        unst = r.get("neurons_per_sample", {}).get("crown") or r.get("neurons_per_sample", {}).get("ibp")
        if unst is not None:
            u = "/".join(f"{lay['unstable']:.1f}" for lay in unst)
        else:
            u = "/".join(f"{v}" for v in (r.get("unstable", {}).get("crown") or r.get("unstable", {}).get("ibp") or []))
        lines.append(
            f"{r['label']:<24} {100 * r['density']:>7.2f}% {_f(r['clean_acc'])} {_f(r['pgd_acc'])}"
            + "".join(f" {_f(r['verified'][m]):>11}" for m in methods)
            + f"  {u:<30} "
            + " ".join(_ms(r["seconds_per_sample"][m]) for m in methods)
        )
        if "complete" in r:
            cc = r["complete"]
            lines.append(
                f"{'':<24} complete ({c['solver']}): {cc['verified']} verified, {cc['falsified']} falsified, "
                f"{cc['timeout']} timeout, {cc['unknown']} unknown; "
                + ", ".join(f"{k}: {v}" for k, v in sorted(cc["by"].items()))
            )
    return "\n".join(lines)


def _f(v) -> str:
    return f"{v:>7.4f}" if isinstance(v, float) else f"{str(v):>7}"


def _ms(v) -> str:
    return f"{1000 * v:.2f}" if isinstance(v, float) else str(v)
