"""IMP configuration and the LTH paper's presets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..criteria import CRITERIA
from ..errors import UserError
from ..runs import RunConfig
from ..sparse import parse_pattern
from ..sparse.values import KEPT_VALUES, PRUNED_VALUES, check_rules
from ..train import TrainConfig

CONTROLS = ("reinit", "random-mask")


@dataclass
class IMPConfig(RunConfig):
    """An IMP run: model, dataset, seed, training, and the pruning (per-round rate, layerwise or global,
    rounds or target density, rewinding, controls, mask criterion, kept and pruned values). The flags of
    ``ticketlab imp``; ``--preset`` fills in the papers' settings."""

    model: str = field(default="cnn1d", metadata={"help": "model name (see `ticketlab list`)"})
    dataset: str = field(
        default="mnist1d", metadata={"help": "dataset name, or npz:PATH for your own arrays (see `ticketlab list`)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for init, data order and tie-breaking"})
    label_noise: float = field(
        default=0.0,
        metadata={
            "help": "fraction of training labels replaced by a random other class (validation and test stay clean)"
        },
    )
    train: TrainConfig = field(default_factory=TrainConfig)
    rate: float = field(default=0.2, metadata={"help": "fraction of remaining weights pruned per round"})
    conv_rate: float | None = field(default=None, metadata={"help": "layerwise rate for conv layers (default: --rate)"})
    output_rate: float | None = field(
        default=None, metadata={"help": "layerwise rate for the output layer (default: --rate / 2)"}
    )
    global_pruning: bool = field(
        default=False, metadata={"flag": "--global", "help": "prune all layers jointly at --rate"}
    )
    rounds: int | None = field(default=None, metadata={"help": "pruning rounds after the dense round (default 5)"})
    target_density: float | None = field(
        default=None, metadata={"help": "prune until this fraction of weights is kept"}
    )
    one_shot: bool = field(default=False, metadata={"help": "prune to the final density in a single round"})
    rewind: str = field(
        default="0",
        metadata={
            "help": "0 (to init), K (to iteration K), none or lr (learning-"
            "rate rewinding: the previous round's weights, the LR schedule "
            "replayed) or finetune (the previous round's weights at the "
            "schedule's final LR)"
        },
    )
    controls: list[str] = field(
        default_factory=list,
        metadata={"flag": "--control", "help": f"per-round control: {', '.join(CONTROLS)} (repeat for several)"},
    )
    criterion: str = field(
        default="large_final", metadata={"help": "mask criterion M(w_init, w_final) (see `ticketlab list`)"}
    )
    reinit: str = field(default="original", metadata={"help": f"values of kept weights: {', '.join(KEPT_VALUES)}"})
    signed: bool = field(default=False, metadata={"help": "kept weights keep their original sign (with --reinit)"})
    mask_zero: str = field(default="zero", metadata={"help": f"values of pruned weights: {', '.join(PRUNED_VALUES)}"})
    prune_include: list[str] = field(
        default_factory=list,
        metadata={"help": "glob patterns of parameter names to prune (default: Linear/Conv weights)"},
    )
    prune_exclude: list[str] = field(default_factory=list, metadata={"help": "glob patterns not to prune"})
    pattern: str | None = field(
        default=None,
        metadata={
            "omit_at_default": True,
            "help": "N:M semi-structured tickets (e.g. 2:4): round k keeps the best max(N, round(M x density_k)) of "
            "each M consecutive weights along the input dimension; needs --target-density N/M",
        },
    )
    exclude_counts: str = field(
        default="included",
        metadata={
            "omit_at_default": True,
            "help": "--global with --prune-exclude: the rate is a fraction of the included weights (included, "
            "the default) or of all prunable weights, taken from the included ones only (all: open_lth's "
            "sparse_global)",
        },
    )

    @property
    def rewind_iter(self) -> int | None:
        """Iteration to rewind to, or None for no rewinding (``--rewind none``)."""
        return None if self.rewind in ("none", "finetune") else int(self.rewind)

    def validate(self) -> None:
        self.train.validate()
        if not 0 <= self.label_noise < 1:
            raise UserError(f"--label-noise must be in [0, 1), got {self.label_noise}")
        if self.rewind == "lr":  # learning-rate rewinding (Renda et al. 2020) by its name: "none" in configs
            self.rewind = "none"
        if self.rewind not in ("none", "finetune"):
            try:
                k = int(self.rewind)
            except ValueError:
                raise UserError(
                    f"--rewind must be 0, a positive iteration, 'none' or 'finetune', got {self.rewind!r}"
                ) from None
            if k < 0:
                raise UserError(f"--rewind must be >= 0, got {k}")
            self.rewind = str(k)
        for name, r in (("--rate", self.rate), ("--conv-rate", self.conv_rate), ("--output-rate", self.output_rate)):
            if r is not None and not (0 < r < 1 and math.isfinite(r)):
                raise UserError(f"{name} must be in (0, 1) (the fraction pruned per round), got {r}")
        if self.rounds is not None and self.rounds < 1:
            raise UserError(f"--rounds must be >= 1, got {self.rounds}")
        if self.target_density is not None and not 0 < self.target_density < 1:
            raise UserError(f"--target-density must be in (0, 1) (the fraction kept), got {self.target_density}")
        if self.rounds is not None and self.target_density is not None:
            raise UserError("give --rounds or --target-density, not both")
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad:
            raise UserError(f"unknown control {bad[0]!r}; choose one of: {', '.join(CONTROLS)}")
        self.controls = list(dict.fromkeys(self.controls))
        if self.pattern is not None:
            n, m = parse_pattern(self.pattern)
            if self.target_density is None or abs(self.target_density - n / m) > 1e-9:
                raise UserError(f"--pattern {self.pattern} ends at density {n / m:g}: give --target-density {n / m:g}")
        if self.exclude_counts not in ("included", "all"):
            raise UserError(f"unknown --exclude-counts {self.exclude_counts!r}; choose one of: included, all")
        if self.exclude_counts == "all" and not self.global_pruning:
            raise UserError("--exclude-counts all is a rule of global pruning; add --global")

        CRITERIA.get(self.criterion)
        check_rules(self.reinit, self.mask_zero)


