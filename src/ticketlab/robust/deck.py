"""CARD-Deck (Diffenderfer et al. 2021): compressed nets trained with different augmentations, and a spectral
gate that sends each test input to the member whose training data looks most like it in the Fourier domain.

Each member is a finished run whose training config says its augmentation (``--augment none|gaussian|
augmix``): an IMP run (its last round's ticket: a CARD when IMP rewinds), a compress run, or a prune-init
run. The gate's reference for a member is the mean log-amplitude spectrum, log(1 + |FFT2|) of each image
minus its mean, averaged over channels, of 2,000 training images passed through that member's own
augmentation (seeded). A test input goes to the member whose reference is nearest its own spectrum (mean
absolute difference). Reported per test condition (clean, and each corruption of ``--corruptions``):
each member's accuracy, the plain ensemble's (mean softmax of all members), the deck's, and how often
the gate chose each member. ticketlab's reading of the paper's gate; its reference code is not at hand.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..attacks import to_pixels
from ..data import load_dataset
from ..data.augment import augment_pixels
from ..errors import UserError
from ..io import read_json, write_json
from ..models import build_model
from ..runs import config_hash, open_run_dir
from ..runs.models import load_weights, trained_models
from ..seeding import generator
from .evaluate import RobustnessConfig, _corrupted_sets, _standardised, corruption_names

REFERENCE_IMAGES = 2000


@dataclass
class DeckConfig:
    members: list[str]
    corruptions: list[str] = field(default_factory=list)
    samples: int | None = None
    seed: int = 0

    def validate(self) -> None:
        if len(self.members) < 2:
            raise UserError("a CARD-Deck needs at least two member runs")
        if self.samples is not None and self.samples < 1:
            raise UserError(f"--samples must be >= 1, got {self.samples}")


def member(run: Path) -> dict:
    """{label, model, dataset, augment, weights} of a finished run's final model (an IMP run's last ticket)."""
    record, models = trained_models(
        run, ("imp", "compress", "prune-init"), "CARD-Deck members are imp, compress or prune-init runs"
    )
    cfg = record["config"]
    final = [m for m in models if m["group"] == "ticket"][-1] if record["kind"] == "imp" else models[-1]
    aug = cfg["train"].get("augment", "none")
    return {
        "label": f"{run.name} ({aug})",
        "model": cfg["model"],
        "dataset": cfg["dataset"],
        "augment": aug,
        "sigma": cfg["train"].get("augment_sigma", 0.1),
        "weights": final["weights"],
    }


def spectra(xp: torch.Tensor) -> torch.Tensor:
    """Per image: mean over channels of log(1 + |FFT2(x - mean(x))|), shape (N, H, W)."""
    centred = xp - xp.mean(dim=(-2, -1), keepdim=True)
    return torch.log1p(torch.fft.fft2(centred).abs()).mean(1)


def references(members: list[dict], data, seed: int) -> torch.Tensor:
    """(members, H, W): each member's mean spectrum of its augmented training images."""

    idx = torch.randperm(len(data.y_train), generator=generator(seed, "card-deck"))[:REFERENCE_IMAGES]
    xp = to_pixels(data.x_train[idx], data)
    out = []
    for i, m in enumerate(members):
        aug = augment_pixels(m["augment"], xp, generator(seed, "card-deck", i), data.pixel_range, m["sigma"])
        out.append(spectra(aug).mean(0))
    return torch.stack(out)


def gate(refs: torch.Tensor, xp: torch.Tensor) -> torch.Tensor:
    """The member index per input: nearest reference spectrum (mean absolute difference)."""
    s = spectra(xp)
    return (s[:, None] - refs[None]).abs().mean(dim=(-2, -1)).argmin(1)


