"""``sparsevlr`` (Kaur & Salekin 2022, SparseVLR): dynamic sparse training on a verified-robust loss.

A random sparse network (ERK by default) trained from scratch, never dense, on a certified loss (CROWN-IBP
or IBP: the run's ``--certified``, with its eps and kappa schedule); every ``delta_t`` steps the
smallest-magnitude weights are dropped and as many connections grown where the gradient *of that verified
loss* is largest - RigL's rule (drop fraction 0.3 with cosine decay, no updates after 75% of training) on the
loss that SparseVLR optimises. The loss is the training loop's, so the grow scores are its dense gradient:
the one difference from ``rigl`` is that a verified-robust loss is required (a natural loss would make it
RigL). The paper's own repository is not public; its algorithm as published is this rule.
"""

from __future__ import annotations

from ..errors import UserError
from .registry import SPARSE_TRAINERS
from .rigl import RigL


@SPARSE_TRAINERS.register("sparsevlr")
class SparseVLR(RigL):
    name = "sparsevlr"
    step_on_update = True  # its code is not public; the README's runs apply the step (``--step-on-update``)
    records_step_on_update = False

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.train.certified == "none":
            raise UserError(
                "sparsevlr trains on a verified-robust loss: give --certified crown-ibp (or ibp) --cert-eps E"
            )
