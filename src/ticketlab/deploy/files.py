"""Exported models as one safetensors file: tensors plus a JSON recipe, loadable without pickle.

CSR indices are stored as int32 (8 bytes per kept weight with its fp32 value). The recipe names a
registered model (``model``, ``input_shape``, ``num_classes``), so ``load_sparse``
rebuilds the architecture, swaps in ``SparseLinear`` layers from their stored CSR components (no dense
weight is formed) with their measured kernel choices, and loads every other tensor strictly.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ..errors import UserError
from ..io import save_tensors
from ..models import MODELS, build_model
from .sparse import SparseLinear, sparse_layers

FORMAT = "ticketlab-sparse-v1"


def save_sparse(model: nn.Module, path: str | Path, recipe: dict) -> None:
    """Write a sparsified registered model (``recipe``: model, input_shape, num_classes)."""
    layers = sparse_layers(model)
    meta = {"format": FORMAT, "recipe": recipe,
            "layers": {n: {"shape": [m.out_features, m.in_features], "kernels": {str(b): k for b, k in m.kernels.items()},
                           "bias": m.bias is not None} for n, m in layers.items()}}
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    for n, m in layers.items():  # indices as int32 in the file (half the bytes); int64 again when loaded
        if m.in_features >= 2 ** 31 or m.nnz >= 2 ** 31:
            raise UserError(f"layer {n} is too large for 32-bit indices")
        tensors[f"{n}.crow_indices"] = m.crow_indices.to(torch.int32)
        tensors[f"{n}.col_indices"] = m.col_indices.to(torch.int32)
    save_tensors(path, tensors, metadata={"ticketlab": json.dumps(meta)})


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, child = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), child


def load_sparse(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode, recipe) from a file written by ``save_sparse``."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["ticketlab"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != FORMAT:
            raise ValueError(meta.get("format"))
        recipe = meta["recipe"]
    except Exception:
        raise UserError(f"{path} is not a ticketlab sparse export (corrupt or foreign file); "
                        "export it again with ticketlab") from None
    if recipe.get("model") not in MODELS:
        raise UserError(f"{path} needs model {recipe.get('model')!r}, which this ticketlab does not have")
    model = build_model(recipe["model"], tuple(recipe["input_shape"]), recipe["num_classes"], seed=0)
    try:
        for name, info in meta["layers"].items():
            parent, child = _parent(model, name)
            layer = SparseLinear.from_csr(tensors.pop(f"{name}.crow_indices"), tensors.pop(f"{name}.col_indices"),
                                          tensors.pop(f"{name}.values"), tuple(info["shape"]),
                                          tensors.pop(f"{name}.bias") if info["bias"] else None,
                                          {int(b): k for b, k in info["kernels"].items()})
            layer.csr()  # checks the CSR invariants (index ranges, row offsets) now
            setattr(parent, child, layer)
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        missing = [k for k in missing if not any(k.startswith(f"{n}.") for n in meta["layers"])]
        if missing or unexpected:
            raise KeyError(missing or unexpected)
    except (KeyError, RuntimeError, AttributeError, TypeError):
        raise UserError(f"{path} does not match model {recipe['model']!r} (corrupt or foreign file)") from None
    return model.eval(), recipe


def file_bytes(path: str | Path) -> int:
    return Path(path).stat().st_size


__all__ = ["file_bytes", "load_sparse", "save_sparse"]
