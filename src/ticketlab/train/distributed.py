"""Data-parallel training across the processes ``torchrun`` starts: rank 0 drives, the other ranks follow.

Rank 0 runs the command as usual - run directories, masks, pruning, evaluation, checkpoints, every file - and
at each training it hands the other ranks what they need to take part: the model (rebuilt from its registry
name and loaded with rank 0's state, optimizer state included after a resume), the mask, the settings, the
seed and budget, and the dataset (sent once). Every step each rank takes its share of the same global batch
(one data order, drawn from the seed), computes its examples' loss, and the gradients are summed across ranks
by one flattened all-reduce (each rank's loss is its examples' sum / the global batch size, so the sum is the
global batch's mean gradient, as one process computes it); then every rank applies the same masked optimizer
step. A sparse trainer (RigL, SET, AC/DC, ...) runs on rank 0 only - its masks, drop and grow, dense phases -
and its weights are broadcast after every step, the other ranks only computing gradients. A static mask is
sent from rank 0 and checked equal on every rank; the weights are checked equal at every evaluation. Only
rank 0 writes files, so a run resumes from rank 0's checkpoint as any run does.

This averages gradients as ``DistributedDataParallel`` does, without its module wrapper: the adversarial and
certified losses run extra forward/backward passes per step (attacks, bounds) whose parameter gradients DDP's
hooks would also try to reduce.

Messages are JSON and raw tensors (no pickle). Backends: gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import torch
import torch.distributed as dist
from torch import nn

from ..data import Dataset
from ..errors import UserError
from ..models import build_model
from ..models.graft import graft_from_state
from .checkpoint import optimizer_from_flat, optimizer_to_flat
from .config import TrainConfig

_data_tokens: dict[int, tuple[str, object]] = {}  # rank 0: id(dataset) -> (token, the dataset, kept alive)


def requested() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def init(device: str) -> str:
    """Join torchrun's process group (gloo for CPU, NCCL for CUDA); returns this rank's device."""
    if str(device).startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    return device


def _comm() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# -- messages: JSON and tensors, broadcast from rank 0 --------------------------------------------------------
def _json(obj=None):
    if rank() == 0:
        raw = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8)
        n = torch.tensor([raw.numel()], dtype=torch.long, device=_comm())
    else:
        n = torch.zeros(1, dtype=torch.long, device=_comm())
    dist.broadcast(n, 0)
    buf = raw.to(_comm()) if rank() == 0 else torch.empty(int(n.item()), dtype=torch.uint8, device=_comm())
    dist.broadcast(buf, 0)
    return obj if rank() == 0 else json.loads(bytes(buf.cpu().tolist()).decode())


def _tensors(tensors: dict[str, torch.Tensor] | None = None, device="cpu") -> dict[str, torch.Tensor]:
    """Broadcast a name -> tensor dict from rank 0 (bool sent as uint8); returns it on ``device``."""
    head = _json(
        {n: [list(t.shape), str(t.dtype).removeprefix("torch.")] for n, t in tensors.items()} if rank() == 0 else None
    )
    out = {}
    for name, (shape, dtype) in head.items():
        dt = getattr(torch, dtype)
        wire = torch.uint8 if dt == torch.bool else dt
        if rank() == 0:
            buf = tensors[name].detach().to(_comm(), wire).contiguous()
        else:
            buf = torch.empty(shape, dtype=wire, device=_comm())
        dist.broadcast(buf, 0)
        out[name] = buf.to(device=device, dtype=dt)
    return out


def _checksum(tensors: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        acc = torch.zeros(2, dtype=torch.float64, device=_comm())
        for i, t in enumerate(tensors):
            t = t.detach().double().flatten()
            acc[0] += t.sum().to(_comm())
            acc[1] += (t * torch.arange(1, t.numel() + 1, device=t.device, dtype=torch.float64).remainder(97)).sum().to(
                _comm()
            ) * (i + 1)
        return acc


def check_equal(tensors: list[torch.Tensor], what: str) -> None:
    """Raise on every rank if ``tensors`` differ between ranks (checksums compared)."""
    mine = _checksum(tensors)
    every = [torch.zeros_like(mine) for _ in range(world())]
    dist.all_gather(every, mine)
    if any(not torch.equal(every[0], e) for e in every[1:]):
        raise RuntimeError(f"data-parallel ranks disagree on the {what}: {[e.tolist() for e in every]}")


def sum_gradients(params: list[torch.Tensor]) -> None:
    """Sum every parameter's gradient across ranks in one flattened all-reduce."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]).to(_comm())
    dist.all_reduce(flat)
    flat = flat.to(grads[0].device)
    off = 0
    for p, g in zip(params, grads):
        n = g.numel()
        if p.grad is None:
            p.grad = flat[off : off + n].view_as(p).clone()
        else:
            p.grad.copy_(flat[off : off + n].view_as(p))
        off += n


def broadcast_(params: list[torch.Tensor]) -> None:
    """Rank 0's values of ``params`` on every rank, in one flattened broadcast."""
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1) for p in params]).to(_comm())
        dist.broadcast(flat, 0)
        flat = flat.to(params[0].device)
        off = 0
        for p in params:
            p.copy_(flat[off : off + p.numel()].view_as(p))
            off += p.numel()


