"""A ticket as a seed and a mask: one safetensors file holding the model recipe and the coded mask.

The recipe (registered model name, input shape, class count, init scheme and seed) rebuilds the
initial weights bit for bit on CPU; the mask is Golomb-coded (``golomb.py``). Optionally the trained
values of the kept weights (fp32 or fp16) and the unmasked parameters ride along, for deployment.
Layout: tensors ``mask/<param>`` (uint8 code), ``kept/<param>`` (1-D kept values, row-major order),
``dense/<name>`` (other state: biases, norm layers); metadata key ``ticketlab`` = JSON header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..data import load_dataset
from ..errors import UserError
from ..io import _atomic_write, load_tensors, read_json
from ..models import MODELS, build_model
from .golomb import binary_entropy, decode, encode, golomb_parameter

FORMAT, VERSION = "ticketlab-ticket", 1
WEIGHT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


@dataclass
class Ticket:
    model: nn.Module  # holds the rebuilt initial weights
    mask: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor] | None  # trained state (pruned entries zero), when packed with weights
    header: dict


def code_mask(mask: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors, layers = {}, []
    for name, m in mask.items():
        flat = m.flatten().cpu().numpy().astype(bool)
        kept = int(flat.sum())
        symbol = 1 if kept <= flat.size / 2 else 0  # code the rarer symbol's positions
        positions = np.flatnonzero(flat if symbol else ~flat)
        M = golomb_parameter(positions.size / flat.size)
        data, nbits = encode(positions, M)
        tensors[f"mask/{name}"] = (
            torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
        )
        layers.append(
            {
                "name": name,
                "shape": list(m.shape),
                "kept": kept,
                "symbol": symbol,
                "count": int(positions.size),
                "M": M,
                "nbits": nbits,
            }
        )
    return tensors, layers


def decode_mask(tensors: dict[str, torch.Tensor], layers: list[dict]) -> dict[str, torch.Tensor]:
    mask = {}
    for layer in layers:
        numel = int(np.prod(layer["shape"]))
        data = tensors[f"mask/{layer['name']}"].numpy().tobytes()
        positions = decode(data, layer["count"], layer["M"], layer["nbits"])
        if positions.size and (positions[-1] >= numel or positions[0] < 0):
            raise ValueError("position out of range")
        flat = np.zeros(numel, dtype=bool) if layer["symbol"] else np.ones(numel, dtype=bool)
        flat[positions] = bool(layer["symbol"])
        if int(flat.sum()) != layer["kept"]:
            raise ValueError("kept count mismatch")
        mask[layer["name"]] = torch.from_numpy(flat).view(layer["shape"])
    return mask


def pack(
    recipe: dict,
    mask: dict[str, torch.Tensor],
    out: str | Path,
    final: dict[str, torch.Tensor] | None = None,
    weights: str | None = None,
) -> dict:
    """Write a ticket file: ``recipe`` = {model, input_shape, num_classes, seed, ...}; returns size figures.

    With ``weights`` ("fp32"/"fp16") the kept entries of ``final`` and its unmasked tensors are stored too.
    """
    if weights is not None and weights not in WEIGHT_DTYPES:
        raise UserError(f"--weights must be one of: {', '.join(WEIGHT_DTYPES)}")
    tensors, layers = code_mask(mask)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "init": "glorot_normal",
        **recipe,
        "layers": layers,
        "weights": weights,
    }
    if weights is not None:
        dt = WEIGHT_DTYPES[weights]
        for name, t in final.items():
            if name in mask:
                tensors[f"kept/{name}"] = t[mask[name].to(t.device)].to(dt).contiguous()
            else:
                tensors[f"dense/{name}"] = t.to(dt) if t.is_floating_point() else t
    _atomic_write(Path(out), lambda tmp: _save(tensors, header, tmp))
    return describe(header, Path(out))


def pack_run(run_dir: str | Path, round_: int, out: str | Path, weights: str | None = None) -> dict:
    """Pack round ``round_`` of an IMP run into ``out``; returns the size figures."""
    run_dir = Path(run_dir)
    stored = read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else None
    if not isinstance(stored, dict) or stored.get("kind") != "imp":
        raise UserError(f"{run_dir} is not an IMP run directory; give one made by `ticketlab imp`")
    cfg = stored["config"]
    if cfg["model"] not in MODELS:
        raise UserError(f"{run_dir} uses model {cfg['model']!r}; only registered models can be rebuilt from a seed")
    rdir = run_dir / f"round_{round_:02d}"
    if not (rdir / "metrics.json").exists():
        raise UserError(f"round {round_} of {run_dir} has not finished; pick a finished round (`ticketlab show`)")
    if weights is not None and weights not in WEIGHT_DTYPES:
        raise UserError(f"--weights must be one of: {', '.join(WEIGHT_DTYPES)}")
    shape, classes = _shape_of(cfg)
    recipe = {
        "model": cfg["model"],
        "input_shape": shape,
        "num_classes": classes,
        "seed": cfg["seed"],
        "round": round_,
        "dataset": cfg["dataset"],
    }
    final = load_tensors(rdir / "final.safetensors") if weights is not None else None
    return pack(recipe, load_tensors(rdir / "mask.safetensors"), out, final=final, weights=weights)


def _shape_of(cfg: dict) -> tuple[list[int], int]:
    """The recipe's input shape and class count: those of the run's dataset."""

    d = load_dataset(cfg["dataset"], quiet=True)
    return list(d.input_shape), d.num_classes


def _save(tensors: dict, header: dict, path: str) -> None:
    save_file(tensors, path, metadata={"ticketlab": json.dumps(header)})


def read_ticket(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        header = json.loads(meta["ticketlab"])
    except (SafetensorError, OSError, KeyError, ValueError, json.JSONDecodeError):
        raise UserError(
            f"{path} is not a ticketlab ticket (corrupt or foreign); pack one with `ticketlab pack`"
        ) from None
    if header.get("format") != FORMAT:
        raise UserError(f"{path} is not a ticketlab ticket; pack one with `ticketlab pack`")
    if header.get("version") != VERSION:
        raise UserError(f"{path} is a version {header.get('version')} ticket; this ticketlab reads version {VERSION}")
    return header, tensors


def unpack_ticket(path: str | Path) -> Ticket:
    """Rebuild the initial weights from the recipe, decode the mask, restore weights if packed."""
    header, tensors = read_ticket(path)
    if header["init"] != "glorot_normal":
        raise UserError(f"{path}: unknown init scheme {header['init']!r}")
    try:
        model = build_model(header["model"], tuple(header["input_shape"]), header["num_classes"], seed=header["seed"])
        mask = decode_mask(tensors, header["layers"])
    except (KeyError, ValueError, IndexError, RuntimeError) as e:
        raise UserError(f"{path} is corrupt ({type(e).__name__}: {e}); pack it again") from None
    params = dict(model.named_parameters())
    if any(n not in params or params[n].shape != m.shape for n, m in mask.items()):
        raise UserError(f"{path}: the mask does not fit model {header['model']}; pack it again")
    weights = None
    if header.get("weights"):
        state = model.state_dict()
        weights = {}
        for name, ref in state.items():
            if name in mask:
                w = torch.zeros_like(ref)
                w[mask[name]] = tensors[f"kept/{name}"].to(ref.dtype)
                weights[name] = w
            else:
                weights[name] = tensors[f"dense/{name}"].to(ref.dtype)
    return Ticket(model, mask, weights, header)


def describe(header: dict, path: Path) -> dict:
    """Size figures: bits per prunable weight vs the binary entropy of each layer's density."""
    numel = sum(int(np.prod(L["shape"])) for L in header["layers"])
    kept = sum(L["kept"] for L in header["layers"])
    mask_bits = sum(L["nbits"] for L in header["layers"])
    h_bits = sum(
        int(np.prod(L["shape"])) * binary_entropy(L["kept"] / int(np.prod(L["shape"]))) for L in header["layers"]
    )
    return {
        "file_bytes": path.stat().st_size,
        "prunable_weights": numel,
        "kept": kept,
        "density": kept / numel,
        "mask_bits": mask_bits,
        "bits_per_weight": mask_bits / numel,
        "entropy_bits_per_weight": h_bits / numel,
        "ratio_to_entropy": mask_bits / h_bits if h_bits else float("nan"),
        "weights": header.get("weights"),
    }
