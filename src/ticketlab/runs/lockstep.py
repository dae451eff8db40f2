"""Lockstep: several runs of one command (seeds) executed together, their trainings packed into vectorised loops.

Each run is an ordinary runner call in a thread of its own. Whenever it reaches a training (``train_cached``),
the thread hands the training to the coordinator and waits. When every unfinished run is waiting, the
coordinator trains what they handed in: trainings that can share a loop (same architecture, data, settings,
budget and masked layers; plain, augmented or mixed-precision training with a static mask or a dynamic sparse
trainer) together through ``train.replicates``, the others one by one. Then every run goes on to its next
training. Only one thread computes at any time, and a pack's members are ordered by run, so the result does not
depend on thread timing.

Runners need no change: the packing happens below them, so every command's ``--seeds N`` gets it. A runner
whose trainings do not depend on each other (IMP's ticket and controls of a round, the methods of a baseline
table) may hand them in together with ``together``, so that they share a pack too, within one run as well.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from ..data import Dataset
from ..errors import UserError
from ..train import distributed
from ..train.replicates import NotVectorizable, signature, train_replicates

_local = threading.local()
REPLICATE_MODES = ("auto", "vectorized", "sequential")


def resolve(mode: str, device: str) -> str:
    """``auto``: vectorised on CUDA (a step of a small net is launch-bound there), sequential on CPU (measured:
    no faster there, and slower for convolutions; see benchmarks/bench_replicates.py)."""

    if mode not in REPLICATE_MODES:
        raise UserError(f"unknown --replicates {mode!r}; choose one of: {', '.join(REPLICATE_MODES)}")

    if distributed.active():  # data-parallel trainings run one at a time across the ranks
        return "sequential"
    if mode == "auto":
        return "vectorized" if str(device).startswith("cuda") else "sequential"
    return mode


def current() -> Lockstep | None:
    return getattr(_local, "pack", None)


@dataclass
class Request:
    """One training a run hands to the coordinator (the arguments ``train`` would get)."""

    index: tuple  # the run's position (orders a pack's members; ``together`` adds levels)
    model: torch.nn.Module
    data: object
    cfg: object
    mask: dict | None
    seed: int
    start_iter: int
    total: int
    checkpointer: object
    log: object
    alone: Callable[[], object]  # the same training through ``train`` (when it cannot be packed)
    sparse: Callable | None = None  # builds the training's dynamic sparse trainer (``train``'s ``sparse``)
    result: object = None
    error: BaseException | None = None
    done: bool = False
    key: tuple = field(default=())

    def __post_init__(self):
        self.key = (
            signature(self.model),
            repr(sorted(asdict(self.cfg).items())),
            self.start_iter,
            self.total,
            None if self.mask is None else tuple(self.mask),
            tuple(self.data.x_train.shape),
            str(self.data.x_train.device),
            self.sparse is not None,
        )


# What a vectorised loop reads of its pack's one dataset: trainings whose data differ in any of them (a test set
# of their own, another standardisation) train on their own.
DATA_FIELDS = (*Dataset.TENSORS, "pixel_range")


def _same_data(a, b) -> bool:
    if a is b:
        return True
    for k in DATA_FIELDS:
        u, v = getattr(a, k), getattr(b, k)
        if isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor):
            if not torch.equal(u, v):
                return False
        elif u != v:  # a tensor against None, or two pixel ranges
            return False
    return True


def _convolutional(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())


class Lockstep:
    # vmap turns a pack's convolutions into grouped convolutions, which CPUs run slower than the convolutions
    # one by one (benchmarks/bench_replicates.py: Conv-2, 8 replicates); so on CPU such packs train one by one.
    cpu_convs = False
    max_pack = 64  # replicates per vectorised loop: bounds the stacked state (weights, gradients, optimizer)

    def __init__(self, quiet: bool = True):
        self.cv = threading.Condition()
        self.unfinished = 0
        self.waiting: list[Request] = []
        self.quiet = quiet
        self.packs: list[int] = []  # sizes of the vectorised packs trained (for tests and progress)

    def run(self, fns: list[Callable[[], object]]) -> list:
        """Run every ``fns[i]()`` in its own thread, in lockstep; returns their results (re-raises the first
        error, by run order, after every run has stopped)."""
        self.unfinished = len(fns)
        threads, results, errors = self._spawn(fns, (), None)
        while True:
            with self.cv:
                self.cv.wait_for(lambda: self.unfinished == 0 or len(self.waiting) == self.unfinished)
                if self.unfinished == 0:
                    break
                batch, self.waiting = self.waiting, []
            try:
                self._train(batch)
            except BaseException as e:
                for r in batch:  # the runs still waiting stop with it (nothing half-trained is written)
                    if r.result is None and r.error is None:
                        r.error = e
                raise
            finally:
                with self.cv:
                    for r in batch:
                        r.done = True
                    self.cv.notify_all()
        return _joined(threads, results, errors)

    def _spawn(self, fns: list[Callable[[], object]], parent: tuple, group: list | None):
        """Start ``fns`` as runs (threads) indexed ``parent + (i,)``. ``group`` (children of ``together``):
        a one-item list counting those still running; the last to finish hands its place in ``unfinished``
        back to the parent instead of giving it up, so the coordinator never trains a batch without it."""
        results: list = [None] * len(fns)
        errors: list = [None] * len(fns)

        def body(i: int) -> None:
            _local.pack, _local.index = self, parent + (i,)
            try:
                results[i] = fns[i]()
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                errors[i] = e
            finally:
                with self.cv:
                    if group is not None:
                        group[0] -= 1
                    if group is None or group[0] > 0:
                        self.unfinished -= 1
                    self.cv.notify_all()

        threads = [
            threading.Thread(target=body, args=(i,), daemon=True, name=f"ticketlab-run-{parent + (i,)}")
            for i in range(len(fns))
        ]
        for t in threads:
            t.start()
        return threads, results, errors

    def fork(self, fns: list[Callable[[], object]]) -> list:
        """From a run's thread: run ``fns`` as sub-runs of this run (see ``together``)."""
        group = [len(fns)]
        with self.cv:
            self.unfinished += len(fns) - 1  # this thread waits on its children: they stand in for it
        threads, results, errors = self._spawn(fns, index(), group)
        with self.cv:
            self.cv.wait_for(lambda: group[0] == 0)
        return _joined(threads, results, errors)

    def submit(self, req: Request):
        """From a run's thread: hand in a training and wait for its result."""
        with self.cv:
            self.waiting.append(req)
            self.cv.notify_all()
            self.cv.wait_for(lambda: req.done)
        if req.error is not None:
            raise req.error
        return req.result

    def _train(self, batch: list[Request]) -> None:
        groups: dict[tuple, list[Request]] = {}
        for r in sorted(batch, key=lambda r: r.index):
            groups.setdefault(r.key, []).append(r)
        for reqs in groups.values():
            packable: list[Request] = []
            rest: list[Request] = []
            for r in reqs:
                (packable if _same_data(r.data, reqs[0].data) else rest).append(r)
            for i in range(0, len(packable), self.max_pack):
                self._train_pack(packable[i : i + self.max_pack], rest if i == 0 else [])

    def _train_pack(self, packable: list[Request], rest: list[Request]) -> None:
        """Train ``packable`` in one vectorised loop where it can (else one by one), then ``rest`` one by one."""
        on_cpu = packable[0].data.x_train.device.type == "cpu"
        if len(packable) > 1 and (self.cpu_convs or not on_cpu or not _convolutional(packable[0].model)):
            try:
                results = train_replicates(
                    [r.model for r in packable],
                    packable[0].data,
                    packable[0].cfg,
                    masks=[r.mask for r in packable],
                    seeds=[r.seed for r in packable],
                    start_iter=packable[0].start_iter,
                    total=packable[0].total,
                    checkpointers=[r.checkpointer for r in packable],
                    logs=[r.log for r in packable],
                    progress=not self.quiet,
                    desc="trainings",
                    sparse=[r.sparse for r in packable],
                )
                for r, res in zip(packable, results):
                    r.result = res
                self.packs.append(len(packable))
            except NotVectorizable:
                rest = packable + rest
            # any other error: ``run`` hands it to every run of the batch still waiting
        else:
            rest = packable + rest
        for r in rest:
            try:
                r.result = r.alone()
            except BaseException as e:  # noqa: BLE001 - the run that handed it in gets it
                r.error = e
                if isinstance(e, KeyboardInterrupt):
                    raise


