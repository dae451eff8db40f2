"""ticketlab: find, train, study and deploy sparse neural networks.

Vocabulary: *density* = fraction of weights kept; *sparsity* = fraction removed = 1 - density.
"""

__version__ = "0.1.0"
