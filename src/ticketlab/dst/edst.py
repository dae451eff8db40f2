"""``edst``: FreeTickets' efficient dynamic sparse training ensemble (Liu et al., ICLR 2022), in one run.

An exploration phase (``explore_fraction`` of the steps, at the full learning rate) is followed by
``members`` refinement phases. Each refinement phase starts with a large prune-and-regrow (``large_drop``
of every layer's active weights, default 0.8) and a learning-rate restart: the rate is ``lr_drop`` x the
base rate for the first half of the phase and ``lr_drop``^2 for the second (0.1 -> 0.01 -> 0.001 with the
reference code's base 0.1). Regular drop-and-grow updates continue throughout (reference settings:
drop fraction 0.5, constant, every ``delta_t`` steps). Growth is ``random`` (as in the reference scripts)
or by ``gradient`` (RigL). One ensemble member is the model at the end of each refinement phase
(``member_ends``); the ensemble averages the members' softmax outputs.

EDST sets the optimizer's learning rate itself after every step (base rate x the factor above); give it
a constant schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UserError
from .base import SparseTrainer
from .registry import SPARSE_TRAINERS

GROWTH = ("random", "gradient")


def edst_phases(total: int, members: int, explore_fraction: float) -> tuple[list[int], list[int]]:
    """(start, end) step counts of the refinement phases; the last absorbs the remainder."""
    explore = int(round(total * explore_fraction))
    length = (total - explore) // max(1, members)
    if length < 2:
        raise UserError(f"{total} steps are too few for {members} EDST refinement phases")
    starts = [explore + m * length for m in range(members)]
    return starts, starts[1:] + [total]


@dataclass
class EDSTOptions:
    members: int = field(default=3, metadata={"help": "refinement phases = ensemble members", "group": "edst"})
    explore_fraction: float = field(default=1 / 3, metadata={"help": "exploration share of training", "group": "edst"})
    large_drop: float = field(
        default=0.8, metadata={"help": "drop fraction opening each refinement phase", "group": "edst"}
    )
    edst_grow: str = field(default="random", metadata={"help": "random or gradient growth", "group": "edst"})
    lr_drop: float = field(
        default=0.1, metadata={"help": "lr factor in each phase's first half (squared in the second)", "group": "edst"}
    )


@SPARSE_TRAINERS.register("edst")
class EDST(SparseTrainer):
    name = "edst"
    updates = True
    defaults = {"drop_fraction": 0.5, "decay": "constant", "end_fraction": 1.0}
    options = EDSTOptions

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.ensemble != 1:
            raise UserError("edst is an ensemble from one run: set its size with --members, not --ensemble")
        if cfg.train.lr_schedule != "constant" or cfg.train.warmup:
            raise UserError("edst restarts the learning rate itself: use --lr-schedule constant, no --warmup")

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(
            members=cfg.members,
            explore_fraction=cfg.explore_fraction,
            large_drop=cfg.large_drop,
            grow=cfg.edst_grow,
            lr_drop=cfg.lr_drop,
        )

    @classmethod
    def snapshots(cls, cfg, total: int) -> dict[int, str]:
        _, ends = edst_phases(total, cfg.members, cfg.explore_fraction)
        return {t: f"member_{m}" for m, t in enumerate(ends)}

    @classmethod
    def ensemble_members(cls, cfg) -> list[str]:
        return [f"member_{k}" for k in range(cfg.members)]

    def __init__(
        self,
        model,
        optimizer,
        density: float = 0.1,
        distribution: str | None = None,
        *,
        members: int = 3,
        explore_fraction: float = 1 / 3,
        large_drop: float = 0.8,
        grow: str = "random",
        lr_drop: float = 0.1,
        **kwargs,
    ):
        if members < 1:
            raise UserError(f"--members must be >= 1, got {members}")
        if not 0 <= explore_fraction < 1:
            raise UserError(f"--explore-fraction must be in [0, 1), got {explore_fraction}")
        if not 0 < large_drop < 1:
            raise UserError(f"--large-drop must be in (0, 1), got {large_drop}")
        if grow not in GROWTH:
            raise UserError(f"unknown EDST growth {grow!r}; choose one of: {', '.join(GROWTH)}")
        if not 0 < lr_drop <= 1:
            raise UserError(f"--lr-drop must be in (0, 1], got {lr_drop}")
        self.starts, self.member_ends = edst_phases(int(kwargs["total_steps"]), members, explore_fraction)
        self.members, self.large_drop, self.grow, self.lr_drop = members, large_drop, grow, lr_drop
        self.uses_dense_grad = grow == "gradient"
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        super().__init__(model, optimizer, density, distribution, **kwargs)
        self._set_lr(0)

    def is_update(self, t: int) -> bool:
        return t in self.starts or self.schedule.is_update(t)

    def drop_fraction(self, t: int) -> float:
        return self.large_drop if t in self.starts else self.schedule.fraction(t)

    def lr_factor(self, c: int) -> float:
        """Learning-rate factor of the step after ``c`` completed steps."""
        if c < self.starts[0]:
            return 1.0
        m = max(i for i, s in enumerate(self.starts) if s <= c)
        half = (self.member_ends[m] - self.starts[m]) / 2
        return self.lr_drop if c - self.starts[m] < half else self.lr_drop**2

    def _set_lr(self, c: int) -> None:
        f = self.lr_factor(c)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f

    def end_step(self, t: int) -> None:
        self._set_lr(t)

    def grow_scores(self, t: int, g: torch.Generator) -> list[torch.Tensor]:
        if self.grow == "gradient":
            return self._dense_grads
        return self.random_scores(g)

    def extra_state(self) -> dict:
        return {"base_lrs": self.base_lrs}

    def load_extra_state(self, state: dict) -> None:
        self.base_lrs = state["base_lrs"]

    def after_load(self) -> None:
        self._set_lr(self.step_count)
