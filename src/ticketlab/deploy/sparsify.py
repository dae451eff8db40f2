"""``sparsify(model)``: a copy of a model whose Linear and convolution layers are sparse layers (``sparse``,
``sparse_conv``) holding only their kept weights, each layer's kernel chosen by timing; ``sparse_layers``
lists them."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .sparse import SparseLinear, tune_
from .sparse_conv import SparseConv


@torch.no_grad()
def sparsify(
    model: nn.Module,
    mask: dict[str, torch.Tensor] | None = None,
    *,
    tune: bool = True,
    input_shape: tuple[int, ...] | None = None,
    batch_sizes=(1, 256),
    repeats: int = 15,
    convs: bool = True,
) -> nn.Module:
    """A copy of ``model`` (eval mode) whose Linear layers (and, with ``convs``, Conv1d/Conv2d layers) are
    sparse layers holding only their kept weights (weights times ``mask`` if given). With ``tune``, each
    layer's kernel per batch size is chosen by timing them on this machine: in place in the model when
    ``input_shape`` (one example's shape) is given, else on random inputs (Linear layers only)."""
    out = copy.deepcopy(model).eval()
    for name, module in list(out.named_modules()):
        for child_name, child in list(module.named_children()):
            is_conv = (
                convs
                and isinstance(child, (nn.Conv1d, nn.Conv2d))
                and child.groups == 1
                and child.padding_mode == "zeros"
                and not isinstance(child.padding, str)
            )
            if not (isinstance(child, nn.Linear) or is_conv):
                continue
            full = f"{name}.{child_name}" if name else child_name
            w = child.weight.detach()
            if mask is not None and f"{full}.weight" in mask:
                w = w * mask[f"{full}.weight"].to(w.dtype)
            setattr(module, child_name, SparseConv(child, w) if is_conv else SparseLinear(w, child.bias))
    if tune and input_shape is not None:
        tune_model_(out, tuple(input_shape), batch_sizes, repeats)
    elif tune:
        if any(type(m).__name__ == "SparseConv" for m in out.modules()):
            raise ValueError("sparse convolutions are tuned in the model: give input_shape")
        for layer in sparse_layers(out).values():
            tune_(layer, batch_sizes, repeats)
    return out


def sparse_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's sparse layers (SparseLinear, SparseConv) by name; a conv's inner matrix is not listed."""
    out = {}
    for n, m in model.named_modules():
        if isinstance(m, SparseConv) or (isinstance(m, SparseLinear) and not n.endswith("core")):
            out[n] = m
    return out


@torch.no_grad()
def tune_model_(
    model: nn.Module, input_shape: tuple[int, ...], batch_sizes=(1, 256), repeats: int = 15, seed: int = 0
) -> dict[str, dict]:
    """Tune every sparse layer in the order the model runs them, each on the input it really receives
    (an earlier layer's choice changes a later layer's input layout: CSR outputs are transposed views).
    Returns the timings by layer name."""
    layers = sparse_layers(model)
    names = {m: n for n, m in layers.items()}
    g = torch.Generator().manual_seed(seed)
    device = next(iter(model.buffers())).device if layers else torch.device("cpu")
    samples = {b: torch.randn(b, *input_shape, generator=g).to(device) for b in batch_sizes}
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: order.append(mod)) for m in layers.values()]
    try:
        model(samples[batch_sizes[0]])
    finally:
        for h in hooks:
            h.remove()
    timings = {}
    for layer in dict.fromkeys(order):  # execution order, each once
        seen: dict[int, torch.Tensor] = {}
        hook = layer.register_forward_pre_hook(lambda mod, inp: seen.setdefault(inp[0].shape[0], inp[0]))
        try:
            for b in batch_sizes:
                model(samples[b])
        finally:
            hook.remove()
        timings[names[layer]] = tune_(layer, batch_sizes, repeats, seed, inputs=seen)
    return timings
