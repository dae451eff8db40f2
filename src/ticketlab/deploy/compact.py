"""Compaction: a structurally pruned model becomes a physically smaller dense model.

Channels (conv filters, MLP neurons) whose every producing tensor is zero, or whose every reader ignores
them, are removed with all their dependants (BatchNorm entries, next layers' input channels, flatten
blocks, residual partners) by Torch-Pruning, so the small model computes what the masked one computed.
The file is safetensors (plain tensors; Torch-Pruning's pickled state is never used) with a JSON recipe
holding the registered model and the new shape of every layer, so ``load_compact`` rebuilds it, and plain
torch can read the tensors with ``safetensors.torch.load_file``.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
import torch_pruning as tp
from safetensors import safe_open
from torch import nn

from ..errors import UserError
from ..io import save_tensors
from ..models import MODELS, build_model
from ..models.graft import GraftedReLU
from ..sparse import Mask
from ..sparse.groups import channel_groups, dead_channels

FORMAT = "ticketlab-compact-v1"


def compact(model: nn.Module, input_shape: tuple[int, ...], mask: Mask | None = None) -> nn.Module:
    """A smaller copy of ``model`` (on CPU, eval mode) without its dead channels; ``mask`` applied first.

    Each group keeps at least one channel (a zero one if all are dead), so every layer still exists."""
    work = copy.deepcopy(model).cpu().eval()
    params = dict(work.named_parameters())
    with torch.no_grad():
        for n, m in (mask or {}).items():
            params[n].mul_(m.to(params[n].dtype).cpu())
    masked = copy.deepcopy(work)
    fold_constant_neurons_(work)
    groups = channel_groups(work, input_shape)
    dead = dead_channels(work, groups)
    with torch.enable_grad():  # Torch-Pruning traces the autograd graph
        graph = tp.DependencyGraph().build_dependency(work, example_inputs=torch.zeros(1, *input_shape))
    for g in groups:
        idx = dead[g.name].nonzero().flatten().tolist()
        if len(idx) == g.size:
            idx = idx[1:]
        if not idx:
            continue
        root = work.get_submodule(g.name)
        fn = tp.prune_linear_out_channels if isinstance(root, nn.Linear) else tp.prune_conv_out_channels
        graph.get_pruning_group(root, fn, idxs=idx).prune()
    for p in work.parameters():
        p.requires_grad_(True)
    if not _same_outputs(work, masked, input_shape):
        warnings.warn(
            f"compaction changed {type(model).__name__}'s outputs (its channel groups are not ones "
            "Torch-Pruning removes correctly, e.g. attention heads); the masked model is kept uncompacted",
            stacklevel=2,
        )
        for p in masked.parameters():
            p.requires_grad_(True)
        return masked
    return work


# Modules that act on each feature alone in eval mode: a constant neuron stays a constant through them.
_ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.SiLU,
    nn.ELU,
    nn.Identity,
    nn.Dropout,
    nn.BatchNorm1d,
)


@torch.no_grad()
def fold_constant_neurons_(model: nn.Module) -> int:
    """Neurons whose inputs are all pruned but whose bias is not output a constant: add its effect to the next
    Linear layer's bias and zero the neuron, so compaction drops it. Only between two Linear layers of one
    ``nn.Sequential`` joined by per-feature modules (activations, dropout, eval BatchNorm1d), where the
    constant is exactly ``f(bias)``; the model (eval mode) computes the same function. Returns how many."""

    folded = 0
    for seq in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        kids = list(seq.children())
        for i, first in enumerate(kids):
            if not isinstance(first, nn.Linear) or first.bias is None:
                continue
            between, j = [], i + 1
            while j < len(kids) and isinstance(kids[j], (*_ELEMENTWISE, GraftedReLU)):
                between.append(kids[j])
                j += 1
            if j == len(kids) or not isinstance(kids[j], nn.Linear):
                continue
            nxt = kids[j]
            const = (first.weight == 0).all(dim=1) & (first.bias != 0)
            if not const.any():
                continue
            c = first.bias.detach().clone()[None]
            for m in between:
                c = m.eval()(c)
            c = c[0] * const.to(c.dtype)  # the constant outputs of those neurons, 0 elsewhere
            if nxt.bias is None:
                nxt.bias = nn.Parameter(torch.zeros(nxt.out_features, dtype=nxt.weight.dtype))
            nxt.bias.add_(nxt.weight @ c)
            nxt.weight[:, const] = 0
            first.bias[const] = 0
            folded += int(const.sum())
    return folded


def _same_outputs(a: nn.Module, b: nn.Module, input_shape: tuple[int, ...]) -> bool:
    """Whether two models compute the same function, to float rounding, on seeded random inputs."""
    x = torch.randn(4, *input_shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            ya, yb = a(x), b(x)
    except RuntimeError:
        return False
    return ya.shape == yb.shape and bool(((ya - yb).abs() <= 1e-4 * (1 + yb.abs().max())).all())


def widths(model: nn.Module) -> dict[str, list[int]]:
    """Shape of every Linear/Conv ([out, in]) and BatchNorm ([features]) layer, by module name."""
    out = {}
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            out[n] = [m.out_features, m.in_features]
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            out[n] = [m.out_channels, m.in_channels]
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out[n] = [m.num_features]
    return out


def _resized(m: nn.Module, shape: list[int]) -> nn.Module:
    if isinstance(m, nn.Linear):
        return nn.Linear(shape[1], shape[0], bias=m.bias is not None)
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        return type(m)(
            shape[1],
            shape[0],
            m.kernel_size,
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            groups=m.groups,
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
        )
    return type(m)(shape[0], eps=m.eps, momentum=m.momentum, affine=m.affine, track_running_stats=m.track_running_stats)


def build_compact(recipe: dict) -> nn.Module:
    """The registered architecture of ``recipe`` resized to its recorded widths (values uninitialised)."""
    if recipe.get("model") not in MODELS:
        raise UserError(f"the export needs model {recipe.get('model')!r}, which this ticketlab does not have")
    model = build_model(recipe["model"], tuple(recipe["input_shape"]), recipe["num_classes"], seed=0)
    for name, shape in recipe["widths"].items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _resized(parent.get_submodule(child), shape))
    return model


def save_compact(model: nn.Module, path: str | Path, recipe: dict) -> None:
    """Write a compacted registered model; ``recipe`` has model, input_shape, num_classes."""
    recipe = dict(recipe, widths=widths(model))
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_tensors(path, tensors, metadata={"ticketlab": json.dumps({"format": FORMAT, "recipe": recipe})})


def read_export(path: str | Path, fmt: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of an export file of format ``fmt``; a one-line error for anything else."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["ticketlab"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != fmt:
            raise ValueError(meta.get("format"))
        meta["recipe"]["model"]
    except Exception:
        raise UserError(
            f"{path} is not a ticketlab {fmt.split('-')[1]} export (corrupt or foreign file); "
            "export it again with ticketlab export"
        ) from None
    return meta, tensors


def load_compact(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode, recipe) from a file written by ``save_compact``."""
    meta, tensors = read_export(path, FORMAT)
    recipe = meta["recipe"]
    try:
        model = build_compact(recipe)
        model.load_state_dict(tensors, strict=True)
    except (KeyError, RuntimeError, AttributeError, TypeError, IndexError):
        raise UserError(f"{path} does not match model {recipe['model']!r} (corrupt or foreign file)") from None
    return model.eval(), recipe


__all__ = ["build_compact", "compact", "load_compact", "read_export", "save_compact", "widths"]
