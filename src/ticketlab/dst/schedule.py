"""When a dynamic sparse trainer updates its mask, and what fraction of active weights it replaces.

Pure functions of the step count ``t`` (steps completed), so a resumed run needs no schedule state.
Updates happen after steps ``delta_t, 2 delta_t, ...`` up to ``end`` (exclusive of the last step of
training). The drop fraction decays from ``drop_fraction`` at step 0 to 0 at ``end``:

- ``cosine``: ``drop_fraction * (1 + cos(pi t / end)) / 2`` (RigL's default),
- ``linear``: ``drop_fraction * (1 - t / end)``,
- ``constant``: ``drop_fraction`` throughout (SET's original rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError

DECAYS = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class UpdateSchedule:
    """When a sparse trainer updates its mask and how much: every ``delta_t`` steps, dropping a fraction that
    starts at ``drop_fraction`` and decays (``cosine``, ``linear``, ``constant``) to zero at ``end_fraction``
    of ``total_steps``."""

    total_steps: int
    delta_t: int = 100
    drop_fraction: float = 0.3
    decay: str = "cosine"
    end_fraction: float = 0.75  # RigL stops updating the mask after 75% of training

    def __post_init__(self):
        if self.total_steps < 1:
            raise UserError(f"total steps must be >= 1, got {self.total_steps}")
        if self.delta_t < 1:
            raise UserError(f"--delta-t must be >= 1, got {self.delta_t}")
        if not 0 <= self.drop_fraction < 1:
            raise UserError(f"--drop-fraction must be in [0, 1), got {self.drop_fraction}")
        if self.decay not in DECAYS:
            raise UserError(f"unknown --drop-decay {self.decay!r}; choose one of: {', '.join(DECAYS)}")
        if not 0 <= self.end_fraction <= 1:
            raise UserError(f"--end-fraction must be in [0, 1], got {self.end_fraction}")

    @property
    def end(self) -> int:
        return int(self.total_steps * self.end_fraction)

    def is_update(self, t: int) -> bool:
        """Whether the mask is updated right after step ``t`` (1-based count of steps done)."""
        return 0 < t <= self.end and t < self.total_steps and t % self.delta_t == 0 and self.drop_fraction > 0

    def fraction(self, t: int) -> float:
        """Fraction of each layer's active weights dropped (and regrown) at an update after step ``t``."""
        if self.decay == "constant":
            return self.drop_fraction
        progress = min(1.0, t / max(1, self.end))
        if self.decay == "linear":
            return self.drop_fraction * (1 - progress)
        return self.drop_fraction * 0.5 * (1 + math.cos(math.pi * progress))
