"""The sparse-trainer core: an exact-count mask kept through every optimizer step, changed by drop and grow.

Add dynamic sparse training to your own loop in three lines::

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    dst = ticketlab.dst.make("rigl", model, opt, density=0.1, total_steps=T)   # after the optimizer
    for x, y in batches:
        opt.zero_grad(); F.cross_entropy(model(x), y).backward()
        opt.step()
        dst.step()          # keeps pruned weights zero; every delta_t steps drops and grows connections

Construction draws a random mask with the distribution's exact per-layer counts, zeroes the pruned weights
and registers a pre-step hook on the optimizer that masks gradients (so pruned entries build no momentum
or Adam moments; on update steps it first keeps the dense gradient for methods that grow by it).
``step()`` multiplies the weights by the mask after the optimizer's step, so nothing (decoupled weight
decay included) can resurrect a pruned weight. ``after_step=False`` skips that multiply: exact for
elementwise optimizers (SGD, Adam, AdamW), whose update of an entry with zero weight, zero gradient and
zero state is zero; ticketlab's own trainer uses it (see ``MaskEnforcer``).

An update replaces ``floor(fraction x active)`` connections per layer: the smallest-magnitude active
weights are dropped, then as many inactive positions are grown by the method's score (``grow_scores``).
A grown position that was not active before starts at zero with its optimizer state reset; a weight that
was dropped and regrown in the same update keeps its value and state (as RigL's reference code does).
Counts are unchanged, so densities stay exact at every step. Randomness comes from generators seeded by
``(seed, step)``, and ``state_dict()`` holds everything else, so a resumed run is bitwise identical.

Training FLOPs are accumulated as the steps happen (see ``training_flops``), following RigL's accounting:
a sparse step costs 3 sparse forwards; a step whose dense gradient is used costs 2 sparse + 1 dense.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from ..errors import UserError
from ..flops import weight_uses
from ..hooks import observes_only
from ..seeding import generator
from ..sparse import NamedMasks, nm_prune, prunable_names, select_topk_mask
from ..sparse.distributions import DISTRIBUTIONS, layer_counts
from ..sparse.enforce import clear_optimizer_state_, mask_grads_
from .schedule import UpdateSchedule

PATTERN_METHODS = ("static", "set", "rigl", "sparsevlr")  # drop-and-grow that can keep every group at N


class SparseTrainer(NamedMasks):
    """Static sparse training (a fixed random mask); subclasses override ``grow_scores`` and the schedule."""

    name = "static"
    distributions = DISTRIBUTIONS
    default_distribution = "erk"
    uses_dense_grad = False  # grow scores need the dense gradient of the step before an update
    sparse_kernels = True  # pruned weights are zero at every step, so --kernels sparse computes the same
    step_on_update = True  # False: a mask-update iteration applies no optimizer step (RigL's reference code)
    updates = False
    defaults: dict = {}
    # What `ticketlab dst` asks of a method (dst.runner names none): its own settings, a dataclass whose fields
    # join DSTConfig's (flags listed under the method's name in --help), and the hooks below.
    options: type | None = None
    omit_unless_chosen: tuple[str, ...] = ()  # own fields left out of other methods' stored configs
    records_step_on_update = False  # its stored config always says whether it skips the step on an update

    @classmethod
    def check_options(cls, cfg) -> None:
        """Refusals of its own options' values (UserError), whichever method runs: a config holds them all."""

    @classmethod
    def check_config(cls, cfg) -> None:
        """Refusals of a DSTConfig when this method runs (UserError)."""

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        """This method's own keyword arguments, from its options in a DSTConfig."""
        return {}

    @classmethod
    def run_inputs(cls, cfg, data, seed: int) -> dict:
        """Keyword arguments drawn from the training's data (none by default)."""
        return {}

    @classmethod
    def snapshots(cls, cfg, total: int) -> dict[int, str]:
        """{step: name}: the states saved during training (RUN/train_0/<name>.safetensors, with the mask)."""
        return {}

    @classmethod
    def ensemble_members(cls, cfg) -> list[str] | None:
        """Names of snapshots that are the ensemble's members (None: each independent run's final model)."""
        return None

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        density: float = 0.1,
        distribution: str | None = None,
        *,
        total_steps: int,
        delta_t: int | None = None,
        drop_fraction: float | None = None,
        drop_decay: str | None = None,
        end_fraction: float | None = None,
        seed: int = 0,
        names: list[str] | None = None,
        overrides: dict[str, float] | None = None,
        input_shape: tuple[int, ...] | None = None,
        after_step: bool = True,
        attack_passes: int = 0,
        erk_power_scale: float = 1.0,
        step_on_update: bool | None = None,
        pattern: tuple[int, int] | None = None,
    ):
        self.model, self.optimizer, self.seed = model, optimizer, int(seed)
        self.pattern = pattern  # (N, M): N of every M consecutive inputs, kept through every drop and grow
        if pattern is not None and (
            self.name not in PATTERN_METHODS
            or abs(density - pattern[0] / pattern[1]) > 1e-9
            or (distribution or "uniform") != "uniform"
        ):
            raise UserError(
                f"--pattern {pattern[0]}:{pattern[1]} takes {', '.join(PATTERN_METHODS)} with --density "
                f"{pattern[0] / pattern[1]:g} and --distribution uniform"
            )
        # adversarial training's extra forward-equivalents per example and step (TrainConfig.passes_per_example
        # minus 3), charged at the step's forward cost like the training passes
        self.attack_passes = int(attack_passes)
        self.after_step_pass = after_step
        self.density = float(density)
        self.distribution = distribution or self.default_distribution
        if self.distribution not in self.distributions:
            raise UserError(
                f"{self.name} takes --distribution {', '.join(self.distributions)}; got {self.distribution!r}"
            )
        if not 0 < self.density <= 1:
            raise UserError(f"--density must be in (0, 1], got {density}")
        given = {"delta_t": delta_t, "drop_fraction": drop_fraction, "decay": drop_decay, "end_fraction": end_fraction}
        sched = self.defaults | {k: v for k, v in given.items() if v is not None}
        self.schedule = UpdateSchedule(total_steps=int(total_steps), **sched)
        params = dict(model.named_parameters())
        self.names = list(names) if names is not None else prunable_names(model)
        missing = [n for n in self.names if n not in params]
        if missing:
            raise UserError(f"parameters not in the model: {', '.join(missing[:3])}")
        self.params = [params[n] for n in self.names]
        shapes = {n: tuple(p.shape) for n, p in zip(self.names, self.params)}
        self.counts = layer_counts(shapes, self.density, self._count_kind(), overrides, erk_power_scale)
        if step_on_update is not None:
            self.step_on_update = bool(step_on_update)
        self._held = None  # parameters and optimizer state from before a skipped optimizer step
        self.step_count = 0
        self.last_change = None  # (step, fraction of the kept connections that are new) of the last mask update
        self.flops_per_example = 0.0  # sum over steps of (training FLOPs of one example at that step)
        self.extra_flops = 0.0  # absolute FLOPs of mask updates (e.g. CTRE's similarity matrices)
        self._uses: dict[str, int] | None = None
        self._input_shape = tuple(input_shape) if input_shape is not None else None
        self._shape_hook = None if self._input_shape else model.register_forward_pre_hook(self._learn_shape)
        self._dense_grads: list[torch.Tensor] | None = None
        self.mask_list: list[torch.Tensor] = self.initial_masks()
        self._refresh()
        self.apply_()
        self._hook = optimizer.register_step_pre_hook(self._pre_step)

    # ----- masks -----------------------------------------------------------------------------------------
    def _count_kind(self) -> str:
        return self.distribution

    def initial_masks(self) -> list[torch.Tensor]:
        """A uniformly random mask with each layer's exact count (Evci et al. and Mocanu et al. start so)."""
        g = generator(self.seed, "dst-init")
        if self.pattern is not None:  # random N:M groups
            n, m = self.pattern
            rand = {nm: torch.rand(p.shape, generator=g) for nm, p in zip(self.names, self.params)}
            full = {nm: torch.ones(p.shape, dtype=torch.bool) for nm, p in zip(self.names, self.params)}
            kept = nm_prune(rand, full, n, m, g)
            return [kept[nm].to(p.device) for nm, p in zip(self.names, self.params)]
        return [
            select_topk_mask(torch.rand(p.shape, generator=g), self.counts[n], g).to(p.device)
            for n, p in zip(self.names, self.params)
        ]

    def _refresh(self) -> None:
        self._float = [m.to(p.dtype) for m, p in zip(self.mask_list, self.params)]
        self._fwd = None  # sparse forward FLOPs per example, recomputed lazily

    def sparse_phase(self) -> bool:
        """Whether the mask is enforced at the coming step (AC/DC's dense phases say no); before ``step()``
        increments the count, the step just taken."""
        return True

    def apply_(self) -> None:
        """Zero pruned weights and their per-element optimizer state."""
        with torch.no_grad():
            torch._foreach_mul_(self.params, self._float)
            clear_optimizer_state_(self.optimizer, self.params, self._float)

    # ----- the hooks around optimizer.step() -------------------------------------------------------------
    def _pre_step(self, optimizer, args, kwargs) -> None:
        with torch.no_grad():
            upcoming = self.step_count + 1
            if not self.step_on_update and self.is_update(upcoming):
                self._hold()
            if self.uses_dense_grad and self.wants_dense_grad(upcoming):
                self._dense_grads = [
                    p.grad.detach().abs().clone() if p.grad is not None else torch.zeros_like(p) for p in self.params
                ]
            if self.sparse_phase():
                mask_grads_(self.params, self._float)

    def _hold(self) -> None:
        """Keep every parameter and its optimizer state as they are before this step, so that ``step()``
        can undo the optimizer's step: on a mask-update iteration the update replaces the step."""
        everything = [p for group in self.optimizer.param_groups for p in group["params"]]
        state = {
            p: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in self.optimizer.state[p].items()}
            for p in everything
            if p in self.optimizer.state
        }
        self._held = (everything, [p.detach().clone() for p in everything], state)

    def _undo_step(self) -> None:
        everything, values, state = self._held
        for p, v in zip(everything, values):
            p.copy_(v)
            if p in state:
                self.optimizer.state[p] = state[p]
            else:
                self.optimizer.state.pop(p, None)
        self._held = None

    def wants_dense_grad(self, t: int) -> bool:
        return self.is_update(t)

    def is_update(self, t: int) -> bool:
        return self.updates and self.schedule.is_update(t)

    def drop_fraction(self, t: int) -> float:
        return self.schedule.fraction(t)

    def step(self) -> None:
        """Call after every ``optimizer.step()``: account the step, update the mask when due, re-mask."""
        with torch.no_grad():
            sparse = self.sparse_phase()  # the phase of the step just taken
            self.step_count += 1
            t = self.step_count
            self._account(t, sparse)
            if self._held is not None:
                self._undo_step()
            if self.is_update(t):
                self.update(t, self.drop_fraction(t))
            self._dense_grads = None
            if sparse and self.after_step_pass:
                torch._foreach_mul_(self.params, self._float)
            self.end_step(t)

    def end_step(self, t: int) -> None:
        """Hook for subclasses (phase changes, learning-rate restarts); runs after re-masking."""

    def observe(self, row: dict) -> None:
        """Told every evaluation (``val_acc``, ...); CTRE uses it to switch to random growth."""

    def rebind(self, optimizer) -> None:
        """Work with ``optimizer`` from now on (it holds the same parameters, e.g. views of them): its
        pre-step hook moves there. ``train.replicates`` trains several trainers' models in one loop so."""
        self._hook.remove()
        self.optimizer = optimizer
        self._hook = optimizer.register_step_pre_hook(self._pre_step)

    def detach(self) -> None:
        self._hook.remove()
        if self._shape_hook is not None:
            self._shape_hook.remove()
            self._shape_hook = None

    # ----- drop and grow ---------------------------------------------------------------------------------
    def grow_scores(self, t: int, g: torch.Generator) -> list[torch.Tensor]:
        raise NotImplementedError

    def random_scores(self, g: torch.Generator) -> list[torch.Tensor]:
        """Uniform random scores (random growth: SET, EDST, CTRE's random phase)."""
        return [torch.rand(p.shape, generator=g).to(p.device) for p in self.params]

    def update(self, t: int, fraction: float) -> None:
        """Drop ``floor(fraction x active)`` smallest-magnitude weights per layer and grow as many."""
        with torch.no_grad():
            g = generator(self.seed, "dst-update", t)
            scores = self.grow_scores(t, g)
            new_masks = []
            for i, (p, m, s) in enumerate(zip(self.params, self.mask_list, scores)):
                active = int(m.sum())
                k = int(active * fraction)
                if k == 0 or active == m.numel():
                    new_masks.append(m)
                    continue
                keep = select_topk_mask(torch.where(m, p.detach().abs(), torch.full_like(p, -1.0)), active - k, g)
                grown = self.choose_growth(i, s, keep, m, k, g)
                new_masks.append(keep | grown)
            self.set_masks(new_masks)

    def choose_growth(
        self, i: int, scores: torch.Tensor, keep: torch.Tensor, old: torch.Tensor, k: int, g: torch.Generator
    ) -> torch.Tensor:
        """The ``k`` best-scoring positions outside ``keep`` (just-dropped ones included, as in RigL). Under an
        N:M pattern each group regrows what it lost, at its best-scoring free positions, so it keeps N."""
        if self.pattern is not None:
            return self._grow_in_groups(scores, keep, g)
        return select_topk_mask(torch.where(keep, torch.full_like(scores, -1.0), scores.float()), k, g)

    def _grow_in_groups(self, scores: torch.Tensor, keep: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, m = self.pattern
        kept = keep.movedim(1, -1)
        shape = kept.shape
        kept = kept.reshape(-1, m)
        free = torch.where(
            kept, torch.full(kept.shape, -torch.inf, device=kept.device), scores.float().movedim(1, -1).reshape(-1, m)
        )
        tie = torch.rand(free.shape, generator=g).to(free.device)
        order = torch.argsort(tie, dim=1)  # random order first, so ties are broken by the seed
        ranked = torch.gather(
            order, 1, torch.argsort(torch.gather(free, 1, order), dim=1, descending=True, stable=True)
        )
        deficit = (n - kept.sum(1)).clamp_min(0)
        grow = torch.zeros_like(kept)
        take = torch.arange(m, device=kept.device)[None] < deficit[:, None]
        grow.scatter_(1, ranked, take)
        return grow.reshape(shape).movedim(-1, 1)

    def set_masks(self, new_masks: list[torch.Tensor]) -> None:
        """Install new masks: new connections start at zero, with optimizer state reset there and wherever
        a weight is no longer active."""
        with torch.no_grad():
            new_masks = [m.to(p.device) for m, p in zip(new_masks, self.params)]
            grown = sum(int((new & ~old).sum()) for old, new in zip(self.mask_list, new_masks))
            self.last_change = (self.step_count, grown / max(1, sum(int(m.sum()) for m in new_masks)))
            both = [(old & new).to(p.dtype) for old, new, p in zip(self.mask_list, new_masks, self.params)]
            self.mask_list = [m.to(p.device) for m, p in zip(new_masks, self.params)]
            self._refresh()
            torch._foreach_mul_(self.params, both)  # zero dropped and newly grown entries
            clear_optimizer_state_(self.optimizer, self.params, both)

    # ----- FLOPs -----------------------------------------------------------------------------------------
    @observes_only
    def _learn_shape(self, module, inputs) -> None:
        if inputs and torch.is_tensor(inputs[0]) and inputs[0].dim() >= 1:
            self._input_shape = tuple(inputs[0].shape[1:])
            self._shape_hook.remove()
            self._shape_hook = None

    def _flops(self, masks: list[torch.Tensor] | None) -> float:
        if self._uses is None:
            if self._input_shape is None:
                return 0.0
            self._uses = weight_uses(self.model, self._input_shape)
        total = 0
        for i, (n, p) in enumerate(zip(self.names, self.params)):
            kept = p.numel() if masks is None else int(masks[i].sum())
            total += 2 * kept * self._uses.get(n, 0)
        return float(total)

    def forward_flops(self, dense: bool = False) -> float:
        """Forward FLOPs (2 x MACs) per example of the masked layers, now (or dense)."""
        if dense:
            return self._flops(None)
        if self._fwd is None:
            self._fwd = self._flops(self.mask_list)
        return self._fwd

    def _account(self, t: int, sparse: bool) -> None:
        if not sparse:
            self.flops_per_example += (3 + self.attack_passes) * self.forward_flops(dense=True)
        elif self.uses_dense_grad and self.wants_dense_grad(t):
            self.flops_per_example += (2 + self.attack_passes) * self.forward_flops() + self.forward_flops(dense=True)
        else:
            self.flops_per_example += (3 + self.attack_passes) * self.forward_flops()

    def training_flops(self, batch_size: int) -> float:
        """Training FLOPs so far of the masked layers at ``batch_size`` examples per step."""
        return self.flops_per_example * batch_size + self.extra_flops

    # ----- resume ----------------------------------------------------------------------------------------
    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> tuple[dict[str, torch.Tensor], str]:
        """(tensors, JSON text): the masks, and the step count, FLOPs so far and method state."""
        tensors = {f"mask.{n}": m.contiguous() for n, m in zip(self.names, self.mask_list)}
        meta = {
            "method": self.name,
            "step": self.step_count,
            "flops_per_example": self.flops_per_example,
            "extra_flops": self.extra_flops,
            "extra": self.extra_state(),
        }
        return tensors, json.dumps(meta)

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: str) -> None:
        d = json.loads(meta)
        if d.get("method") != self.name:
            raise UserError(f"sparse-trainer state is for {d.get('method')!r}, not {self.name!r}")
        self.mask_list = [
            tensors[f"mask.{n}"].to(device=p.device, dtype=torch.bool) for n, p in zip(self.names, self.params)
        ]
        self.step_count = int(d["step"])
        self.flops_per_example = float(d["flops_per_example"])
        self.extra_flops = float(d["extra_flops"])
        self.load_extra_state(d["extra"])
        self._refresh()
        self.after_load()

    def after_load(self) -> None:
        """Hook for subclasses that derive settings (e.g. learning rates) from the step count."""
