"""``ticketlab structured``: network slimming, L1 filter / neuron pruning and Gibbs pruning runs.

Flow (each step cached in the run directory, each training resumable):

- ``slimming`` and ``l1``: for each of ``passes`` passes: train (pass 0 from the seeded init; slimming
  with its L1 penalty on BatchNorm scales), score channels (``bn-scale`` or ``l1``), remove the lowest
  ones (globally or per layer; a pass removes 1 - (1 - sparsity)^(1/passes) of the channels still there,
  or every channel below ``--threshold``), fine-tune with the channel mask.
- ``gibbs``: one training under Gibbs-sampled masks with annealing (``--hamiltonian filter`` prunes whole
  channels, ``unstructured`` single weights), then the deterministic mask, optionally fine-tuned.
- ``--scratch e,b``: Liu et al.'s baselines: the pruned (compacted) architecture re-initialised and trained
  for the same iterations as the large model (Scratch-E) or for the same training FLOPs (Scratch-B:
  iterations x dense FLOPs / pruned FLOPs, capped at ``--scratch-b-cap`` (2) times, as ``ticketlab
  baselines`` does).

Layout::

    RUN/config.json, summary.json, final.safetensors, mask.safetensors (the pruned model and its mask)
    RUN/pass_<k>/train/, pass_<k>/finetune/ (final.safetensors, result.json), pass_<k>/mask.safetensors
    RUN/scratch_<e|b>/ (model.safetensors: the compact architecture, result.json)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..deploy import compact, widths
from ..errors import UserError
from ..flops import forward_flops
from ..io import read_json, save_tensors, write_json
from ..models import glorot_normal_init
from ..runs import Experiment, RunConfig, register, start_run, train_cached
from ..runs.models import trained_model
from ..seeding import derive_seed
from ..sparse import Mask, apply_mask_, density
from ..sparse.groups import channel_groups, group_mask
from ..train import TrainConfig
from ..train.loop import evaluate
from .gibbs import HAMILTONIANS, GibbsPruning
from .select import channel_scores, select_channels
from .slimming import SlimmingPenalty

METHODS = {"slimming": "bn-scale", "l1": "l1", "gibbs": None}


@dataclass
class StructuredConfig(RunConfig):
    model: str = field(default="conv2bn", metadata={"help": "model name"})
    dataset: str = field(
        default="fashion-mnist",
        metadata={"help": "dataset name, or npz:PATH for your own arrays (see `ticketlab list`)"},
    )
    seed: int = field(default=0, metadata={"help": "seed for init, data order and sampling"})
    method: str = field(default="slimming", metadata={"help": "slimming, l1 (filters / neurons) or gibbs"})
    sparsity: float = field(
        default=0.5, metadata={"help": "fraction of channels removed in all (gibbs: fraction pruned per layer)"}
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "remove every channel whose score is below this (instead of --sparsity; one pass)"},
    )
    scope: str | None = field(
        default=None,
        metadata={"help": "global or layerwise channel ranking (default: global for slimming, layerwise for l1)"},
    )
    passes: int = field(default=1, metadata={"help": "train-prune-fine-tune passes (slimming, l1)"})
    penalty: float = field(default=1e-4, metadata={"group": "slimming", "help": "L1 strength on BatchNorm scales"})
    finetune_iterations: int | None = field(
        default=None, metadata={"help": "fine-tuning steps after each prune (default: the training length; gibbs 0)"}
    )
    hamiltonian: str = field(default="filter", metadata={"group": "gibbs", "help": "filter or unstructured"})
    gibbs_c: float = field(default=1.0, metadata={"group": "gibbs", "help": "coupling of a filter's weights"})
    mcmc_steps: int = field(default=20, metadata={"group": "gibbs", "help": "chromatic sampling sweeps per step"})
    anneal_fraction: float = field(
        default=0.64, metadata={"group": "gibbs", "help": "share of training annealing beta"}
    )
    beta_end: float = field(default=1e4, metadata={"group": "gibbs", "help": "final inverse temperature (starts at 1)"})
    scratch: list[str] = field(
        default_factory=list,
        metadata={"help": "scratch baselines of the pruned architecture: e (same iterations), b (same FLOPs)"},
    )
    scratch_b_cap: float = field(
        default=2.0, metadata={"help": "Scratch-B trains at most this many times the training's iterations"}
    )
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        self.train.validate()
        if self.method not in METHODS:
            raise UserError(f"unknown structured method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if not 0 <= self.sparsity < 1:
            raise UserError(f"--sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in (None, "global", "layerwise"):
            raise UserError(f"--scope must be global or layerwise, got {self.scope!r}")
        if self.passes < 1:
            raise UserError(f"--passes must be >= 1, got {self.passes}")
        if self.threshold is not None and (self.passes != 1 or self.method == "gibbs"):
            raise UserError("--threshold works with one pass of slimming or l1")
        if self.method == "gibbs" and self.passes != 1:
            raise UserError("gibbs prunes during one training: leave --passes at 1")
        if self.hamiltonian not in HAMILTONIANS:
            raise UserError(f"--hamiltonian must be one of {', '.join(HAMILTONIANS)}, got {self.hamiltonian!r}")
        if self.penalty < 0 or (self.finetune_iterations or 0) < 0 or self.mcmc_steps < 0:
            raise UserError("--penalty, --finetune-iterations and --mcmc-steps must be >= 0")
        if not 0 < self.anneal_fraction <= 1 or self.beta_end < 1:
            raise UserError("--anneal-fraction must be in (0, 1] and --beta-end >= 1")
        self.scratch = sorted(
            {x.strip().lower() for s in self.scratch for x in s.split(",") if x.strip()}, key="eb".find
        )  # --scratch e,b or --scratch e --scratch b
        if not self.scratch_b_cap >= 1:
            raise UserError(f"--scratch-b-cap must be >= 1, got {self.scratch_b_cap}")
        bad = [s for s in self.scratch if s not in ("e", "b")]
        if bad:
            raise UserError(f"--scratch takes e and/or b, got {bad}")
        if self.scratch and self.method == "gibbs" and self.hamiltonian == "unstructured":
            raise UserError("scratch baselines need a structured method (unstructured gibbs removes no channel)")


def _phase(
    where: Path,
    model,
    data,
    cfg: TrainConfig,
    *,
    start: dict,
    mask: Mask | None,
    total: int,
    seed: int,
    updater=None,
    quiet: bool,
    checkpoint_every: int,
    label: str,
) -> dict:
    """One training of ``model`` from ``start`` in ``where`` (the engine's cached unit, result.json layout);
    a cache hit loads the trained weights back. The updater is detached once its training ends."""

    def record(result, u) -> dict:
        if u is not None:
            u.detach()
        return {"iterations": total}

    summary, _ = train_cached(
        where,
        model,
        data,
        cfg,
        start=start,
        mask=mask,
        total=total,
        seed=seed,
        sparse=updater,
        checkpoint_every=checkpoint_every,
        label=label,
        quiet=quiet,
        reload_final=True,
        record=record,
        layout="result",
        keep_history=False,
    )
    return summary


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _accuracy(model, data, mask: Mask) -> float:
    """Test accuracy with ``mask`` applied to the model's weights (in place)."""
    apply_mask_(model, mask)
    return evaluate(model, data.x_test, data.y_test)[1]


def run_structured(
    cfg: StructuredConfig,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    dev, data, model, config, run_dir = start_run(cfg, "structured", out, device, data_dir, quiet)
    if (run_dir / "summary.json").exists():
        return read_json(run_dir / "summary.json")
    shape = data.input_shape
    groups = channel_groups(model, shape)
    if METHODS[cfg.method] is not None:  # refuse a model the score cannot rank before spending a training on it
        channel_scores(model, groups, METHODS[cfg.method])
    total = cfg.train.total_iterations(len(data.y_train))
    finetune = (
        cfg.finetune_iterations if cfg.finetune_iterations is not None else (0 if cfg.method == "gibbs" else total)
    )
    dense_flops = sum(forward_flops(model, shape).values())
    common = dict(quiet=quiet, checkpoint_every=checkpoint_every)
    passes, keep, mask = [], None, None
    state = _state(model)
    dense_acc = None
    for k in range(cfg.passes):
        pdir = run_dir / f"pass_{k}"
        updater = None
        if cfg.method == "slimming":
            updater = lambda opt: SlimmingPenalty(opt, model, cfg.penalty)  # noqa: E731
        elif cfg.method == "gibbs":
            updater = lambda opt: GibbsPruning(  # noqa: E731
                model,
                groups,
                p=cfg.sparsity,
                total_steps=total,
                hamiltonian=cfg.hamiltonian,
                c=cfg.gibbs_c,
                mcmc_steps=cfg.mcmc_steps,
                beta_end=cfg.beta_end,
                anneal_fraction=cfg.anneal_fraction,
                seed=derive_seed(cfg.seed, "gibbs"),
            )
        trained = _phase(
            pdir / "train",
            model,
            data,
            cfg.train,
            start=state,
            mask=mask,
            total=total,
            seed=derive_seed(cfg.seed, "pass", k),
            updater=updater,
            label=f"{cfg.method} pass {k + 1}/{cfg.passes} train",
            **common,
        )
        if k == 0:
            dense_acc = trained["test_acc"]
        if cfg.method == "gibbs":
            g = GibbsPruning(model, groups, p=cfg.sparsity, total_steps=total, hamiltonian=cfg.hamiltonian)
            if cfg.hamiltonian == "filter":
                keep = g.channel_keep()
                new_mask = group_mask(model, groups, keep)
            else:
                new_mask = {n: m.cpu() for n, m in g.final_mask().items()}
            g.detach()
        else:
            scores = channel_scores(model, groups, METHODS[cfg.method])
            if cfg.threshold is not None:
                keep = select_channels(scores, threshold=cfg.threshold, current=keep)
            else:
                step = 1 - (1 - cfg.sparsity) ** (1 / cfg.passes)
                scope = cfg.scope or ("global" if cfg.method == "slimming" else "layerwise")
                keep = select_channels(scores, sparsity=step, scope=scope, current=keep)
            new_mask = group_mask(model, groups, keep)
        new_mask = {n: m.to(dev) for n, m in new_mask.items()}
        save_tensors(pdir / "mask.safetensors", {n: m.contiguous() for n, m in new_mask.items()})
        pruned_acc = _accuracy(model, data, new_mask)
        mask = new_mask
        tuned = None
        if finetune:
            tuned = _phase(
                pdir / "finetune",
                model,
                data,
                cfg.train,
                start=_state(model),
                mask=mask,
                total=finetune,
                seed=derive_seed(cfg.seed, "finetune", k),
                label=f"{cfg.method} pass {k + 1}/{cfg.passes} fine-tune",
                **common,
            )
        state = _state(model)
        small = compact(model, shape, mask)
        passes.append(
            {
                "pass": k,
                "trained_acc": trained["test_acc"],
                "pruned_acc": pruned_acc,
                "finetuned_acc": tuned["test_acc"] if tuned else None,
                "channels": {n: [int(v.sum()), len(v)] for n, v in (keep or {}).items()},
                "params": sum(p.numel() for p in small.parameters()),
                "forward_flops": sum(forward_flops(small, shape).values()),
                "weight_density": density({n: m for n, m in mask.items() if n.endswith("weight") and m.dim() > 1}),
            }
        )
    save_tensors(run_dir / "final.safetensors", _state(model))
    save_tensors(run_dir / "mask.safetensors", {n: m.contiguous() for n, m in mask.items()})
    final_acc = _accuracy(model, data, mask)
    small_flops = passes[-1]["forward_flops"]  # ``small``: the last pass's compact model, the final one
    scratch = {}
    for kind in cfg.scratch:
        its = total if kind == "e" else int(round(total * min(cfg.scratch_b_cap, dense_flops / small_flops)))
        net = glorot_normal_init(copy.deepcopy(small), derive_seed(cfg.seed, "scratch")).to(dev).train()
        res = _phase(
            run_dir / f"scratch_{kind}",
            net,
            data,
            cfg.train,
            start=_state(net),
            mask=None,
            total=its,
            seed=derive_seed(cfg.seed, "scratch", kind),
            label=f"scratch-{kind.upper()}",
            **common,
        )
        scratch[kind] = res | {"iterations": its}
    summary = {
        "config": config,
        "dense_acc": dense_acc,
        "test_acc": final_acc,
        "passes": passes,
        "params": {
            "dense": sum(p.numel() for p in model.parameters()),
            "compact": sum(p.numel() for p in small.parameters()),
        },
        "forward_flops": {"dense": dense_flops, "compact": small_flops},
        "widths": widths(small),
        "scratch": scratch,
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def format_structured(s: dict) -> str:
    c = s["config"]
    p, f = s["params"], s["forward_flops"]
    lines = [
        f"{c['method']} on {c['model']} / {c['dataset']}: dense test acc {s['dense_acc']:.4f}, "
        f"pruned {s['test_acc']:.4f}",
        f"  parameters {p['compact']:,} of {p['dense']:,} ({p['compact'] / p['dense']:.3f}); forward FLOPs "
        f"{f['compact']:.3e} of {f['dense']:.3e} ({f['compact'] / f['dense']:.3f})",
    ]
    for r in s["passes"]:
        ch = r["channels"]
        kept = sum(v[0] for v in ch.values()), sum(v[1] for v in ch.values())
        tuned = f", fine-tuned {r['finetuned_acc']:.4f}" if r["finetuned_acc"] is not None else ""
        lines.append(
            f"  pass {r['pass'] + 1}: trained {r['trained_acc']:.4f}, pruned {r['pruned_acc']:.4f}{tuned}; "
            f"channels kept {kept[0]}/{kept[1]}"
        )
    for kind, r in s["scratch"].items():
        lines.append(f"  scratch-{kind.upper()} ({r['iterations']} iterations): test acc {r['test_acc']:.4f}")
    return "\n".join(lines)


__all__ = ["StructuredConfig", "format_structured", "run_structured"]


def structured_check(cfg: StructuredConfig, model, data) -> None:
    """A model the channel score cannot rank (slimming without BatchNorm) is refused before any training."""
    if METHODS[cfg.method] is not None:
        channel_scores(model, channel_groups(model, data.input_shape), METHODS[cfg.method])


def structured_models(run: Path, summary: dict) -> list[dict]:
    density = summary["passes"][-1]["weight_density"]
    return [trained_model("structured (final)", "structured", density, run / "final.safetensors")]


EXPERIMENT = register(
    Experiment(
        "structured",
        StructuredConfig,
        run_structured,
        format_structured,
        check=structured_check,
        headline=lambda s: {
            "dense_acc": s["dense_acc"],
            "test_acc": s["test_acc"],
            "params_ratio": s["params"]["compact"] / s["params"]["dense"],
            "flops_ratio": s["forward_flops"]["compact"] / s["forward_flops"]["dense"],
        },
        models=structured_models,
        description="Train, remove whole channels (conv filters, MLP neurons) with their dependencies, fine-tune; "
        "--passes for multi-pass slimming; --scratch e,b for Liu et al.'s scratch baselines of the pruned "
        "architecture.",
    )
)
