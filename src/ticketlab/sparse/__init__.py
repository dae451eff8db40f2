"""The sparse core: masks, keeping pruned weights at zero, and turning scores into masks."""

from .enforce import MaskEnforcer
from .mask import (
    Mask,
    apply_mask_,
    density,
    density_report,
    from_torch_prune,
    kept,
    layer_densities,
    ones_mask,
    prunable_names,
    sparsity,
    to_torch_prune,
    total,
)
from .prune import (
    global_prune,
    keep_count,
    layerwise_prune,
    magnitude_scores,
    nm_prune,
    parse_pattern,
    random_mask_like,
    select_topk_mask,
    topk_mask,
)

__all__ = [
    "Mask",
    "MaskEnforcer",
    "apply_mask_",
    "density",
    "density_report",
    "from_torch_prune",
    "kept",
    "layer_densities",
    "ones_mask",
    "prunable_names",
    "sparsity",
    "to_torch_prune",
    "total",
    "global_prune",
    "keep_count",
    "layerwise_prune",
    "magnitude_scores",
    "nm_prune",
    "parse_pattern",
    "random_mask_like",
    "select_topk_mask",
    "topk_mask",
]
