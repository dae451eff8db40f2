"""Exported models as one safetensors file: tensors plus a JSON recipe, loadable without pickle.

CSR indices are stored as int32 (8 bytes per kept weight with its fp32 value). The recipe names a
registered model (``model``, ``input_shape``, ``num_classes``, and ``widths`` when the model was compacted
first), so ``load_sparse`` rebuilds the architecture, swaps in ``SparseLinear`` / ``SparseConv`` layers from
their stored CSR components (no dense weight is formed) with their measured kernel choices, and loads
every other tensor strictly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..io import save_tensors
from ..models import MODELS, build_model
from .compact import build_compact, read_export
from .paths import FastestPath
from .sparse import SparseLinear
from .sparse_conv import SparseConv
from .sparsify import sparse_layers

FORMAT = "ticketlab-sparse-v1"
ONNX_KEY = "__onnx_model"  # the FastestPath's ONNX model (uint8 bytes)


def save_sparse(model: nn.Module, path: str | Path, recipe: dict) -> None:
    """Write a sparsified registered model (``recipe``: model, input_shape, num_classes); a ``FastestPath``
    keeps its per-batch-size paths and its ONNX model (a uint8 tensor) in the file."""
    meta = {"format": FORMAT, "recipe": recipe, "layers": {}}
    extra = {}
    if isinstance(model, FastestPath):
        meta["paths"] = {str(b): p for b, p in model.paths.items()}
        extra[ONNX_KEY] = model.onnx_model
        model = model.eager
    layers = sparse_layers(model)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()} | extra
    for n, m in layers.items():
        core, prefix = (m.core, f"{n}.core") if isinstance(m, SparseConv) else (m, n)
        meta["layers"][n] = {
            "type": "conv" if isinstance(m, SparseConv) else "linear",
            "shape": [core.out_features, core.in_features],
            "bias": m.bias is not None,
            "kernels": {str(b): k for b, k in m.kernels.items()},
            "core_kernels": {str(b): k for b, k in core.kernels.items()},
        }
        # indices as int32 in the file (half the bytes); int64 again when loaded
        if core.in_features >= 2**31 or core.nnz >= 2**31:
            raise UserError(f"layer {n} is too large for 32-bit indices")
        tensors[f"{prefix}.crow_indices"] = core.crow_indices.to(torch.int32)
        tensors[f"{prefix}.col_indices"] = core.col_indices.to(torch.int32)
    save_tensors(path, tensors, metadata={"ticketlab": json.dumps(meta)})


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, child = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), child


def load_sparse(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode, recipe) from a file written by ``save_sparse``."""
    meta, tensors = read_export(path, FORMAT)
    recipe = meta["recipe"]
    onnx_model = tensors.pop(ONNX_KEY, None)
    if recipe.get("model") not in MODELS:
        raise UserError(f"{path} needs model {recipe.get('model')!r}, which this ticketlab does not have")
    try:
        model = (
            build_compact(recipe)
            if "widths" in recipe
            else build_model(recipe["model"], tuple(recipe["input_shape"]), recipe["num_classes"], seed=0)
        )
        for name, info in meta["layers"].items():
            parent, child = _parent(model, name)
            conv = info.get("type") == "conv"
            prefix = f"{name}.core" if conv else name
            core = SparseLinear.from_csr(
                tensors.pop(f"{prefix}.crow_indices"),
                tensors.pop(f"{prefix}.col_indices"),
                tensors.pop(f"{prefix}.values"),
                tuple(info["shape"]),
                None if conv or not info["bias"] else tensors.pop(f"{name}.bias"),
                {int(b): k for b, k in info.get("core_kernels", info["kernels"]).items()},
            )
            core.csr()  # checks the CSR invariants (index ranges, row offsets) now
            if conv:
                template = getattr(parent, child)
                if not isinstance(template, (nn.Conv1d, nn.Conv2d)):
                    raise TypeError(name)
                layer = SparseConv(template, core=core, kernels={int(b): k for b, k in info["kernels"].items()})
                layer.bias = tensors.pop(f"{name}.bias") if info["bias"] else None
            else:
                layer = core
            setattr(parent, child, layer)
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        missing = [k for k in missing if not any(k.startswith(f"{n}.") for n in meta["layers"])]
        if missing or unexpected:
            raise KeyError(missing or unexpected)
        if "paths" in meta:
            if onnx_model is None or onnx_model.dtype != torch.uint8 or onnx_model.dim() != 1:
                raise KeyError(ONNX_KEY)
            model = FastestPath(model.eval(), onnx_model, {int(b): p for b, p in meta["paths"].items()})
    except (KeyError, RuntimeError, AttributeError, TypeError, ValueError, IndexError):
        raise UserError(f"{path} does not match model {recipe['model']!r} (corrupt or foreign file)") from None
    return model.eval(), recipe


def file_bytes(path: str | Path) -> int:
    return Path(path).stat().st_size


__all__ = ["file_bytes", "load_sparse", "save_sparse"]