def run_deck(
    cfg: DeckConfig, out: str | Path | None = None, *, data_dir: str | None = None, quiet: bool = False
) -> dict:
    cfg.validate()
    members = [member(Path(r)) for r in cfg.members]
    if len({m["label"] for m in members}) < len(members):  # e.g. seed_0 of two groups, same augmentation
        for i, m in enumerate(members):
            m["label"] = f"{i}: {m['label']}"
    datasets = {m["dataset"] for m in members}
    if len(datasets) > 1:
        raise UserError(f"CARD-Deck members must share a dataset; got {', '.join(sorted(datasets))}")
    data = load_dataset(datasets.pop(), data_dir, quiet=quiet)
    if data.pixel_range is None or len(data.input_shape) != 3:
        raise UserError(f"CARD-Deck's spectral gate needs images; {data.name} is not an image dataset")
    cfg.corruptions = corruption_names(cfg.corruptions, data.input_shape)
    config = asdict(cfg) | {"members": [str(Path(r).resolve()) for r in cfg.members]}
    where = open_run_dir(Path(out) if out else Path("runs") / f"card-deck-{config_hash(config)}", "card-deck", config)
    models = []
    for m in members:
        net = build_model(m["model"], data.input_shape, data.num_classes)  # its init is overwritten
        load_weights(net, m["weights"], m["model"])
        models.append(net.eval())
    x, y = data.x_test, data.y_test
    if cfg.samples is not None:
        x, y = x[: cfg.samples], y[: cfg.samples]
    refs = references(members, data, cfg.seed)
    rc = RobustnessConfig(corruptions=cfg.corruptions, seed=cfg.seed)
    sets = {"clean": x} | (_corrupted_sets(rc, data, x, where) if cfg.corruptions else {})
    path = where / "results.json"
    rows = read_json(path)["rows"] if path.exists() else []
    done = {r["condition"] for r in rows}
    for cond, xc in sets.items():
        if cond in done:
            continue
        xs = _standardised(xc, data)
        with torch.no_grad():
            probs = torch.stack(
                [torch.cat([m(xs[i : i + 1000]).softmax(1) for i in range(0, len(y), 1000)]) for m in models]
            )  # (members, N, classes)
        choice = gate(refs, to_pixels(xs, data))
        deck = probs[choice, torch.arange(len(y))]
        acc = lambda p: float((p.argmax(1) == y).float().mean())  # noqa: E731
        rows.append(
            {
                "condition": cond,
                "members": {m["label"]: acc(p) for m, p in zip(members, probs)},
                "ensemble": acc(probs.mean(0)),
                "deck": acc(deck),
                "chosen": {m["label"]: float((choice == i).float().mean()) for i, m in enumerate(members)},
            }
        )
        write_json(path, {"config": config, "rows": rows})
        if not quiet:
            print(f"{cond}: deck {rows[-1]['deck']:.4f}  ensemble {rows[-1]['ensemble']:.4f}", file=sys.stderr)
    return {"config": config, "rows": rows, "dir": str(where), "labels": [m["label"] for m in members]}


def format_deck(result: dict) -> str:
    labels = result["labels"]
    head = f"{'condition':<22}" + "".join(f" {lab[:22]:>22}" for lab in labels) + f" {'ensemble':>9} {'deck':>7}"
    lines = ["test accuracy per member, the plain ensemble (mean softmax) and the spectrally gated deck", head]
    for r in result["rows"]:
        lines.append(
            f"{r['condition']:<22}"
            + "".join(f" {r['members'][lab]:>22.4f}" for lab in labels)
            + f" {r['ensemble']:>9.4f} {r['deck']:>7.4f}"
        )
    corr = [r for r in result["rows"] if r["condition"] != "clean"]
    if corr:
        mean = lambda k: sum(k(r) for r in corr) / len(corr)  # noqa: E731
        lines.append(
            f"{'mean over corruptions':<22}"
            + "".join(f" {mean(lambda r: r['members'][lab]):>22.4f}" for lab in labels)
            + f" {mean(lambda r: r['ensemble']):>9.4f} {mean(lambda r: r['deck']):>7.4f}"
        )
    return "\n".join(lines)
