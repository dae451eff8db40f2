"""A ticketlab plugin in one file: a training method, ``ticketlab random-ticket`` (a random mask of exact
per-layer density drawn at initialisation, then trained), and an analysis, ``ticketlab nonzeros RUN`` (the
kept weights per layer of a run's trained model). pyproject.toml's entry points register both; ticketlab
then gives the method its flags, --seeds, sweep, runs, show and report with no other code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.commands import Command
from ticketlab.errors import UserError
from ticketlab.io import load_tensors, write_json
from ticketlab.runs import Experiment, RunConfig, start_run, train_cached
from ticketlab.seeding import generator
from ticketlab.sparse import keep_count, prunable_names, topk_mask
from ticketlab.train import TrainConfig


@dataclass
class RandomTicketConfig(RunConfig):
    model: str = field(default="lenet300", metadata={"help": "model name"})
    dataset: str = field(default="digits", metadata={"help": "dataset name"})
    seed: int = field(default=0, metadata={"help": "seed of the init, the mask and the data order"})
    density: float = field(default=0.2, metadata={"help": "fraction of each layer's weights kept"})
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        self.train.validate()
        if not 0 < self.density <= 1:
            raise UserError(f"--density must be in (0, 1], got {self.density}")


def run(cfg: RandomTicketConfig, out, *, device="cpu", data_dir=None, quiet=False, checkpoint_every=2000) -> dict:
    dev, data, model, config, run_dir = start_run(cfg, "random-ticket", out, device, data_dir, quiet)
    g, params = generator(cfg.seed, "mask"), dict(model.named_parameters())
    mask = {}
    for name in prunable_names(model):
        scores = params[name].detach().cpu().clone().uniform_(generator=g)
        mask[name] = topk_mask(scores, keep_count(scores.numel(), cfg.density), g).to(dev)
    summary, history = train_cached(
        run_dir,
        model,
        data,
        cfg.train,
        start=None,
        seed=cfg.seed,
        total=cfg.train.total_iterations(len(data.y_train)),
        checkpoint_every=checkpoint_every,
        label=f"random ticket {cfg.density}",
        quiet=quiet,
        mask=mask,
    )
    summary = {"config": config, **summary}
    write_json(run_dir / "summary.json", summary)
    return summary


def format_summary(s: dict) -> str:
    return f"density {s['density']:.4f}  test acc {s['test_acc']:.4f}  ({s['iterations']} iterations)"


EXPERIMENT = Experiment(
    "random-ticket",
    RandomTicketConfig,
    run,
    format_summary,
    headline=lambda s: {"density": s["density"], "test_acc": s["test_acc"]},
    help="a random mask of exact density at init, trained (the random-ticket baseline)",
)


def configure_nonzeros(p) -> None:
    p.add_argument("run_dir", metavar="RUN", help="a finished run with final.safetensors")


def nonzeros(ns) -> int:
    path = Path(ns.run_dir) / "final.safetensors"
    if not path.is_file():
        raise UserError(f"{path} does not exist; give a finished run's folder")
    for name, w in load_tensors(path).items():
        if name.endswith("weight"):
            print(f"{name:<24} {int(w.count_nonzero()):>8} / {w.numel():<8} kept")
    return 0


NONZEROS = Command("nonzeros", configure_nonzeros, nonzeros, help="the kept weights per layer of a finished run")
