"""The training loop: plain steps over in-memory tensors, masks enforced in place, periodic evaluation.

Batches come from a per-epoch permutation drawn from ``(seed, epoch)``, and the learning rate is a
function of the iteration, so a run resumed from a checkpoint is bitwise identical to an uninterrupted
one on CPU. Records the early-stopping iteration (minimum validation loss) and the test accuracy there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data import Dataset
from ..data.augment import augment
from ..errors import UserError
from ..flops import forward_flops
from ..seeding import generator
from ..sparse import Mask, MaskEnforcer
from ..sparse.kernels import KernelsUnavailable, SparseKernels
from . import distributed
from .checkpoint import Checkpointer
from .config import TrainConfig
from .losses import build_losses
from .schedule import lr_at


@dataclass
class TrainResult:
    """What ``train`` returns: the evaluation history (one row per evaluation: iteration, losses, accuracies)
    and the iterations run; ``summary()`` gives final, early-stop and validation numbers."""

    history: list[dict] = field(default_factory=list)  # one row per evaluation
    iterations: int = 0

    @property
    def final(self) -> dict:
        return self.history[-1]

    @property
    def early_stop(self) -> dict:
        """The evaluation with the lowest validation loss (the first one, on ties)."""
        return min(self.history, key=lambda r: r["val_loss"])

    def summary(self) -> dict:
        es = self.early_stop
        return {
            "test_acc": self.final["test_acc"],
            "val_acc": self.final["val_acc"],
            "early_stop_iter": es["iter"],
            "early_stop_test_acc": es["test_acc"],
            "iterations": self.iterations,
        }

    def to_json(self) -> dict:
        return asdict(self) | {"summary": self.summary()}


class LossWatch:
    """The first step whose training loss was not finite, noted without a device sync per step; ``check``
    (before every evaluation and checkpoint, so the last checkpoint kept is a good one) stops the training with
    a one-line error naming it. A loss of several values (vectorised replicates) is watched elementwise."""

    def __init__(self, desc: str):
        self.desc, self.first = desc, None

    def see(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss.detach())
        if self.first is None:
            self.first = torch.full(bad.shape, -1, dtype=torch.long, device=bad.device)
        self.first = torch.where((self.first < 0) & bad, step, self.first)

    def check(self) -> None:
        if self.first is None:
            return
        hit = self.first[self.first >= 0]
        if hit.numel():
            raise UserError(
                f"{self.desc}: the training loss is not finite (NaN or inf) at iteration {int(hit.min())}; "
                "lower --lr or check the data (the last checkpoint, from before it, is kept)"
            )


def make_optimizer(model: nn.Module | list[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over a model's trainable parameters (or a list of tensors), fused where torch
    supports it.

    The fused CPU kernels are ~2.5x faster than foreach for Adam, and do not slow down on zero second
    moments (pruned entries): foreach Adam's vectorised sqrt is ~9x slower on exact zeros on AVX-512 CPUs.
    """
    params = [p for p in model.parameters() if p.requires_grad] if isinstance(model, nn.Module) else list(model)
    if cfg.optimizer == "sgd":
        cls, kw = torch.optim.SGD, dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        cls, kw = torch.optim.Adam, dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        cls, kw = torch.optim.AdamW, dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # dtype/device without a fused kernel
        return cls(params, foreach=True, **kw)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 5000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y)."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            out = model(x[i : i + batch])
            loss += float(F.cross_entropy(out, y[i : i + batch], reduction="sum"))
            correct += int((out.argmax(1) == y[i : i + batch]).sum())
    model.train(was_training)
    return loss / len(y), correct / len(y)


