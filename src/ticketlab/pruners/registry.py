"""The pruning-at-initialization registry: name -> scorer(model, names, batches, generator) -> scores."""

from ..registry import Registry

PRUNERS: Registry = Registry("pruner")
