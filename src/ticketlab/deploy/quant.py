"""8-bit models: PyTorch's post-training static quantisation (FX graph mode, x86 / fbgemm backend).

``quantize_int8(model, calibration)`` observes activation ranges on calibration inputs and converts
Linear and Conv layers (with their ReLUs fused) to int8 kernels: weights per output channel, activations
per tensor. ``save_int8`` writes the quantised state as plain tensors (int8 values, scales, zero points)
in safetensors with a JSON recipe; ``load_int8`` rebuilds the same graph from the recipe and restores the
state exactly, so nothing is unpickled.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from ..errors import UserError
from ..io import save_tensors
from ..models import build_model
from .compact import build_compact, read_export

FORMAT = "ticketlab-int8-v1"
BACKEND = "x86"


def quantize_int8(model: nn.Module, calibration: torch.Tensor, batch: int = 256) -> nn.Module:
    """An int8 copy of ``model`` (CPU, eval), activation ranges observed on ``calibration`` inputs."""

    torch.backends.quantized.engine = BACKEND
    float_model = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        prepared = prepare_fx(float_model, get_default_qconfig_mapping(BACKEND), (calibration[:1].cpu(),))
        with torch.no_grad():
            for i in range(0, len(calibration), batch):
                prepared(calibration[i : i + batch].cpu())
        return convert_fx(prepared)


def _flatten_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, info = {}, {}

    def put(key: str, t) -> None:
        if isinstance(t, torch.dtype):
            info[key] = {"kind": "dtype", "dtype": str(t).removeprefix("torch.")}
        elif isinstance(t, tuple):
            info[key] = {"kind": "tuple", "length": len(t)}
            for i, v in enumerate(t):
                put(f"{key}.{i}", v)
        elif t is None:
            info[key] = {"kind": "none"}
        elif t.is_quantized:
            tensors[f"{key}.int"] = t.int_repr().contiguous()
            if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                tensors[f"{key}.scales"] = t.q_per_channel_scales().contiguous()
                tensors[f"{key}.zero_points"] = t.q_per_channel_zero_points().contiguous()
                info[key] = {"kind": "qchannel", "axis": t.q_per_channel_axis()}
            else:
                info[key] = {"kind": "qtensor", "scale": t.q_scale(), "zero_point": t.q_zero_point()}
        else:
            tensors[key] = t.detach().contiguous()
            info[key] = {"kind": "tensor"}

    for k, v in model.state_dict().items():
        put(k, v)
    return tensors, info


def _unflatten(key: str, tensors: dict, info: dict):
    d = info[key]
    kind = d["kind"]
    if kind == "dtype":
        return getattr(torch, d["dtype"])
    if kind == "tuple":
        return tuple(_unflatten(f"{key}.{i}", tensors, info) for i in range(d["length"]))
    if kind == "none":
        return None
    if kind == "tensor":
        return tensors[key]
    if kind == "qchannel":
        return torch._make_per_channel_quantized_tensor(
            tensors[f"{key}.int"], tensors[f"{key}.scales"], tensors[f"{key}.zero_points"], d["axis"]
        )
    return torch._make_per_tensor_quantized_tensor(tensors[f"{key}.int"], d["scale"], d["zero_point"])


def save_int8(model: nn.Module, path: str | Path, recipe: dict) -> None:
    """Write a model from ``quantize_int8``; ``recipe``: model, input_shape, num_classes (+ widths)."""
    tensors, info = _flatten_state(model)
    save_tensors(path, tensors, metadata={"ticketlab": json.dumps({"format": FORMAT, "recipe": recipe, "state": info})})


def load_int8(path: str | Path) -> tuple[nn.Module, dict]:
    """(int8 model, recipe) from a file written by ``save_int8``."""

    meta, tensors = read_export(path, FORMAT)
    recipe = meta["recipe"]
    try:
        float_model = (
            build_compact(recipe)
            if "widths" in recipe
            else build_model(recipe["model"], tuple(recipe["input_shape"]), recipe["num_classes"], seed=0)
        )
        model = quantize_int8(float_model, torch.zeros(1, *recipe["input_shape"]))
        state = OrderedDict(
            (k, _unflatten(k, tensors, meta["state"]))
            for k in meta["state"]
            if "." not in k or k.rsplit(".", 1)[0] not in meta["state"]
        )
        state._metadata = model.state_dict()._metadata  # module versions: quantised layers read them
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, AttributeError, TypeError, ValueError, IndexError):
        raise UserError(f"{path} does not match model {recipe['model']!r} (corrupt or foreign file)") from None
    return model, recipe


__all__ = ["load_int8", "quantize_int8", "save_int8"]
