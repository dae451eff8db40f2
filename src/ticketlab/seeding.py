"""Independent, reproducible seeds for each purpose (init, pruning ties, controls) from one run seed."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *tags: object) -> int:
    h = hashlib.sha256("/".join(map(str, (seed,) + tags)).encode()).digest()
    return int.from_bytes(h[:8], "little") % (2**63)


def generator(seed: int, *tags: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *tags))
