"""2:4 semi-structured Linear layers on CUDA (``torch.sparse.to_sparse_semi_structured``).

``semi_structured_(model)`` converts, in place, every Linear layer whose weight is exactly 2:4 sparse along its
input dimension (``ticketlab.sparse.nm_prune`` / ``--pattern 2:4``) to the compressed semi-structured format
that NVIDIA's sparse tensor cores run (Ampere and later), in fp16 or bf16. The model must be on a CUDA device;
anywhere else it is a one-line error. Layers that are not 2:4, or whose shapes the kernels do not take, are
left dense and named in the returned report. ``benchmarks/bench_semi_structured.py`` times 2:4 against dense
matmul over a range of shapes (it pays only for large ones) and skips without CUDA.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.sparse import to_sparse_semi_structured

from ..errors import UserError


def is_2_4(w: torch.Tensor) -> bool:
    """Every group of 4 consecutive weights along the input dimension has at most 2 nonzeros."""
    if w.dim() != 2 or w.shape[1] % 4:
        return False
    return bool(((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


def semi_structured_(model: nn.Module, dtype: torch.dtype = torch.float16) -> dict[str, str]:
    """Convert the 2:4 Linear layers of a CUDA ``model`` (cast to ``dtype``) in place; {layer: what happened}."""
    ref = next(model.parameters())
    if ref.device.type != "cuda":
        raise UserError(
            "2:4 semi-structured layers run on CUDA only (sparse tensor cores); move the model with "
            "--device cuda, or export the sparse or compact form for the CPU"
        )
    return convert_2_4_(model, dtype, to_sparse_semi_structured)


def convert_2_4_(model: nn.Module, dtype: torch.dtype, convert) -> dict[str, str]:
    """Cast ``model`` to ``dtype`` and give every 2:4 Linear layer the weight ``convert(weight)`` (frozen);
    {layer: "2:4", or "dense (why)" for a layer that is not 2:4 or that ``convert`` refuses}."""
    model.to(dtype)
    report = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        w = mod.weight.detach()
        if not is_2_4(w):
            report[name] = "dense (not 2:4)"
            continue
        try:
            mod.weight = nn.Parameter(convert(w), requires_grad=False)
            report[name] = "2:4"
        except (RuntimeError, ValueError) as e:  # shapes or dtypes the kernels do not take
            report[name] = f"dense ({str(e).splitlines()[0][:80]})"
    return report
