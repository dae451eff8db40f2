"""Vectorised replicates: R models of one architecture trained together in one loop.

The models' parameters and buffers are stacked along a leading dimension (``torch.func.stack_module_state``)
and one forward runs all of them (``vmap`` over ``functional_call``), so a step is a few large kernels instead
of R times a few dozen small ones - what keeps a GPU busy with the small nets of the lottery-ticket
literature. Plain MLPs skip vmap for a hand-written batched forward (one ``baddbmm`` per layer,
``batched_mlp``), measured faster. Each replicate keeps its own initial weights, mask, data order (its seed's
permutations), running BatchNorm statistics (batched buffers, updated in place per replicate) and optimizer
state: SGD, Adam and AdamW are elementwise, so one optimizer over the stacked tensors is R independent
optimizers (the step count is shared, and equal, since the replicates step together). The loss is the sum of
the replicates' mean losses, so each replicate's gradient is its own.

Dynamic sparse training is vectorised too: each replicate keeps its own sparse trainer (``ticketlab.dst``),
bound to its own model whose parameters are views of the stacked ones, and to a per-replicate view of the
stacked optimizer (``_ReplicaOptimizer``: its state is views of the stacked state, its pre-step hooks are
run by the loop). So every drop, grow, gradient mask and held step of a trainer acts on that replicate's
slice only, as it would on a model of its own.

Results equal R sequential trainings up to float rounding (batched kernels sum in another order); within
this mode the same seeds give the same bits on CPU. Checkpoints are written per replicate in the sequential
trainer's format, so either mode resumes the other's.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, MutableMapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle
from tqdm import tqdm

from ..data import Dataset
from ..data.augment import augment
from ..seeding import generator
from ..sparse import Mask
from ..sparse.enforce import clear_optimizer_state_, mask_grads_
from .checkpoint import Checkpointer
from .config import TrainConfig
from .loop import LossWatch, TrainResult, _Live, epoch_permutation, make_optimizer, mixed_precision, train
from .losses import enabled_terms
from .schedule import lr_at


class NotVectorizable(Exception):
    """These trainings cannot share one loop (the caller trains them one by one)."""


def signature(model: nn.Module) -> tuple:
    """What must match for models to be stacked: class, and every parameter's and buffer's name, shape, dtype,
    device and trainability."""
    return (
        type(model).__name__,
        tuple((n, tuple(p.shape), p.dtype, str(p.device), p.requires_grad) for n, p in model.named_parameters()),
        tuple((n, tuple(b.shape), b.dtype) for n, b in model.named_buffers()),
    )


def _per_replicate(v) -> bool:
    """Whether an optimizer state entry is stacked per replicate (momentum, moments) rather than shared (the
    step count of Adam, a 0-dim tensor, or a plain number)."""
    return torch.is_tensor(v) and v.dim() > 0


class _GroupView(MutableMapping):
    """A stacked optimizer's param group as one replicate sees it: its own parameters, the shared settings."""

    def __init__(self, group: dict, params: list[torch.Tensor]):
        self.group, self.params = group, params

    def __getitem__(self, key):
        return self.params if key == "params" else self.group[key]

    def __setitem__(self, key, value):
        if key == "params":
            raise TypeError("a replicate's parameters are fixed")
        self.group[key] = value

    def __delitem__(self, key):
        del self.group[key]

    def __iter__(self):
        return iter(self.group)

    def __len__(self):
        return len(self.group)