def _joined(threads: list[threading.Thread], results: list, errors: list) -> list:
    """Wait for the threads; raise the first error (by run order), else return the results."""
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


def index() -> tuple:
    return getattr(_local, "index", ())


def together(fns: list[Callable[[], object]]) -> list:
    """Run independent pieces of one run (each typically one training, on its own model object) so that their
    trainings can share a vectorised pack: sub-runs of the current lockstep when there is one, else one after
    the other. Returns their results in order; the first error (by order) is raised after all have stopped."""
    pack = current()
    if pack is None or len(fns) < 2:
        return [f() for f in fns]
    out: list = []
    for i in range(0, len(fns), pack.max_pack):  # at most a pack's worth of models alive at once
        out += pack.fork(fns[i : i + pack.max_pack])
    return out


def own_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model a piece handed to ``together`` should train: in lockstep a copy of its own (its siblings may be
    training the shared one at the same time), else the shared model itself."""
    return copy.deepcopy(model) if current() is not None else model


def run_all(fns: list[Callable[[], object]], mode: str, quiet: bool = True) -> list:
    """Run whole runs (a command's seeds, or one run): in one lockstep when ``mode`` is "vectorized" (see
    ``resolve``), else one after the other."""
    if mode == "vectorized":
        return Lockstep(quiet=quiet).run(fns)
    return [f() for f in fns]
