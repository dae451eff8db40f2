"""ticketlab: find, train, study and deploy sparse neural networks.

Vocabulary: *density* = fraction of weights kept; *sparsity* = fraction removed = 1 - density.

``ticketlab.prune(model, density=0.1)`` and ``ticketlab.sparse_training(model, optimizer, "rigl", 0.1,
total_steps=T)`` are the one-call ways in (``ticketlab.api``); they are imported on first use, so
``import ticketlab`` (and the CLI's ``--help``) stays free of torch.
"""

__version__ = "0.1.0"
__all__ = ["prune", "sparse_training"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ticketlab' has no attribute {name!r}")