class _ReplicaState(MutableMapping):
    """The stacked optimizer's state as replicate ``r`` sees it: per-element tensors are views of its slice
    (writes land in the stack); scalars (Adam's step) are shared, as the replicates step together."""

    def __init__(self, opt: torch.optim.Optimizer, stacked: dict[int, torch.Tensor], own: list, r: int):
        self.opt, self.stacked, self.own, self.r = opt, stacked, own, r

    def _views(self, st: dict) -> dict:
        return {k: (v[self.r] if _per_replicate(v) else v) for k, v in st.items()}

    def __getitem__(self, p):
        return self._views(self.opt.state[self.stacked[id(p)]])

    def __contains__(self, p):
        return id(p) in self.stacked and self.stacked[id(p)] in self.opt.state

    def __setitem__(self, p, value: dict):
        st = self.opt.state.setdefault(self.stacked[id(p)], {})
        with torch.no_grad():
            for k, v in value.items():
                if k in st and torch.is_tensor(st[k]):
                    (st[k][self.r] if _per_replicate(st[k]) else st[k]).copy_(v)
                elif not torch.is_tensor(v):
                    st[k] = v
                else:
                    raise NotVectorizable(f"a replicate's optimizer state {k!r} cannot be created alone")

    def __delitem__(self, p):
        """A replicate's state cannot leave the stack: it is zeroed (a fresh state for SGD without
        dampening, Adam and AdamW)."""
        with torch.no_grad():
            for v in self[p].values():
                if torch.is_tensor(v):
                    v.zero_()

    def __iter__(self):
        return iter([p for p in self.own if p in self])

    def __len__(self):
        return len(list(iter(self)))


class _ReplicaOptimizer:
    """What a replicate's sparse trainer needs of an optimizer, over its slice of the stacked one: param
    groups, state, and pre-step hooks (run by the loop before the stacked step)."""

    def __init__(self, opt: torch.optim.Optimizer, own: list[torch.Tensor], stacked: list[torch.Tensor], r: int):
        by_id = {id(p): s for p, s in zip(own, stacked)}
        own_of = {id(s): p for p, s in zip(own, stacked)}
        self.opt, self.r = opt, r
        self.param_groups = [_GroupView(g, [own_of[id(q)] for q in g["params"]]) for g in opt.param_groups]
        self.state = _ReplicaState(opt, by_id, own, r)
        self.hooks: OrderedDict = OrderedDict()  # (RemovableHandle holds it by weak reference: not a plain dict)

    def register_step_pre_hook(self, fn) -> RemovableHandle:
        handle = RemovableHandle(self.hooks)
        self.hooks[handle.id] = fn
        return handle

    def pre_step(self) -> None:
        for fn in list(self.hooks.values()):
            fn(self, (), {})


def batched_mlp(model: nn.Module) -> Callable | None:
    """For an ``nn.Sequential`` of one leading Flatten, then Linear and ReLU only (LeNet-300-100, the MLPs):
    ``f(params, x, shared)``, R such MLPs' forward from stacked parameters with one ``baddbmm`` per layer; ``x``
    is (R, n, ...) (each replicate its own batch) or, ``shared``, (n, ...) (one batch for all, broadcast without
    a copy). Else None (use vmap)."""
    if (
        not isinstance(model, nn.Sequential)
        or len(model) < 2
        or not isinstance(model[0], nn.Flatten)
        or (model[0].start_dim, model[0].end_dim) != (1, -1)
        or not all(isinstance(m, (nn.Linear, nn.ReLU)) for m in list(model)[1:])
    ):
        return None
    layers = list(model)[1:]

    def forward(p: dict, x: torch.Tensor, shared: bool) -> torch.Tensor:
        h = x.flatten(1) if shared else x.flatten(2)
        for i, m in enumerate(layers, start=1):
            if isinstance(m, nn.ReLU):
                h = h.relu()
                continue
            w = p[f"{i}.weight"]
            if h.dim() == 2:  # the shared batch meets the first Linear: (R, n, in) as a stride-0 view
                h = h.expand(w.shape[0], *h.shape)
            w = w.transpose(1, 2)
            h = torch.bmm(h, w) if m.bias is None else torch.baddbmm(p[f"{i}.bias"][:, None], h, w)
        return h

    return forward


def _hooked(models: list[nn.Module]) -> bool:
    """Whether a forward hook watches a model: the vectorised forward never calls the models themselves."""
    return any(mod._forward_hooks or mod._forward_pre_hooks for m in models for mod in m.modules())


