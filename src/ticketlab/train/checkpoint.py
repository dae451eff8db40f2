"""Mid-training checkpoints: model, optimizer state and metric history in one safetensors file.

One file (JSON parts in its metadata) written atomically, so a kill never leaves a half checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ..errors import UserError
from ..io import save_tensors


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Checkpointer:
    """Saves every ``every`` iterations to ``path``; ``load`` restores into a model and optimizer."""

    def __init__(self, path: str | Path, every: int = 2000):
        self.path = Path(path)
        self.every = max(1, int(every))
        self.kernels: dict[str, str] | None = None  # --kernels auto's per-layer choices, from the loaded checkpoint

    def save(
        self,
        it: int,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        history: list[dict],
        sparse=None,
        kernels: dict[str, str] | None = None,
    ) -> None:
        """``sparse``: a dynamic sparse trainer whose ``state_dict()`` is saved alongside; ``kernels``: the
        per-layer kernels ``--kernels auto`` chose, so a resumed run makes the same choice."""
        opt_tensors, opt_meta = optimizer_to_flat(opt)
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | opt_tensors
        meta = {"iteration": str(it), "history": json.dumps(history), "optimizer": json.dumps(opt_meta)}
        if kernels is not None:
            meta["kernels"] = json.dumps(kernels)
        if sparse is not None:
            dst_tensors, meta["dst"] = sparse.state_dict()
            tensors |= {f"dst.{k}": v for k, v in dst_tensors.items()}
        save_tensors(self.path, tensors, metadata=meta)

    def load(self, model: nn.Module, opt: torch.optim.Optimizer, sparse=None) -> tuple[int, list[dict]] | None:
        """Restore and return (iteration, history), or None when there is no checkpoint."""
        if not self.path.exists():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            it = int(meta["iteration"])
            history = json.loads(meta["history"])
            opt_meta = json.loads(meta["optimizer"])
            device = next(model.parameters()).device
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            optimizer_from_flat(opt, {k: v.to(device) for k, v in tensors.items() if k.startswith("opt.")}, opt_meta)
            if sparse is not None:
                sparse.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("dst.")}, meta["dst"])
            kernels = json.loads(meta["kernels"]) if "kernels" in meta else None
            if kernels is not None and not (
                isinstance(kernels, dict) and all(v in ("sparse", "dense") for v in kernels.values())
            ):
                raise ValueError("kernels")
            self.kernels = kernels
        except Exception as e:  # a foreign or damaged file: say so, do not guess
            raise UserError(
                f"checkpoint {self.path} is corrupt or foreign ({type(e).__name__}); "
                "delete it to restart this training from its beginning"
            ) from None
        return it, history

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