def mixed_precision(cfg: TrainConfig, device: torch.device):
    """The training step's autocast context: bfloat16 with --precision bf16 (no loss scaling is needed: bf16
    has fp32's exponent range), else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return torch.randperm(n, generator=g)


def train(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    *,
    mask: Mask | None = None,
    frozen: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    start_iter: int = 0,
    total: int | None = None,
    checkpointer: Checkpointer | None = None,
    snapshot_at: int | Iterable[int] | None = None,
    on_snapshot: Callable[[int, nn.Module], None] | None = None,
    sparse: Callable[[torch.optim.Optimizer], object] | None = None,
    progress: bool = False,
    desc: str = "train",
    log=None,
    follower: dict | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data`` (already on the model's device) from ``start_iter`` to ``total``.

    ``mask`` keeps pruned weights at exactly zero (or at ``frozen``'s values, untrained).
    ``checkpointer`` saves periodically and, if it holds a checkpoint, resumes from it.
    ``on_snapshot(it, model)`` is called when an iteration in ``snapshot_at`` (one or several) is reached:
    the rewind point of late rewinding, ensemble members.
    ``sparse(optimizer)`` builds a dynamic sparse trainer (``ticketlab.dst``) for the loop's optimizer; it
    replaces ``mask``: its ``step()`` runs after every optimizer step (after any snapshot of that
    iteration), it is told every evaluation, and its state is checkpointed with the run.
    ``log`` (``train.log``'s JsonlLog / TensorBoardLog) receives the scalars of every evaluation and mask update.
    Under ``torchrun`` (``train.distributed``) each rank trains on its share of every batch; ``follower`` is
    that module's: the other ranks' side of rank 0's training (no evaluation, no files).
    """
    total = cfg.total_iterations(len(data.y_train)) if total is None else total
    opt = make_optimizer(model, cfg)
    # Our optimizers are elementwise: masked gradients with cleared state keep pruned weights exactly zero,
    # so the after-step weight pass is only needed for held (frozen) values.
    enforcer = MaskEnforcer(model, mask, opt, frozen, after_step=frozen is not None) if mask is not None else None
    updater = sparse(opt) if sparse is not None else None
    snapshots = set() if snapshot_at is None else {snapshot_at} if isinstance(snapshot_at, int) else set(snapshot_at)
    history: list[dict] = []
    it = start_iter
    resumed = checkpointer.load(model, opt, updater) if checkpointer is not None else None
    if resumed is not None:
        it, history = resumed
    lead = follow = None
    if follower is not None:
        follow = distributed.Follow(model, opt, follower["updater"])
    elif distributed.active():
        lead = distributed.lead(model, data, cfg, mask, frozen, updater, opt, seed, it, total, fresh=not history)
    parallel = lead is not None or follow is not None
    trainable = [p for p in model.parameters() if p.requires_grad]

    objective, penalties = build_losses(cfg, data, seed, total)  # adversarial, certified, stability (train.losses)
    x, y = data.x_train, data.y_train
    n, bs = len(y), min(cfg.batch_size, len(y))
    spe = cfg.steps_per_epoch(n)
    varying_lr = cfg.lr_schedule != "constant" or cfg.warmup > 0

    live = _Live(log, model, data, cfg, mask, updater, opt, bs, it) if log is not None else None

    watch = LossWatch(desc)

    def record(i: int) -> None:
        watch.check()
        if parallel:  # every rank's weights must still be the same
            distributed.check_equal(trainable, "weights")
        if follow is not None:
            return
        vl, va = evaluate(model, data.x_val, data.y_val)
        tl, ta = evaluate(model, data.x_test, data.y_test)
        history.append({"iter": i, "val_loss": vl, "val_acc": va, "test_loss": tl, "test_acc": ta})
        if updater is not None:
            updater.observe(history[-1])
        if live is not None:
            live.record(i, history[-1])

    if not history and (follower is None or follower["fresh"]):
        record(it)
        if it in snapshots and on_snapshot is not None:
            on_snapshot(it, model)

    bar = None
    if progress and follow is None:
        bar = tqdm(total=total, initial=it, desc=desc, leave=False, mininterval=0.5, dynamic_ncols=True)

    autocast = mixed_precision(cfg, x.device)
    preset = checkpointer.kernels if checkpointer is not None else None
    kernels = sparse_kernels(model, cfg, opt, mask, frozen, updater, parallel, bs, preset)
    choices = getattr(kernels, "choices", lambda: None)
    model.train()
    epoch, perm = -1, None
    try:
        kernels.__enter__()
        while it < total:
            e, pos = divmod(it, spe)
            if e != epoch:
                epoch, perm = e, epoch_permutation(seed, e, n).to(x.device)
            idx = perm[pos * bs : (pos + 1) * bs]
            if varying_lr:
                lr = lr_at(cfg, it, total)
                for group in opt.param_groups:
                    group["lr"] = lr
            xb = (
                x[idx]
                if cfg.augment == "none"
                else augment(cfg.augment, x[idx], data, generator(seed, "augment", it), cfg.augment_sigma)
            )
            yb = y[idx]
            if parallel:  # this rank's share of the global batch (augmented whole, as in one process)
                share = distributed.share(torch.arange(len(idx), device=idx.device))
                xb, yb = xb[share], yb[share]
            with autocast:
                if updater is not None and hasattr(updater, "loss"):  # a method with a loss of its own (Deadwooding)
                    loss = updater.loss(model, xb, yb, it)
                elif objective is None:
                    loss = F.cross_entropy(model(xb), yb)
                else:
                    loss = objective(model, xb, yb, it)
                for penalty in penalties:
                    loss = loss + penalty(model, xb, yb, it)
                if parallel:  # this share's mean, weighted so that the ranks' sum is the global batch's mean
                    loss = loss * (len(yb) / len(idx))
            watch.see(loss, it + 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if parallel:
                distributed.sum_gradients(trainable)
            if live is not None:
                live.loss(loss * (len(idx) / len(yb)) if parallel else loss)
            if follow is not None and follow.with_updater:
                pass  # rank 0's sparse trainer steps; its weights arrive below
            elif enforcer is not None:
                enforcer.step()
            else:
                opt.step()
            it += 1
            if it in snapshots and on_snapshot is not None:
                on_snapshot(it, model)
            if updater is not None:
                updater.step()
                if live is not None:
                    live.mask_change(it)
            if lead is not None:
                lead.after_step()
            elif follow is not None:
                follow.after_step()
            if it % cfg.eval_every == 0 or it == total:
                record(it)
                if bar is not None:
                    bar.update(it - bar.n)
                    bar.set_postfix(val_acc=f"{history[-1]['val_acc']:.3f}", refresh=False)
            if checkpointer is not None and it % checkpointer.every == 0 and it < total:
                watch.check()
                checkpointer.save(it, model, opt, history, updater, kernels=choices())
        watch.check()
    finally:
        kernels.__exit__(None, None, None)
        if bar is not None:
            bar.close()
        if live is not None:
            live.close()
    return TrainResult(history=history, iterations=total - start_iter)


def sparse_kernels(model, cfg: TrainConfig, opt, mask, frozen, updater, parallel: bool, batch: int, preset=None):
    """The loop's ``--kernels`` as a context manager: ``SparseKernels`` over the masked Linear and Conv2d layers
    when asked and where they compute what the dense path does (pruned weights held at zero: no held values, no
    dense phases of their own), else a no-op. ``sparse`` without a C compiler is refused in one line."""
    if cfg.kernels == "dense" or frozen is not None or parallel or cfg.precision != "fp32":
        return nullcontext()
    if updater is not None:
        if not getattr(updater, "sparse_kernels", False):
            return nullcontext()  # a method that does not say its pruned weights stay zero (AC/DC's dense phases)

        def masks():
            return updater.masks

        def dense_step():
            return bool(updater.uses_dense_grad and updater.wants_dense_grad(updater.step_count + 1))

    elif mask is not None:

        def masks():
            return mask

        dense_step = None
    else:
        return nullcontext()
    try:
        return SparseKernels(model, masks, opt, dense_step, mode=cfg.kernels, batch=batch, preset=preset)
    except KernelsUnavailable as e:
        if cfg.kernels == "auto":
            return nullcontext()
        raise UserError(f"--kernels sparse: {e}; use --kernels dense or auto") from None


class _Live:
    """What a live log gets from the loop: evaluation rows with the train loss since the last one, the
    learning rate, densities and FLOPs so far, and a sparse trainer's mask changes."""

    def __init__(
        self,
        log,
        model: nn.Module,
        data: Dataset,
        cfg: TrainConfig,
        mask: Mask | None,
        updater,
        opt,
        batch: int,
        start: int,
    ):
        self.log, self.model, self.mask, self.updater, self.opt, self.batch = log, model, mask, updater, opt, batch
        self._sum, self._n, self._change_at = None, 0, None
        self._step_flops = None
        if updater is None or not hasattr(updater, "training_flops"):
            fwd = sum(forward_flops(model, tuple(data.x_train.shape[1:]), mask).values())
            self._step_flops = cfg.passes_per_example() * fwd * batch
        log.start(start)

    def loss(self, loss: torch.Tensor) -> None:
        d = loss.detach()
        self._sum = d if self._sum is None else self._sum + d  # no host sync per step
        self._n += 1

    def _density(self) -> dict[str, float]:
        m = getattr(self.updater, "mask", None) if self.updater is not None else None
        m = m if isinstance(m, dict) else self.mask
        if not m:
            return {}
        kept = {n: int(t.sum()) for n, t in m.items()}
        total = sum(t.numel() for t in m.values())
        return {"density": sum(kept.values()) / total} | {f"density/{n}": kept[n] / m[n].numel() for n in m}

    def record(self, it: int, row: dict) -> None:
        values = {
            "loss/val": row["val_loss"],
            "loss/test": row["test_loss"],
            "acc/val": row["val_acc"],
            "acc/test": row["test_acc"],
            "lr": self.opt.param_groups[0]["lr"],
        }
        if self._n:
            values["loss/train"] = float(self._sum) / self._n
            self._sum, self._n = None, 0
        values |= self._density()
        values["flops"] = self.updater.training_flops(self.batch) if self._step_flops is None else self._step_flops * it
        self.log.scalars(it, values)

    def mask_change(self, it: int) -> None:
        change = getattr(self.updater, "last_change", None)  # (the updater's step, fraction new)
        if change is not None and change[0] != self._change_at:
            self._change_at = change[0]
            self.log.scalars(it, {"mask_change": change[1]})

    def close(self) -> None:
        self.log.close()
