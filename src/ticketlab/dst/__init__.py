"""Dynamic sparse training: sparse from scratch at a fixed parameter count, the mask changing as it trains.

``make(name, model, optimizer, density=..., total_steps=...)`` returns a sparse trainer; call its
``step()`` after every ``optimizer.step()`` (see ``base`` for a full example). Methods (SPARSE_TRAINERS):
static, set, rigl, sparsevlr (RigL on a certified loss), ctre, acdc, edst, gmp (Zhu & Gupta's
gradual magnitude pruning, dense to sparse), snfs (Dettmers & Zettlemoyer's sparse momentum). ``run_dst`` /
``ticketlab dst`` train them on ticketlab's models and datasets, with independent-run ensembles (FreeTickets'
DST ensemble) and calibration metrics.
"""

from . import acdc, ctre, edst, evolutionary, gmp, rigl, snfs, sparsevlr, static  # noqa: F401  (registration)
from .base import SparseTrainer
from .registry import SPARSE_TRAINERS, make
from .schedule import UpdateSchedule

__all__ = ["SPARSE_TRAINERS", "SparseTrainer", "UpdateSchedule", "make"]