def supported(cfg: TrainConfig) -> bool:
    """The training settings the vectorised loop implements: no loss term (train.losses) on, as those need
    per-model losses."""
    return not enabled_terms(cfg)


def train_replicates(
    models: list[nn.Module],
    data: Dataset,
    cfg: TrainConfig,
    *,
    masks: list[Mask | None],
    seeds: list[int],
    start_iter: int = 0,
    total: int | None = None,
    checkpointers: list[Checkpointer | None] | None = None,
    logs: list | None = None,
    progress: bool = False,
    desc: str = "replicates",
    chunk: int = 2500,
    sparse: list[Callable | None] | None = None,
) -> list[TrainResult]:
    """Train ``models`` (same architecture, on ``data``'s device, already at their starting weights and masked)
    in place, replicate ``r`` with ``masks[r]`` and the data order of ``seeds[r]``; returns one TrainResult each,
    as ``train`` would. ``sparse[r](optimizer)`` builds replicate r's dynamic sparse trainer (as ``train``'s
    ``sparse``; then its mask is None): one trainer class for all. Raises NotVectorizable when the models
    differ in structure, the settings need per-model losses, the trainers differ or cannot be rebound, or the
    replicates' checkpoints are at different iterations."""
    R = len(models)
    if R == 0 or len({signature(m) for m in models}) != 1 or not supported(cfg) or _hooked(models):
        raise NotVectorizable("different architectures or settings, or forward hooks on the models")
    if len(masks) != R or len(seeds) != R:
        raise ValueError("one mask (or None) and one seed per model")
    names = [n for n in masks[0]] if masks[0] is not None else []
    if any((m is None) != (masks[0] is None) or (m is not None and list(m) != names) for m in masks):
        raise NotVectorizable("the replicates mask different layers")
    total = cfg.total_iterations(len(data.y_train)) if total is None else total
    checkpointers = checkpointers or [None] * R
    singles = [make_optimizer(m, cfg) for m in models]  # per-replicate optimizers: checkpoint format only
    ups: list = []
    if sparse is not None and any(f is not None for f in sparse):
        if any(f is None for f in sparse) or masks[0] is not None:
            raise NotVectorizable("some replicates have sparse trainers, others not")
        ups = [f(o) for f, o in zip(sparse, singles)]  # as train(): built on the optimizer, before a resume
        if (
            len({(type(u), getattr(u, "step_on_update", None)) for u in ups}) != 1
            or not all(hasattr(u, "rebind") for u in ups)
            or hasattr(ups[0], "loss")
            or _hooked(models)
        ):
            for u in ups:  # (their masks are drawn again, the same, by the sequential trainings)
                getattr(u, "detach", lambda: None)()
            raise NotVectorizable(
                "the sparse trainers differ, have a loss of their own, cannot be rebound or "
                "watch the model's forward (CTRE's activation statistics)"
            )
    resumed = [
        cp.load(m, o, *([u] if ups else [])) if cp is not None else None
        for cp, m, o, u in zip(checkpointers, models, singles, ups or [None] * R)
    ]
    if any(r is not None for r in resumed) and len({None if r is None else r[0] for r in resumed}) != 1:
        raise NotVectorizable("the replicates' checkpoints are at different iterations")
    it = resumed[0][0] if resumed[0] is not None else start_iter
    histories = [list(r[1]) if r is not None else [] for r in resumed]

    device = next(models[0].parameters()).device
    trainable = [n for n, p in models[0].named_parameters() if p.requires_grad]
    named = [dict(m.named_parameters()) for m in models]
    owns = [[nm[n] for n in trainable] for nm in named]  # each replicate's trainable parameters, in ``order``
    with torch.no_grad():
        params = {n: torch.stack([nm[n].detach() for nm in named]) for n in named[0]}
        held = [dict(m.named_buffers()) for m in models]
        buffers = {n: torch.stack([b[n].detach() for b in held]) for n in held[0]}
    for n in trainable:
        params[n].requires_grad_(True)
    order = [params[n] for n in trainable]
    opt = make_optimizer(order, cfg)
    if resumed[0] is not None:  # the replicates' optimizer states, stacked
        for i, p in enumerate(order):
            states = [o.state.get(own[i], {}) for o, own in zip(singles, owns)]
            if states[0]:
                opt.state[p] = {
                    k: (torch.stack([s[k] for s in states]) if _per_replicate(v) else v) for k, v in states[0].items()
                }
    stacked_masks = [torch.stack([mk[n].to(device=device, dtype=params[n].dtype) for mk in masks]) for n in names]
    masked = [params[n] for n in names]
    with torch.no_grad():
        if masked:
            torch._foreach_mul_(masked, stacked_masks)
            clear_optimizer_state_(opt, masked, stacked_masks)

    proxies: list[_ReplicaOptimizer] = []
    if ups:  # each trainer's model becomes views of its slice, its optimizer a view of the stacked one
        with torch.no_grad():
            for r, m in enumerate(models):
                for n, p in m.named_parameters():
                    p.data = params[n].detach()[r]
                for n, b in m.named_buffers():
                    b.data = buffers[n][r]
        proxies = [_ReplicaOptimizer(opt, own, order, r) for r, own in enumerate(owns)]
        for u, px in zip(ups, proxies):
            u.rebind(px)

    base = copy.deepcopy(models[0]).to("meta")

    def one(p, b, x):
        return torch.func.functional_call(base, (p, b), (x,))

    mlp = batched_mlp(base)
    if mlp is None:
        forward = torch.func.vmap(one)  # each replicate its own batch
        forward_shared = torch.func.vmap(one, in_dims=(0, 0, None))  # one batch for all (evaluation)
    else:  # a plain MLP: one baddbmm per layer, faster than vmap (benchmarks/bench_replicates.py)

        def forward(p, b, x):
            return mlp(p, x, False)

        def forward_shared(p, b, x):
            return mlp(p, x, True)

    def evaluate(x: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
        base.eval()
        loss = torch.zeros(R, dtype=torch.float64, device=device)
        correct = torch.zeros(R, dtype=torch.long, device=device)
        with torch.no_grad():
            for i in range(0, len(y), chunk):
                out = forward_shared(params, buffers, x[i : i + chunk])  # (R, n, C)
                yy = y[i : i + chunk]
                loss += F.cross_entropy(out.flatten(0, 1), yy.repeat(R), reduction="none").view(R, -1).sum(1).double()
                correct += (out.argmax(2) == yy).sum(1)
        base.train()
        return [(float(loss[r]) / len(y), int(correct[r]) / len(y)) for r in range(R)]

    lives = [None] * R
    if logs is not None:
        lives = [
            _Live(log, m, data, cfg, mk, u, opt, min(cfg.batch_size, len(data.y_train)), it)
            if log is not None
            else None
            for log, m, mk, u in zip(logs, models, masks, ups or [None] * R)
        ]

    watch = LossWatch(f"{desc} (x{R})")

    def record(i: int) -> None:
        watch.check()
        val, test = evaluate(data.x_val, data.y_val), evaluate(data.x_test, data.y_test)
        for r in range(R):
            row = {
                "iter": i,
                "val_loss": val[r][0],
                "val_acc": val[r][1],
                "test_loss": test[r][0],
                "test_acc": test[r][1],
            }
            histories[r].append(row)
            if ups:
                ups[r].observe(row)
            if lives[r] is not None:
                lives[r].record(i, row)

    def unstack() -> None:
        with torch.no_grad():
            for r, m in enumerate(models):
                m.load_state_dict({n: t[r] for n, t in (params | buffers).items()}, strict=False)

    def save(i: int) -> None:
        unstack()
        for r, (cp, m, o) in enumerate(zip(checkpointers, models, singles)):
            if cp is None:
                continue
            o.state.clear()
            for mine, p in zip(owns[r], order):
                st = opt.state.get(p)
                if st:
                    o.state[mine] = {k: (v[r].clone() if _per_replicate(v) else v) for k, v in st.items()}
            for g, sg in zip(o.param_groups, opt.param_groups):
                g["lr"] = sg["lr"]
            cp.save(i, m, o, histories[r], ups[r] if ups else None)

    if not histories[0]:
        record(it)
    x, y = data.x_train, data.y_train
    n, bs = len(y), min(cfg.batch_size, len(y))
    spe = cfg.steps_per_epoch(n)
    varying_lr = cfg.lr_schedule != "constant" or cfg.warmup > 0
    save_every = min((cp.every for cp in checkpointers if cp is not None), default=total + 1)
    autocast = mixed_precision(cfg, device)
    bar = None
    if progress:
        bar = tqdm(total=total, initial=it, desc=f"{desc} (x{R})", leave=False, mininterval=0.5, dynamic_ncols=True)
    base.train()
    epoch, perms = -1, None
    try:
        while it < total:
            e, pos = divmod(it, spe)
            if e != epoch:
                epoch = e
                perms = torch.stack([epoch_permutation(s, e, n) for s in seeds]).to(x.device)
            idx = perms[:, pos * bs : (pos + 1) * bs]  # (R, bs): each replicate's own order
            if varying_lr:
                lr = lr_at(cfg, it, total)
                for group in opt.param_groups:
                    group["lr"] = lr
            if cfg.augment == "none":
                xb = x[idx]
            else:
                xb = torch.stack(
                    [
                        augment(cfg.augment, x[idx[r]], data, generator(seeds[r], "augment", it), cfg.augment_sigma)
                        for r in range(R)
                    ]
                )
            with autocast:
                out = forward(params, buffers, xb)  # (R, bs, C)
                per = F.cross_entropy(out.flatten(0, 1), y[idx].flatten(), reduction="none").view(R, bs).mean(1)
                loss = per.sum()
            watch.see(per, it + 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if logs is not None:
                d = per.detach()
                for r, lv in enumerate(lives):
                    if lv is not None:
                        lv.loss(d[r])
            if masked:
                mask_grads_(masked, stacked_masks)
            for own, px in zip(owns if ups else [], proxies):  # each trainer sees its slice of the gradients
                for p, sp in zip(own, order):
                    p.grad = None if sp.grad is None else sp.grad[px.r]
                px.pre_step()
            opt.step()
            it += 1
            for r, u in enumerate(ups):
                u.step()
                if lives[r] is not None:
                    lives[r].mask_change(it)
            if it % cfg.eval_every == 0 or it == total:
                record(it)
                if bar is not None:
                    bar.update(it - bar.n)
            if it % save_every == 0 and it < total:
                watch.check()
                save(it)
        watch.check()
    finally:
        if bar is not None:
            bar.close()
        for lv in lives:
            if lv is not None:
                lv.close()
    unstack()
    if ups:  # the models own their weights again, the trainers their single optimizers
        with torch.no_grad():
            for m in models:
                for t in [*m.parameters(), *m.buffers()]:
                    t.data = t.data.clone()
                    t.grad = None
        for u, o in zip(ups, singles):
            u.rebind(o)
    return [TrainResult(history=h, iterations=total - start_iter) for h in histories]


def train_each(
    models,
    data,
    cfg,
    *,
    masks,
    seeds,
    start_iter=0,
    total=None,
    checkpointers=None,
    logs=None,
    progress=False,
    desc="replicates",
    train_fn: Callable | None = None,
) -> list[TrainResult]:
    """The sequential reference: ``train`` once per model (what ``--replicates sequential`` runs)."""

    train_fn = train_fn or train
    checkpointers = checkpointers or [None] * len(models)
    logs = logs or [None] * len(models)
    return [
        train_fn(
            m,
            data,
            cfg,
            mask=mk,
            seed=s,
            start_iter=start_iter,
            total=total,
            checkpointer=cp,
            log=lg,
            progress=progress,
            desc=desc,
        )
        for m, mk, s, cp, lg in zip(models, masks, seeds, checkpointers, logs)
    ]
