"""Channel groups: which tensor slices belong to one prunable channel (or neuron), dependencies included.

Removing output channel ``c`` of a conv also removes entry ``c`` of the BatchNorm after it, input channel
``c`` of every layer that reads it (with the flatten before a Linear, a block of ``H*W`` input features),
and, across a residual add, the same channel of every layer whose output is added to it. Torch-Pruning's
dependency graph tracks this; here it is read once into plain data (``ChannelGroup``: parameter name,
dimension, positions, and the group channel of each position) so that masks, scores and compaction all
agree on one definition of a channel.

A group is named by its root (the first layer whose output channels it holds). The model's output layer is
never a root: its outputs are the classes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from ..sparse import Mask

_ROOTS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class Slice:
    """Positions ``index`` along ``dim`` of parameter ``param``; ``channel[i]`` is the group channel of
    position ``index[i]``."""

    param: str
    dim: int
    index: torch.Tensor
    channel: torch.Tensor
    out: bool  # True when the slice produces the channel (weights rows, biases, norm affine), else it reads it


@dataclass
class ChannelGroup:
    name: str  # the root layer's module name
    size: int  # channels in the group
    slices: list[Slice] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)  # BatchNorm modules whose channels are these
    producers: list[str] = field(default_factory=list)  # Linear/Conv modules whose output channels are these

    def slices_of(self, param: str) -> list[Slice]:
        return [s for s in self.slices if s.param == param]


def output_layer(model: nn.Module) -> str:
    """The name of the last Linear/Conv layer to run: the classifier, never pruned structurally."""
    names = [n for n, m in model.named_modules() if isinstance(m, _ROOTS)]
    if not names:
        raise ValueError("the model has no Linear or Conv layer")
    return names[-1]


def _param_slices(module: nn.Module, name: str, out: bool, idxs: list[int], root_idxs: list[int]) -> list[Slice]:
    index, channel = torch.tensor(idxs, dtype=torch.long), torch.tensor(root_idxs, dtype=torch.long)
    prefix = f"{name}." if name else ""
    slices = []
    if isinstance(module, _NORMS):
        if out and module.affine:
            slices = [
                Slice(prefix + "weight", 0, index, channel, True),
                Slice(prefix + "bias", 0, index, channel, True),
            ]
    elif isinstance(module, _ROOTS):
        if getattr(module, "groups", 1) != 1:
            raise ValueError(f"grouped convolution {name} is not supported by structured pruning")
        if out:
            slices = [Slice(prefix + "weight", 0, index, channel, True)]
            if module.bias is not None:
                slices.append(Slice(prefix + "bias", 0, index, channel, True))
        else:
            slices = [Slice(prefix + "weight", 1, index, channel, False)]
    return slices


def channel_groups(model: nn.Module, input_shape: tuple[int, ...]) -> list[ChannelGroup]:
    """Every prunable channel group of ``model`` (one example has shape ``input_shape``), in module order."""
    work = copy.deepcopy(model).cpu().eval()
    names = {m: n for n, m in work.named_modules()}
    last = work.get_submodule(output_layer(work))
    with torch.enable_grad():  # Torch-Pruning traces the autograd graph
        graph = tp.DependencyGraph().build_dependency(work, example_inputs=torch.zeros(1, *input_shape))
    groups = []
    for group in graph.get_all_groups(ignored_layers=[last], root_module_types=list(_ROOTS)):
        items = list(group.items)
        root = items[0].dep.target.module
        out = ChannelGroup(names[root], _out_channels(root))
        seen = set()
        for item in items:
            module = item.dep.target.module
            if module not in names:
                continue  # an operation (add, flatten, pooling), not a layer
            is_out = graph.is_out_channel_pruning_fn(item.dep.handler)
            key = (names[module], is_out)
            if key in seen:
                continue
            seen.add(key)
            out.slices += _param_slices(
                module, names[module], is_out, [int(i) for i in item.idxs], [int(i) for i in item.root_idxs]
            )
            if is_out and isinstance(module, _NORMS):
                out.norms.append(names[module])
            if is_out and isinstance(module, _ROOTS):
                out.producers.append(names[module])
        groups.append(out)
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return sorted(groups, key=lambda g: order[g.name])


def _out_channels(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def group_mask(
    model: nn.Module, groups: list[ChannelGroup], keep: dict[str, torch.Tensor], base: Mask | None = None
) -> Mask:
    """The parameter mask that removes every channel not in ``keep`` (group name -> bool per channel):
    its producers' rows and biases, its norms' scale and shift, and its readers' input columns.

    ``base`` (an existing mask, e.g. unstructured) is combined with it by AND. Parameters no group touches
    keep their ``base`` entry or are absent."""
    params = dict(model.named_parameters())
    out: Mask = {n: m.clone() for n, m in (base or {}).items()}
    for g in groups:
        k = keep.get(g.name)
        if k is None or bool(k.all()):
            continue
        drop = ~k.to(torch.bool).cpu()
        for s in g.slices:
            p = params[s.param]
            m = out.setdefault(s.param, torch.ones_like(p, dtype=torch.bool))
            pos = s.index[drop[s.channel]].to(m.device)
            m.index_fill_(s.dim, pos, False)
    return out


def dead_channels(model: nn.Module, groups: list[ChannelGroup], mask: Mask | None = None) -> dict[str, torch.Tensor]:
    """Channels that can be removed without changing the model's output, per group (bool, True = dead).

    A channel is dead when every tensor that produces it is zero there (its output is then exactly zero,
    and stays zero through ReLU, pooling and residual adds), or when every layer that reads it ignores it
    (its input columns are all zero). ``mask`` is applied first where given."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    if mask is not None:
        params = {n: (p * mask[n].to(p.dtype) if n in mask else p) for n, p in params.items()}
    dead = {}
    for g in groups:
        for want_out in (True, False):
            zero = torch.ones(g.size, dtype=torch.bool)
            any_slice = False
            for s in g.slices:
                if s.out != want_out:
                    continue
                any_slice = True
                t = params[s.param].index_select(s.dim, s.index.to(params[s.param].device)).cpu()
                nz = t.movedim(s.dim, 0).reshape(len(s.index), -1).ne(0).any(dim=1)
                hit = torch.zeros(g.size, dtype=torch.bool)
                hit[s.channel[nz]] = True
                zero &= ~hit
            if any_slice:
                dead[g.name] = dead.get(g.name, torch.zeros(g.size, dtype=torch.bool)) | zero
    return dead


__all__ = ["ChannelGroup", "Slice", "channel_groups", "dead_channels", "group_mask", "output_layer"]