# Frankle & Carbin (2019), Figure 2: architectures' training settings and per-layer pruning rates.
PRESETS: dict[str, dict] = {
    "lth-lenet300": {
        "model": "lenet300",
        "dataset": "mnist",
        "rate": 0.2,
        "train": {"optimizer": "adam", "lr": 1.2e-3, "batch_size": 60, "iterations": 50_000},
    },
    "lth-conv2": {
        "model": "conv2",
        "dataset": "cifar10",
        "rate": 0.2,
        "conv_rate": 0.1,
        "train": {"optimizer": "adam", "lr": 2e-4, "batch_size": 60, "iterations": 20_000},
    },
    "lth-conv4": {
        "model": "conv4",
        "dataset": "cifar10",
        "rate": 0.2,
        "conv_rate": 0.1,
        "train": {"optimizer": "adam", "lr": 3e-4, "batch_size": 60, "iterations": 25_000},
    },
    "lth-conv6": {
        "model": "conv6",
        "dataset": "cifar10",
        "rate": 0.2,
        "conv_rate": 0.15,
        "train": {"optimizer": "adam", "lr": 3e-4, "batch_size": 60, "iterations": 30_000},
    },
    # Frankle et al.'s CIFAR-10 ResNet-20 and VGG-16 as open_lth's default_hparams have them: SGD momentum 0.9,
    # lr 0.1 divided by 10 at epochs 80 and 120 of 160, weight decay 1e-4, batch 128, global pruning of 20% per
    # round (VGG-16 leaving its fc layer out, counted as open_lth counts it), the standard crop-and-flip
    # augmentation; rewinding to iteration 2000 (Frankle et al. 2020: where these nets' sparse tickets become
    # stable). Epochs here are 351 steps (45,000 training images after the 5,000 held out, batch 128).
    "lth-resnet20": {
        "model": "resnet20",
        "dataset": "cifar10",
        "rate": 0.2,
        "global_pruning": True,
        "rewind": "2000",
        "train": {
            "optimizer": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "batch_size": 128,
            "iterations": 160 * 351,
            "lr_schedule": "step",
            "milestones": [80 * 351, 120 * 351],
            "gamma": 0.1,
            "augment": "crop-flip",
        },
    },
    "lth-vgg16": {
        "model": "vgg16",
        "dataset": "cifar10",
        "rate": 0.2,
        "global_pruning": True,
        "rewind": "2000",
        "prune_exclude": ["fc.weight"],
        "exclude_counts": "all",
        "train": {
            "optimizer": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "batch_size": 128,
            "iterations": 160 * 351,
            "lr_schedule": "step",
            "milestones": [80 * 351, 120 * 351],
            "gamma": 0.1,
            "augment": "crop-flip",
        },
    },
}
