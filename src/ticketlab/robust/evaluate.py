"""``ticketlab robustness RUN``: clean and robust accuracy of every trained model of a run (white-box, or
``--transfer``: adversarial examples made on the run's first model - IMP's dense round 0 - evaluated on
every model, the transfer setting of GAP, O'Brien Weiss et al. 2022).

Models: IMP rounds (ticket and each control), prune-init's, DST's members and their ensemble (mean softmax,
attacked as one model), structured's final model, supermask's ticket (and its pretrained parent),
compress's dense parent and compressed net; with ``int8``, each model's int8 form too (GAP's comparison with 8-bit
quantisation), met with the adversarial examples of its float model - an int8 model has no gradients, so
its white-box attack is the float twin's (a transfer from the model it was quantised from). Each is
attacked on the test set (or its first ``samples`` examples) at every eps; results are cached in
``RUN/robustness-<hash of the attack settings>/results.json`` after each model, so an interrupted evaluation
resumes where it stopped. For IMP runs, ``robust_vs_density.png`` plots robust accuracy against density,
tickets against controls.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..attacks import NORMS, AttackConfig, PixelSpace, fgsm, from_pixels, pgd, to_pixels
from ..data import load_dataset
from ..deploy import quantize_int8
from ..errors import UserError
from ..io import load_tensors, read_json, save_tensors, write_json
from ..models import build_model
from ..plotting import density_axis, plt, save_figure
from ..runs import config_hash, open_run_dir
from ..runs.models import load_weights, trained_models
from ..runs.seeds import aggregate, display, finished_seeds, seed_dir
from .cifar_c import CIFAR10_C, SEVERITIES, corrupt_cifar
from .corruptions import MNIST_C, corrupt

ATTACKS = ("pgd", "fgsm", "autoattack")


@dataclass
class RobustnessConfig:
    """The settings of `ticketlab robustness` (its flags: each field's, with its help)."""

    attack: str = field(default="pgd", metadata={"help": "pgd, fgsm or autoattack (pip install 'ticketlab[robust]')"})
    eps: list[float] = field(
        default_factory=lambda: [0.1],
        metadata={"comma": True, "metavar": "E[,E...]", "help": "radii in pixel units, images in [0, 1] (default 0.1)"},
    )
    norm: str = field(default="linf", metadata={"help": "linf or l2"})
    steps: int = field(default=10, metadata={"help": "PGD steps"})
    step_size: float | None = field(default=None, metadata={"help": "PGD step (default 2.5 eps / steps)"})
    restarts: int = field(default=1, metadata={"help": "PGD random restarts"})
    samples: int | None = field(
        default=None, metadata={"metavar": "N", "help": "the first N test examples (default all)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the random starts"})
    # transfer: attack the first model (IMP: the dense round 0) and evaluate every model on its examples (GAP's
    # transfer setting)
    transfer: bool = field(
        default=False,
        metadata={"help": "transfer attack: examples made on the run's first model (IMP: the dense round 0)"},
    )
    corruptions: list[str] = field(
        default_factory=list,
        metadata={
            "comma": True,
            "metavar": "all|C[,C...]",
            "help": "also the accuracy under common corruptions: MNIST-C's (28x28 grayscale data) or CIFAR-10-C's at "
            "severities 1-5 (32x32 RGB)",
        },
    )
    # int8: each model's int8 form (PyTorch static quantisation, as `export`), met with the float model's
    # examples (white-box) or the transferred ones
    int8: bool = field(
        default=False,
        metadata={"help": "also each model's int8 form (as `export` makes it), met with its float model's examples"},
    )

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.int8:
            d.pop("int8")  # results folders made before the int8 option keep their hash
        if self.corruptions:
            # corrupted sets drawn per image, MNIST-C's glass blur down the columns (as its code): a new folder, so
            # folders made with the earlier per-batch draws keep their cached sets and hash
            d["corruption_draws"] = "per-image"
        return d

    def validate(self) -> None:
        if self.transfer and self.attack == "autoattack":
            raise UserError("--transfer crafts examples with --attack pgd or fgsm, not autoattack")
        if self.attack not in ATTACKS:
            raise UserError(f"unknown --attack {self.attack!r}; choose one of: {', '.join(ATTACKS)}")
        if not self.eps or any(not e >= 0 for e in self.eps):
            raise UserError(f"--eps must be >= 0 (pixel units), got {self.eps}")
        if self.norm not in NORMS:
            raise UserError(f"unknown --norm {self.norm!r}; choose one of: {', '.join(NORMS)}")

        bad = [c for c in self.corruptions if c not in MNIST_C and c not in CIFAR10_C and c != "all"]
        if bad:
            raise UserError(f"unknown corruption {bad[0]!r}; choose from: all, {', '.join(dict(MNIST_C, **CIFAR10_C))}")
        if self.samples is not None and self.samples < 1:
            raise UserError(f"--samples must be >= 1, got {self.samples}")
        for e in self.eps:
            self.attack_config(e).validate()

    def attack_config(self, eps: float) -> AttackConfig:
        return AttackConfig(eps=eps, norm=self.norm, steps=self.steps, step_size=self.step_size, restarts=self.restarts)


def _accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Accuracy of ``model`` (in eval mode) on (x, y), in batches."""
    with torch.no_grad():
        return float(
            (torch.cat([model(x[i : i + batch]) for i in range(0, len(y), batch)]).argmax(1) == y).float().mean()
        )


class _Ensemble(torch.nn.Module):
    """Members averaged in probability; log of the mean softmax as logits (what an attack differentiates)."""

    def __init__(self, nets: list):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.stack([n(x).softmax(1) for n in self.nets]).mean(0).clamp_min(1e-12))


def _ensemble(paths: list[Path], load, model) -> _Ensemble:
    nets = []
    for p in paths:
        load(p)
        nets.append(copy.deepcopy(model).eval())
    return _Ensemble(nets).eval()


def _int8(model, data):
    """``model``'s int8 form as `ticketlab export` makes it (activation ranges from 1024 training inputs)."""

    return quantize_int8(model, data.x_train[:1024])


def _examples(
    net: PixelSpace, xp: torch.Tensor, y: torch.Tensor, cfg: RobustnessConfig, eps: float, data
) -> torch.Tensor:
    """Adversarial pixels for (xp, y) on ``net`` at ``eps`` with ``cfg``'s attack, seeded by ``cfg.seed``."""
    if cfg.attack == "autoattack":
        try:
            from pyautoattack import AutoAttack  # optional: the robust extra
        except ImportError:
            raise UserError("--attack autoattack needs pyautoattack: pip install 'ticketlab[robust]'") from None
        if data.pixel_range is None:
            raise UserError(f"AutoAttack needs inputs in [0, 1]; {data.name} has no pixel range")
        adversary = AutoAttack(
            net, eps=eps, norm="Linf" if cfg.norm == "linf" else "L2", seed=cfg.seed, device=xp.device
        )
        adv, _ = adversary.run_standard_evaluation(xp.clamp(0, 1), y, batch_size=500)  # (x_adv, y_adv)
        return adv
    g = torch.Generator().manual_seed(cfg.seed)
    return torch.cat(
        [
            pgd(net, xp[i : i + 500], y[i : i + 500], cfg.attack_config(eps), pixel_range=data.pixel_range, generator=g)
            if cfg.attack == "pgd"
            else fgsm(net, xp[i : i + 500], y[i : i + 500], eps, norm=cfg.norm, pixel_range=data.pixel_range)
            for i in range(0, len(y), 500)
        ]
    )


def corruption_names(names: list[str], input_shape: tuple[int, ...]) -> list[str]:
    """``names`` with ``all`` resolved for the data: MNIST-C's for 28x28 grayscale, CIFAR-10-C's for 32x32 RGB."""

    if names != ["all"]:
        return names
    return list(CIFAR10_C) if tuple(input_shape) == (3, 32, 32) else list(MNIST_C)


def _corrupted_sets(cfg: RobustnessConfig, data, x: torch.Tensor, out: Path) -> dict[str, torch.Tensor]:
    """The test inputs under each corruption, made once, seeded, cached in the results folder
    (``corrupted.safetensors``). MNIST-C (28x28 grayscale): one set per corruption, standardised floats.
    CIFAR-10-C (32x32 RGB): one set per corruption and severity 1-5 (``name/severity``), kept as 8-bit
    pixels as the benchmark stores them (90 sets of floats would not fit in memory), standardised when used."""

    cifar = tuple(x.shape[1:]) == (3, 32, 32)
    table = CIFAR10_C if cifar else MNIST_C
    if data.pixel_range != (0.0, 1.0) or (not cifar and tuple(x.shape[1:]) != (1, 28, 28)):
        raise UserError(
            f"--corruptions are MNIST-C's (28x28 grayscale) or CIFAR-10-C's (32x32 RGB); {data.name} is neither"
        )
    bad = [c for c in cfg.corruptions if c not in table]
    if bad:
        raise UserError(f"unknown corruption {bad[0]!r} for {data.name}; choose from: all, {', '.join(table)}")
    keys = [f"{c}/{s}" for c in cfg.corruptions for s in SEVERITIES] if cifar else list(cfg.corruptions)
    cache = out / "corrupted.safetensors"
    if cache.exists():
        stored = load_tensors(cache)
        if set(stored) == set(keys) and all(v.shape == x.shape for v in stored.values()):
            return stored
    pix = to_pixels(x, data).clamp(0, 1).numpy()
    if cifar:
        sets = {}
        for c in cfg.corruptions:
            for s in SEVERITIES:
                sets[f"{c}/{s}"] = torch.from_numpy(
                    np.round(corrupt_cifar(pix, c, s, seed=cfg.seed) * 255).astype(np.uint8)
                )
    else:
        sets = {
            c: from_pixels(torch.from_numpy(corrupt(pix, c, seed=cfg.seed)), data).contiguous() for c in cfg.corruptions
        }
    save_tensors(cache, sets)
    return sets


def _standardised(xc: torch.Tensor, data) -> torch.Tensor:
    return from_pixels(xc.float() / 255, data) if xc.dtype == torch.uint8 else xc


def run_group(group: Path, cfg: RobustnessConfig, data_dir: str | None, quiet: bool) -> dict:
    """A seed group: each seed's run evaluated (and cached) as a run of its own, then every number of the rows
    as mean ± std over the seeds (``GROUP/robustness-<hash>/results.json``)."""

    seeds = finished_seeds(group)
    if not seeds:
        raise UserError(f"{group} is a seed group with no finished seed yet; finish it first")
    results = []
    for sd in seeds:
        if not quiet:
            print(f"seed {sd}:", file=sys.stderr)
        results.append(
            run_robustness(
                seed_dir(group, sd),
                replace(cfg, eps=list(cfg.eps), corruptions=list(cfg.corruptions)),
                data_dir=data_dir,
                quiet=quiet,
            )
        )
    labels = [[r["label"] for r in res["rows"]] for res in results]
    if any(lab != labels[0] for lab in labels):
        raise UserError(f"the seeds of {group} hold different models; finish every seed first")
    config = results[0]["config"]
    agg = aggregate([res["rows"] for res in results])
    out = open_run_dir(group / f"robustness-{config_hash(config)}", "robustness", config)
    write_json(out / "results.json", {"run": str(group), "config": config, "seeds": seeds, "rows": agg})
    result = {"run": str(group), "config": config, "seeds": seeds, "rows": display(agg), "dir": str(out)}
    first = read_json(seed_dir(group, seeds[0]) / "config.json")
    if first.get("kind") == "imp":  # the means (Stat is a float) against density
        plot_robustness(result, out / "robust_vs_density.png", first["config"])
    return result


def run_robustness(
    run_dir: str | Path, cfg: RobustnessConfig, *, data_dir: str | None = None, quiet: bool = False
) -> dict:
    """Every trained model of ``run_dir`` (a run, or a seed group: mean ± std over its seeds)."""

    cfg.validate()
    run = Path(run_dir)
    rec = read_json(run / "config.json") if (run / "config.json").is_file() else None
    if isinstance(rec, dict) and rec.get("kind") == "seeds":
        return run_group(run, cfg, data_dir, quiet)
    record, models = trained_models(run)
    data = load_dataset(record["config"]["dataset"], data_dir, quiet=True)
    cfg.corruptions = corruption_names(cfg.corruptions, data.input_shape)
    config = cfg.to_dict()
    out = open_run_dir(run / f"robustness-{config_hash(config)}", "robustness", config)
    x, y = data.x_test, data.y_test
    if cfg.samples is not None:
        x, y = x[: cfg.samples], y[: cfg.samples]
    corrupted = _corrupted_sets(cfg, data, x, out) if cfg.corruptions else {}
    path = out / "results.json"
    rows = read_json(path)["rows"] if path.exists() else []
    done = {r["label"] for r in rows}
    model = build_model(record["config"]["model"], data.input_shape, data.num_classes, seed=0)
    net = PixelSpace(model, data.mean, data.std)

    def load(path: Path) -> None:
        load_weights(model, path, record["config"]["model"])
        net.eval()  # the model too: every evaluation and attack below runs in eval mode

    xp = to_pixels(x, data)
    transferred: dict[float, torch.Tensor] = {}
    if cfg.transfer:  # the source: the first model (IMP's dense round 0), attacked once per eps
        load(models[0]["weights"])
        transferred = {e: _examples(net, xp, y, cfg, e, data) for e in cfg.eps}
    for i, m in enumerate(models):
        if m["label"] in done:
            continue
        if "members" in m:
            main = _ensemble(m["members"], load, model)
            advs = {
                e: transferred[e]
                if cfg.transfer
                else _examples(PixelSpace(main, data.mean, data.std), xp, y, cfg, e, data)
                for e in cfg.eps
                if e
            }
        else:
            load(m["weights"])
            main = model
            advs = {e: transferred[e] if cfg.transfer else _examples(net, xp, y, cfg, e, data) for e in cfg.eps if e}
        forms = [(m["label"], m["group"], main)]
        if cfg.int8 and "members" not in m:
            forms.append((f"{m['label']} int8", f"{m['group']} int8", _int8(model, data)))
        for label, group, fmodel in forms:
            pixel_net = PixelSpace(fmodel, data.mean, data.std)
            clean = _accuracy(fmodel, x, y)
            row = {
                "label": label,
                "group": group,
                "density": m["density"],
                "clean_acc": clean,
                "robust_acc": {str(e): clean if e == 0 else _accuracy(pixel_net, advs[e], y) for e in cfg.eps},
            }
            if corrupted:
                acc = {c: _accuracy(fmodel, _standardised(xc, data), y) for c, xc in corrupted.items()}
                row["corruption_acc"] = acc
                row["mean_corruption_acc"] = sum(acc.values()) / len(acc)
            rows.append(row)
        robust = rows[-len(forms)]["robust_acc"]
        clean = rows[-len(forms)]["clean_acc"]
        write_json(path, {"run": str(run), "config": config, "rows": rows})
        if not quiet:
            print(
                f"[{i + 1}/{len(models)}] {m['label']}: clean {clean:.4f}  "
                + "  ".join(f"eps {e}: {a:.4f}" for e, a in robust.items()),
                file=sys.stderr,
                flush=True,
            )
    result = {"run": str(run), "config": config, "rows": rows, "dir": str(out)}
    if record["kind"] == "imp":
        plot_robustness(result, out / "robust_vs_density.png", record["config"])
    return result


def plot_robustness(result: dict, path: Path, run_config: dict) -> None:
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for g in dict.fromkeys(r["group"] for r in rows):
        pts = sorted((r for r in rows if r["group"] == g), key=lambda r: -r["density"])
        for e in result["config"]["eps"]:
            xs, ys = [100 * r["density"] for r in pts], [r["robust_acc"][str(e)] for r in pts]
            (line,) = ax.plot(xs, ys, "o-", markersize=3, label=f"{g}, eps {e}")
            sd = [getattr(v, "std", 0.0) for v in ys]  # a seed group's means carry their std
            if any(sd):
                ax.fill_between(
                    xs,
                    [v - d for v, d in zip(ys, sd)],
                    [v + d for v, d in zip(ys, sd)],
                    color=line.get_color(),
                    alpha=0.2,
                    linewidth=0,
                )
    density_axis(ax, sorted({100 * r["density"] for r in rows}, reverse=True))
    c = result["config"]
    ax.set_ylabel(f"robust accuracy ({c['attack']}, {c['norm']})")
    ax.set_title(f"{run_config['model']} on {run_config['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def format_robustness(result: dict) -> str:
    eps = result["config"]["eps"]
    corr = bool(result["config"].get("corruptions"))
    head = (
        f"{'model':<26} {'density':>8} {'clean':>7}"
        + "".join(f" {'eps ' + str(e):>10}" for e in eps)
        + (f" {'corruptions':>12}" if corr else "")
    )
    c = result["config"]
    source = "; examples made on the first (dense) model and transferred" if c.get("transfer") else ""
    seeds = f"; mean ± std over seeds {result['seeds']}" if result.get("seeds") else ""
    lines = [
        f"{c['attack']} ({c['norm']}, {c['steps']} steps) robust accuracy; eps in pixel units{source}{seeds}",
        head,
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['label']:<26} {100 * r['density']:>7.2f}% {r['clean_acc']:>7.4f}"
            + "".join(f" {r['robust_acc'][str(e)]:>10.4f}" for e in eps)
            + (f" {r['mean_corruption_acc']:>12.4f}" if corr else "")
        )
    if corr:
        lines.append(
            f"corruptions: mean test accuracy over {', '.join(result['config']['corruptions'])} "
            "(CIFAR-10-C: each at severities 1-5; per corruption in results.json)"
        )
    return "\n".join(lines)
