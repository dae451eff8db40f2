"""Training hyperparameters (a dataclass whose fields become CLI flags)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
DEFAULT_ITERATIONS = 2000


@dataclass
class TrainConfig:
    optimizer: str = field(default="adam", metadata={"help": f"one of {', '.join(OPTIMIZERS)}"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 (sgd, adam) or decoupled (adamw) decay"})
    batch_size: int = field(default=100, metadata={"help": "examples per step"})
    iterations: int | None = field(default=None, metadata={"help": "training steps (or give --epochs; default 2000)"})
    epochs: float | None = field(default=None, metadata={"help": "training length in epochs"})
    lr_schedule: str = field(default="constant", metadata={"help": f"one of {', '.join(SCHEDULES)}"})
    milestones: list[int] = field(default_factory=list,
                                  metadata={"help": "step schedule: iterations at which lr *= gamma (comma list)"})
    gamma: float = field(default=0.1, metadata={"help": "step schedule factor"})
    warmup: int = field(default=0, metadata={"help": "linear lr warmup iterations"})
    eval_every: int = field(default=100, metadata={"help": "evaluate validation and test every N iterations"})

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise UserError(f"unknown lr schedule {self.lr_schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise UserError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise UserError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.iterations is not None and self.epochs is not None:
            raise UserError("give --iterations or --epochs, not both")
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"--iterations must be >= 1, got {self.iterations}")
        if self.epochs is not None and not self.epochs > 0:
            raise UserError(f"--epochs must be > 0, got {self.epochs}")
        if self.eval_every < 1:
            raise UserError(f"--eval-every must be >= 1, got {self.eval_every}")
        if self.warmup < 0:
            raise UserError(f"--warmup must be >= 0, got {self.warmup}")

    def steps_per_epoch(self, n_train: int) -> int:
        return max(1, n_train // self.batch_size)

    def total_iterations(self, n_train: int) -> int:
        """The budget in steps: ``iterations``, else ``epochs`` x steps per epoch, else 2000 steps."""
        if self.iterations is not None:
            return self.iterations
        if self.epochs is None:
            return DEFAULT_ITERATIONS
        return max(1, int(round(self.epochs * self.steps_per_epoch(n_train))))
