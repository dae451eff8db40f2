"""Module hooks that only watch: the mark that tells verification a hook changes nothing.

``to_ops`` (verify) refuses a module that carries a forward hook or pre-hook, since a hook may change what the
module computes (torch.nn.utils.prune's reparametrisation does). ticketlab's own recorders of shapes and
activations are marked with ``observes_only`` so the models they watch can still be verified.
"""


def observes_only(fn):
    """Mark a forward hook or pre-hook as one that records and changes nothing; returns ``fn``."""
    fn.observes_only = True
    return fn


def is_observer(hook) -> bool:
    """Whether ``hook`` (a function or bound method) was marked with ``observes_only``."""
    return bool(getattr(hook, "observes_only", False))
