"""Tickets stored as a seed and an entropy-coded mask (``ticketlab pack`` / ``unpack``)."""

from .golomb import binary_entropy, golomb_parameter
from .pack import Ticket, code_mask, decode_mask, describe, pack, pack_run, read_ticket, unpack_ticket

__all__ = [
    "Ticket",
    "binary_entropy",
    "code_mask",
    "decode_mask",
    "describe",
    "golomb_parameter",
    "pack",
    "pack_run",
    "read_ticket",
    "unpack_ticket",
]
