"""Verified-sparse methods: sparse networks made for verification - stability-based neuron pruning (Li et al.
2022), linearity grafting (Chen et al. 2022) and Deadwooding (Kaur et al. 2022). SparseVLR (Kaur & Salekin) is
a sparse trainer of ``ticketlab.dst``; the bounds and solvers are ``ticketlab.verify``'s."""

from .deadwood import DeadwoodConfig, Deadwooding, format_deadwood, run_deadwood
from .neurons import NeuronsConfig, format_neurons, run_neurons
from .scores import SCORES, lowest, neuron_scores, nrs, per_channel, stability_scores

__all__ = [
    "DeadwoodConfig",
    "Deadwooding",
    "format_deadwood",
    "run_deadwood",
    "SCORES",
    "NeuronsConfig",
    "format_neurons",
    "lowest",
    "neuron_scores",
    "nrs",
    "per_channel",
    "run_neurons",
    "stability_scores",
]