def share(idx: torch.Tensor) -> torch.Tensor:
    """This rank's part of a global batch's indices (contiguous, as even as can be)."""
    return idx.tensor_split(world())[rank()]


# -- what a training hands to the other ranks ---------------------------------------------------------------
def spec(model: nn.Module) -> dict:
    s = getattr(model, "ticketlab_spec", None)
    if s is None:
        raise UserError(
            "this command's models cannot be rebuilt on the other ranks (not a registered model); "
            "run it without torchrun"
        )
    return s


def _data_token(data) -> str:
    key = id(data)
    if key not in _data_tokens:
        _data_tokens[key] = (f"d{len(_data_tokens)}", data)
        _json(
            {
                "op": "data",
                "token": _data_tokens[key][0],
                "name": data.name,
                "num_classes": data.num_classes,
                "pixel_range": data.pixel_range,
            }
        )
        _tensors({k: getattr(data, k) for k in Dataset.TENSORS if getattr(data, k) is not None})
    return _data_tokens[key][0]


class Lead:
    """Rank 0's side of one training: announces it, then keeps the other ranks in step."""

    def __init__(self, model, data, cfg, mask, frozen, updater, opt, seed: int, start: int, total: int, fresh: bool):
        if updater is not None and hasattr(updater, "loss"):
            raise UserError("this method's own loss (Deadwooding) does not run data-parallel; run it without torchrun")
        s = spec(model)
        token = _data_token(data)
        self.updater = updater
        self.params = [p for p in model.parameters() if p.requires_grad]
        masks = None if updater is not None else mask
        _json(
            {
                "op": "train",
                "spec": s,
                "data": token,
                "cfg": asdict(cfg),
                "seed": int(seed),
                "start": int(start),
                "total": int(total),
                "mask": masks is not None,
                "frozen": frozen is not None,
                "updater": updater is not None,
                "fresh": fresh,
            }
        )
        _tensors(dict(model.state_dict()))
        if masks is not None:
            _tensors(dict(masks))
            check_equal(list(masks.values()), "masks")
        if frozen is not None:
            _tensors(dict(frozen))
        tensors, meta = optimizer_to_flat(opt)  # the checkpoint's format: rank 0's resumed state, if any
        _json(meta)
        _tensors(tensors)

    def after_step(self) -> None:
        """With a sparse trainer (its masks live on rank 0: drop and grow, dense phases, undone steps): send the
        weights after every step; the other ranks only compute gradients."""
        if self.updater is not None:
            broadcast_(self.params)


def lead(model, data, cfg, mask, frozen, updater, opt, seed, start, total, fresh) -> Lead | None:
    return Lead(model, data, cfg, mask, frozen, updater, opt, seed, start, total, fresh) if active() else None


def stop() -> None:
    """Rank 0: release the other ranks (the command is over)."""
    if active() and rank() == 0:
        _json({"op": "stop"})


def follow(device: str, train) -> None:
    """A rank other than 0: take part in rank 0's trainings until it stops, each run by ``train``
    (``train.loop.train``, handed in: this module is below the loop)."""

    datasets: dict[str, Dataset] = {}
    while True:
        head = _json()
        if head["op"] == "stop":
            return
        if head["op"] == "data":
            t = _tensors(device=device)
            datasets[head["token"]] = Dataset(
                head["name"],
                t["x_train"],
                t["y_train"],
                t["x_val"],
                t["y_val"],
                t["x_test"],
                t["y_test"],
                head["num_classes"],
                t.get("mean"),
                t.get("std"),
                tuple(head["pixel_range"]) if head["pixel_range"] else None,
            )
            continue
        _follow(head, datasets[head["data"]], device, train)


def _follow(head: dict, data, device: str, train) -> None:
    cfg = TrainConfig(**head["cfg"])
    s = head["spec"]
    model = build_model(s["name"], tuple(s["input_shape"]), s["num_classes"]).to(device)
    state = _tensors(device=device)
    graft_from_state(model, {k: tuple(v.shape) for k, v in state.items()})
    model.load_state_dict(state)
    mask = _tensors(device=device) if head["mask"] else None
    if mask is not None:
        check_equal(list(mask.values()), "masks")
    frozen = _tensors(device=device) if head["frozen"] else None
    train(
        model,
        data,
        cfg,
        mask=mask,
        frozen=frozen,
        seed=head["seed"],
        start_iter=head["start"],
        total=head["total"],
        follower={"updater": head["updater"], "fresh": head["fresh"]},
    )


class Follow:
    """The other ranks' side of one training (inside ``train``): rank 0's optimizer state at the start, and
    with a sparse trainer (on rank 0) rank 0's weights after every step."""

    def __init__(self, model, opt, with_updater: bool):
        self.with_updater = with_updater
        self.params = [p for p in model.parameters() if p.requires_grad]
        meta = _json()
        optimizer_from_flat(opt, _tensors(device=self.params[0].device), meta)

    def after_step(self) -> None:
        if self.with_updater:
            broadcast_(self.params)
