"""``ticketlab neurons``: remove or linearise the ReLU neurons of a trained net that make it hard to verify,
then fine-tune.

- ``--method prune --score stability``: stability-based pruning (Li et al. 2022): the channels (neurons of a
  Linear layer, filters of a convolution) with the lowest stability score are removed - their producing
  rows and biases and their readers' columns masked to exactly zero (``sparse.groups``), so the weight
  density is exact and stays so through fine-tuning. ``--score magnitude`` / ``random`` are the plain
  neuron-pruning baselines.
- ``--method graft`` (Chen et al. 2022, linearity grafting): the neurons (every element of a convolution's
  output, as the reference code) with the lowest score become ``a x + b`` with learnable a, b (init 0.4 and 0,
  the reference's defaults); weights, slopes and intercepts are then fine-tuned together. Grafted neurons
  are exact for every bound and both complete solvers (``ticketlab.verify``); neuron pruning is the special
  case a = b = 0 (``--slope 0 --intercept 0 --freeze-graft``).

The dense parent is an IMP run's trained round 0 (``--source``). Fine-tuning is any ``TrainConfig``:
natural, adversarial (``--adv pgd``) or certified (``--certified crown-ibp``). Run folders as every
command: hashed config, resume, refusal; ``ticketlab verify RUN`` evaluates the parent and the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from ..io import read_json, save_tensors, write_json
from ..lottery import dense_parent, imp_parent
from ..models.graft import GraftedReLU, graft_relus, grafted_modules
from ..runs import (
    Experiment,
    RunConfig,
    load_state,
    register,
    start_derived_run,
    train_cached,
)
from ..runs.models import trained_model
from ..seeding import generator
from ..sparse import density, prunable_names
from ..sparse.groups import channel_groups, group_mask
from ..train import TrainConfig
from ..verify import check_ops, to_ops
from .scores import SCORES, lowest, neuron_scores, per_channel

METHODS = ("prune", "graft")


@dataclass
class NeuronsConfig(RunConfig):
    """Neuron-level pruning or linearity grafting of a trained source run by a neuron score (stability, NRS,
    magnitude, random), then fine-tuning. The flags of ``ticketlab neurons``."""

    model: str = field(default="lenet300", metadata={"help": "model name (that of --source)"})
    dataset: str = field(default="fashion-mnist", metadata={"help": "dataset name or npz:PATH (that of --source)"})
    seed: int = field(default=0, metadata={"help": "seed for the scoring samples, ties and data order"})
    source: str | None = field(
        default=None, metadata={"help": "an IMP run directory: its trained dense round 0 is the parent"}
    )
    method: str = field(default="prune", metadata={"help": "prune (remove channels) or graft (linearise neurons)"})
    score: str = field(default="stability", metadata={"help": f"neuron score, lowest first: {', '.join(SCORES)}"})
    fraction: float = field(
        default=0.5, metadata={"help": "fraction of ReLU neurons (prune: channels) removed or grafted"}
    )
    scope: str = field(
        default="layerwise",
        metadata={"help": "layerwise (the same fraction per layer, the references' default) or global"},
    )
    score_eps: float = field(
        default=0.1, metadata={"help": "stability: L-inf radius of the balls scored (pixel units)"}
    )
    score_bound: str = field(default="ibp", metadata={"help": "stability: ibp (the reference's) or crown bounds"})
    score_samples: int = field(default=1000, metadata={"help": "training samples scored (the references: 1000)"})
    slope: float = field(default=0.4, metadata={"help": "graft: initial slope a (reference 0.4)"})
    intercept: float = field(default=0.0, metadata={"help": "graft: initial intercept b (reference 0)"})
    freeze_graft: bool = field(default=False, metadata={"help": "graft: keep a and b at their initial values"})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=60, iterations=3000))

    def validate(self) -> None:
        self.train.validate()
        if not self.source:
            raise UserError("neurons needs --source RUN (an IMP run directory with a trained round 0)")
        if self.method not in METHODS:
            raise UserError(f"unknown --method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.score not in SCORES:
            raise UserError(f"unknown --score {self.score!r}; choose one of: {', '.join(SCORES)}")
        if not 0 <= self.fraction < 1:
            raise UserError(f"--fraction must be in [0, 1), got {self.fraction}")
        if self.scope not in ("layerwise", "global"):
            raise UserError(f"unknown --scope {self.scope!r}; choose one of: layerwise, global")
        if self.score == "stability" and not self.score_eps > 0:
            raise UserError(f"--score stability needs --score-eps > 0 (pixel units), got {self.score_eps}")
        if self.score_bound not in ("ibp", "crown"):
            raise UserError(f"unknown --score-bound {self.score_bound!r}; choose one of: ibp, crown")
        if self.score_samples < 1:
            raise UserError(f"--score-samples must be >= 1, got {self.score_samples}")


def check_neurons(cfg: NeuronsConfig, model, data):
    """Refusals needing the model: the source run, and a net the bounds can follow (stability scores)."""
    parent = imp_parent(cfg.source, cfg.model, cfg.dataset)
    if cfg.score == "stability":
        check_ops(to_ops(model, data.input_shape, data.mean, data.std), model, data.input_shape, data.mean, data.std)
    if not any(isinstance(m, torch.nn.ReLU) for m in model.modules()):
        raise UserError(f"{cfg.model} has no ReLU modules to prune or graft")
    if cfg.method == "prune":
        groups = {g.name for g in channel_groups(model, data.input_shape)}
        for root in _roots(model):
            if root not in groups:
                raise UserError(
                    f"{cfg.model}: the ReLU after {root or 'the input'} is not fed by a prunable channel group; "
                    "use --method graft"
                )
    return parent


def scoring_inputs(cfg: NeuronsConfig, data) -> torch.Tensor:
    """The ``score_samples`` training inputs scored (a seeded draw, as the references' 1000-sample subset)."""
    n = min(cfg.score_samples, len(data.y_train))
    idx = torch.randperm(len(data.y_train), generator=generator(cfg.seed, "neuron-scores"))[:n]
    return data.x_train[idx]  # a CPU index serves a tensor on any device


def choose(cfg: NeuronsConfig, model, data) -> list[torch.Tensor]:
    """Per ReLU layer, True on the neurons (graft) or channels (prune) chosen, lowest scores first."""
    x = scoring_inputs(cfg, data)
    g = generator(cfg.seed, "neuron-ties")
    chunks = x.split(250)  # bound propagation of 1000 samples at once is memory-hungry on conv nets
    scores = [
        neuron_scores(cfg.score, model, data, c, eps=cfg.score_eps, bound=cfg.score_bound, generator=g) for c in chunks
    ]
    merged = [merge_chunks([s[i] for s in scores], [len(c) for c in chunks]) for i in range(len(scores[0]))]
    if cfg.method == "prune":
        merged = [per_channel(s) for s in merged]
    return lowest(merged, cfg.fraction, cfg.scope, g)


def merge_chunks(scores: list[torch.Tensor], sizes: list[int]) -> torch.Tensor:
    """One layer's scores over chunks of ``sizes`` samples as one pass over them all would give: the mean
    weighted by size (in float64), a dead neuron's -inf counting as 0, and -inf only where dead in every chunk."""
    dead = [torch.isneginf(s) for s in scores]
    mean = sum(torch.where(d, 0.0, s).double() * n for d, s, n in zip(dead, scores, sizes)) / sum(sizes)
    return torch.where(torch.stack(dead).all(0), -torch.inf, mean)


def _roots(model) -> list[str]:
    """The Linear/Conv layer feeding each ReLU, in order (the channel group a pruned channel belongs to)."""
    out, last = [], None
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            last = name
        elif isinstance(m, (torch.nn.ReLU, GraftedReLU)):
            out.append(last)
    return out


def channel_mask(model, input_shape: tuple[int, ...], chosen: list[torch.Tensor]) -> dict:
    """The parameter mask removing the ``chosen`` channels (per ReLU, True: removed) of the layers feeding
    the ReLUs (each a channel group: ``check_neurons``): their rows and biases and their readers' columns."""
    groups = channel_groups(model, input_shape)
    keep = {root: ~c.cpu() for root, c in zip(_roots(model), chosen)}
    return group_mask(model, groups, keep)


def weight_density(model, mask: dict | None) -> float:
    """The fraction of the prunable weights (Linear and Conv weights) kept."""
    names = prunable_names(model)
    params = dict(model.named_parameters())
    full = {n: (mask[n] if mask and n in mask else torch.ones_like(params[n], dtype=torch.bool)) for n in names}
    return density(full)


def run_neurons(
    cfg: NeuronsConfig,
    out: str | Path | None = None,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    quiet: bool = False,
    checkpoint_every: int = 2000,
) -> dict:
    """Prune or graft ``cfg.source``'s neurons by their scores, then fine-tune, in the run folder ``out``
    (resumable). Returns the summary."""
    dev, data, model, config, run_dir, (weights, src_summary) = start_derived_run(
        cfg, "neurons", out, device, data_dir, quiet, check_neurons
    )
    if (run_dir / "summary.json").exists():
        return read_json(run_dir / "summary.json")
    model.load_state_dict(load_state(weights, model))
    chosen = choose(cfg, model, data)
    neurons = sum(c.numel() for c in chosen)
    mask = None
    if cfg.method == "prune":
        mask = channel_mask(model, data.input_shape, chosen)
        save_tensors(run_dir / "mask.safetensors", {n: m.cpu() for n, m in mask.items()})
    else:
        graft_relus(model, data.input_shape, cfg.slope, cfg.intercept)
        for m, c in zip(grafted_modules(model).values(), chosen):
            m.graft.copy_(c.view(m.graft.shape))
            if cfg.freeze_graft:
                m.slope.requires_grad_(False)
                m.intercept.requires_grad_(False)
    total = cfg.train.total_iterations(len(data.y_train))
    trained, _ = train_cached(
        run_dir,
        model,
        data,
        cfg.train,
        start=None,
        total=total,
        seed=cfg.seed,
        checkpoint_every=checkpoint_every,
        label=f"neurons {cfg.method} {cfg.score}",
        quiet=quiet,
        mask=mask,
        layout="result",
    )
    summary = {
        "config": config,
        "dense_test_acc": src_summary["rounds"][0]["test_acc"],
        "neurons": neurons,
        "chosen": int(sum(int(c.sum()) for c in chosen)),
        "chosen_per_layer": [int(c.sum()) for c in chosen],
        "units_per_layer": [c.numel() for c in chosen],
        "weight_density": weight_density(model, mask),
        **trained,
    }
    summary["density"] = summary["weight_density"]
    write_json(run_dir / "summary.json", summary)
    return summary


def format_neurons(s: dict) -> str:
    """The table ``ticketlab neurons`` prints."""
    c = s["config"]
    what = "channels pruned" if c["method"] == "prune" else "neurons grafted"
    return (
        f"{c['method']} by {c['score']} on {c['model']} / {c['dataset']}: {s['chosen']}/{s['neurons']} {what} "
        f"({'/'.join(map(str, s['chosen_per_layer']))} per layer); weight density {100 * s['weight_density']:.2f}%"
        f"\ntest acc {s['test_acc']:.4f} (dense parent {s['dense_test_acc']:.4f})"
    )


def neurons_models(run: Path, summary: dict) -> list[dict]:
    """The dense parent and the pruned or grafted net."""
    c = summary["config"]
    what = "grafted" if c["method"] == "graft" else "pruned"
    return [
        dense_parent(c["source"]),
        trained_model(
            f"{c['score']} {what} {c['fraction']:g}",
            f"{c['method']}-{c['score']}",
            summary["weight_density"],
            run / "final.safetensors",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        "neurons",
        NeuronsConfig,
        run_neurons,
        format_neurons,
        check=check_neurons,
        headline=lambda s: {"chosen": s["chosen"], "weight_density": s["weight_density"], "test_acc": s["test_acc"]},
        models=neurons_models,
        description="Prune the least stable channels (--method prune --score stability) or graft the least "
        "significant neurons as learnable lines (--method graft --score magnitude) of an IMP run's trained "
        "dense round 0, then fine-tune; verify the result with `ticketlab verify`.",
    )
)
