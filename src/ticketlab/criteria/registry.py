"""The mask-criterion registry: name -> score(w_init, w_final, kept, generator) -> tensor (higher = keep)."""

from ..registry import Registry

CRITERIA: Registry = Registry("criterion")
