"""The lockstep coordinator with trainings that are only records (the vectorised loop replaced by a spy):
which trainings share a pack (never two with different settings, data, masks or budgets), pack sizes, the
order of members, fallbacks to one-by-one training, errors, ``together`` and ``resolve``."""

import threading
import time

import pytest
import torch
from torch import nn

from ticketlab.errors import UserError
from ticketlab.runs import lockstep
from ticketlab.runs.lockstep import Lockstep, Request, own_model, resolve, run_all, together
from ticketlab.train import TrainConfig
from ticketlab.train.replicates import NotVectorizable


class Data:
    """What the coordinator reads of a dataset: the training split decides a pack, the rest must agree."""

    def __init__(self, x=None, y=None, **other):
        self.x_train = torch.zeros(8, 3) if x is None else x
        self.y_train = torch.zeros(8, dtype=torch.long) if y is None else y
        self.x_val = self.y_val = self.x_test = self.y_test = self.mean = self.std = self.pixel_range = None
        self.__dict__.update(other)


DATA = Data()


@pytest.fixture
def packed(monkeypatch):
    """Every vectorised loop the coordinator asks for: the tags of its members, in order."""
    calls = []

    def fake(models, data, cfg, *, masks, seeds, start_iter, total, checkpointers, logs, progress, desc, sparse):
        calls.append([m.tag for m in models])
        return [f"packed:{m.tag}" for m in models]

    monkeypatch.setattr(lockstep, "train_replicates", fake)
    return calls


def model(tag, width=3, conv=False):
    m = nn.Sequential(nn.Conv1d(1, 1, 1)) if conv else nn.Sequential(nn.Linear(width, 2))
    m.tag = tag
    return m


def training(tag, *, cfg=None, width=3, data=DATA, mask=None, start=0, total=10, sparse=None, conv=False, alone=None):
    """A run that hands in one training and returns what it got back."""

    def run():
        m = model(tag, width, conv)
        req = Request(
            lockstep.index(),
            m,
            data,
            cfg or TrainConfig(),
            mask,
            0,
            start,
            total,
            None,
            None,
            alone or (lambda: f"alone:{tag}"),
            sparse=sparse,
        )
        return lockstep.current().submit(req)

    return run


def test_trainings_with_the_same_settings_share_one_pack_in_run_order(packed):
    out = Lockstep().run([training(t) for t in "abcd"])
    assert out == ["packed:a", "packed:b", "packed:c", "packed:d"] and packed == [["a", "b", "c", "d"]]


@pytest.mark.parametrize(
    "differ",
    [
        dict(cfg=TrainConfig(lr=0.5)),
        dict(width=4),
        dict(start=5),
        dict(total=20),
        dict(mask={"0.weight": torch.ones(2, 3, dtype=torch.bool)}),
        dict(data=Data(torch.zeros(9, 3))),
        dict(sparse=lambda opt: None),
    ],
)
def test_trainings_that_differ_in_any_setting_never_share_a_pack(packed, differ):
    out = Lockstep().run([training("a"), training("b", **differ), training("c"), training("d", **differ)])
    assert sorted(packed) == [["a", "c"], ["b", "d"]]
    assert out == ["packed:a", "packed:b", "packed:c", "packed:d"]


def test_same_shaped_data_with_other_values_trains_alone(packed):
    other = Data(torch.ones(8, 3))
    out = Lockstep().run([training("a"), training("b", data=other), training("c")])
    assert packed == [["a", "c"]] and out == ["packed:a", "alone:b", "packed:c"]
    labels = Data(y=torch.ones(8, dtype=torch.long))
    packed.clear()
    assert Lockstep().run([training("a"), training("b", data=labels), training("c")])[1] == "alone:b"
    assert packed == [["a", "c"]]


SPLITS = dict(x_val=torch.zeros(4, 3), y_val=torch.zeros(4, dtype=torch.long), x_test=torch.zeros(5, 3))
SPLITS.update(y_test=torch.zeros(5, dtype=torch.long), mean=torch.zeros(1), std=torch.ones(1), pixel_range=(0.0, 1.0))


@pytest.mark.parametrize(
    "field, other",
    [
        ("x_val", torch.ones(4, 3)),
        ("y_val", torch.ones(4, dtype=torch.long)),
        ("x_test", torch.ones(5, 3)),
        ("y_test", torch.ones(5, dtype=torch.long)),
        ("x_test", None),
        ("mean", torch.full((1,), 0.5)),
        ("std", torch.full((1,), 2.0)),
        ("std", None),
        ("pixel_range", (0.0, 255.0)),
        ("pixel_range", None),
    ],
)
def test_data_that_differ_in_anything_the_loop_reads_train_alone(packed, field, other):
    """The loop evaluates on its pack's one dataset and augments with its standardisation: a run whose test
    set (or validation set, standardisation, pixel range) is another must not be reported on the first's."""
    copy = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in SPLITS.items()}
    same = Data(**copy)
    copy[field] = other
    out = Lockstep().run(
        [training("a", data=Data(**SPLITS)), training("b", data=Data(**copy)), training("c", data=same)]
    )
    assert packed == [["a", "c"]] and out == ["packed:a", "alone:b", "packed:c"]


def test_what_trains_alone_beside_several_packs_trains_once(packed, monkeypatch):
    monkeypatch.setattr(Lockstep, "max_pack", 2)
    calls = []
    other = training("x", data=Data(torch.ones(8, 3)), alone=lambda: calls.append("x") or "alone:x")
    out = Lockstep().run([training("a"), training("b"), other, training("c"), training("d")])
    assert packed == [["a", "b"], ["c", "d"]] and calls == ["x"]
    assert out == ["packed:a", "packed:b", "alone:x", "packed:c", "packed:d"]


def test_a_pack_trains_with_each_members_own_settings(monkeypatch):
    got = {}

    def fake(models, data, cfg, **kw):
        got.update(models=models, data=data, cfg=cfg, **kw)
        return [f"packed:{i}" for i in range(len(models))]

    monkeypatch.setattr(lockstep, "train_replicates", fake)
    cfg, data = TrainConfig(lr=0.3), Data()
    masks = [{"0.weight": torch.ones(2, 3, dtype=torch.bool)} for _ in range(2)]

    def run(i):
        def body():
            req = Request(
                lockstep.index(), model(f"m{i}"), data, cfg, masks[i], 10 + i, 3, 7, f"ck{i}", f"log{i}", lambda: None
            )
            req.sparse = f"sparse{i}"
            return lockstep.current().submit(req)

        return body

    assert Lockstep(quiet=False).run([run(0), run(1)]) == ["packed:0", "packed:1"]
    assert [m.tag for m in got["models"]] == ["m0", "m1"] and got["data"] is data and got["cfg"] is cfg
    assert got["masks"] == masks and got["seeds"] == [10, 11] and (got["start_iter"], got["total"]) == (3, 7)
    assert got["checkpointers"] == ["ck0", "ck1"] and got["logs"] == ["log0", "log1"]
    assert got["sparse"] == ["sparse0", "sparse1"] and got["desc"] == "trainings" and got["progress"] is True
    Lockstep().run([run(0), run(1)])
    assert got["progress"] is False  # quiet by default


def test_a_training_alone_in_its_group_is_not_vectorised(packed):
    assert Lockstep().run([training("a"), training("b", width=5)]) == ["alone:a", "alone:b"] and packed == []


def test_packs_hold_at_most_max_pack_trainings(packed, monkeypatch):
    monkeypatch.setattr(Lockstep, "max_pack", 2)
    out = Lockstep().run([training(t) for t in "abcde"])
    assert packed == [["a", "b"], ["c", "d"]] and out[4] == "alone:e"


def test_convolutional_trainings_on_the_cpu_train_one_by_one_unless_asked(packed, monkeypatch):
    assert Lockstep().run([training(t, conv=True) for t in "ab"]) == ["alone:a", "alone:b"] and packed == []
    monkeypatch.setattr(Lockstep, "cpu_convs", True)
    assert Lockstep().run([training(t, conv=True) for t in "ab"]) == ["packed:a", "packed:b"]


def test_trainings_the_loop_cannot_vectorise_train_alone(monkeypatch):
    def refuse(*a, **k):
        raise NotVectorizable("no")

    monkeypatch.setattr(lockstep, "train_replicates", refuse)
    ls = Lockstep()
    assert ls.run([training(t) for t in "ab"]) == ["alone:a", "alone:b"] and ls.packs == []


def test_a_pack_records_its_size(packed):
    ls = Lockstep()
    ls.run([training(t) for t in "abc"] + [training("x", width=9)])
    assert ls.packs == [3]


def test_an_error_in_a_pack_reaches_every_member_and_the_caller(monkeypatch):
    def fail(*a, **k):
        raise RuntimeError("pack broke")

    monkeypatch.setattr(lockstep, "train_replicates", fail)
    seen, gone = [], threading.Semaphore(0)

    def member(tag, **kw):
        def run():
            try:
                seen.append(f"{tag} got {training(tag, **kw)()}")  # without a result it would write half a run
            except RuntimeError as e:
                seen.append(f"{tag}: {e}")
            finally:
                gone.release()

        return run

    with pytest.raises(RuntimeError, match="pack broke"):
        Lockstep().run([member("w", width=4), member("a"), member("b"), member("x", width=9)])
    assert all(gone.acquire(timeout=10) for _ in range(4))
    # w trained alone before the pack and keeps its result; x, not yet trained alone, stops with the pack
    assert sorted(seen) == ["a: pack broke", "b: pack broke", "w got alone:w", "x: pack broke"]


def test_trainings_on_other_devices_never_share_a_pack(packed):
    meta = Data(torch.zeros(8, 3, device="meta"), torch.zeros(8, dtype=torch.long, device="meta"))
    out = Lockstep().run([training("a"), training("b", data=meta), training("c"), training("d", data=meta)])
    assert sorted(packed) == [["a", "c"], ["b", "d"]] and out == ["packed:a", "packed:b", "packed:c", "packed:d"]


def test_an_error_training_alone_reaches_only_its_run_first_by_run_order(packed):
    def broken():
        raise ValueError("bad b")

    with pytest.raises(ValueError, match="bad b"):
        Lockstep().run([training("a", width=4), training("b", width=5, alone=broken), training("c", width=6)])


def test_an_interrupt_while_training_alone_stops_the_lockstep(packed):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Lockstep().run([training("a", width=4, alone=interrupted), training("b", width=5)])


def test_runs_go_on_to_their_next_training_after_each_round(packed):
    def two_trainings(tag):
        def run():
            first = training(tag)()
            second = training(tag + "2", width=7)()
            return first, second

        return run

    out = Lockstep().run([two_trainings("a"), two_trainings("b")])
    assert out == [("packed:a", "packed:a2"), ("packed:b", "packed:b2")]
    assert packed == [["a", "b"], ["a2", "b2"]]


def test_the_coordinator_wakes_only_when_every_unfinished_run_waits(packed):
    batches = []

    class Spy(Lockstep):
        def _train(self, batch):
            batches.append(sorted(r.model.tag for r in batch))
            super()._train(batch)

    def late(tag, delay):
        def run():
            time.sleep(delay)  # still computing while the others wait: no batch is trained without it
            return training(tag)()

        return run

    assert Spy().run([late("a", 0.1)]) == ["alone:a"] and batches == [["a"]]
    batches.clear()
    assert Spy().run([training("a"), late("b", 0.1), lambda: time.sleep(0.2)]) == ["packed:a", "packed:b", None]
    assert batches == [["a", "b"]]


def test_a_run_that_trains_nothing_finishes_beside_those_that_do(packed):
    out = Lockstep().run([lambda: "no training", training("a"), training("b")])
    assert out == ["no training", "packed:a", "packed:b"]


def test_together_runs_pieces_as_sub_runs_that_share_packs(packed):
    def run():
        return together([training("t1"), training("t2"), training("t3")])

    assert Lockstep().run([run, run]) == [["packed:t1", "packed:t2", "packed:t3"]] * 2
    assert packed == [["t1", "t2", "t3", "t1", "t2", "t3"]]  # ordered by run, then piece


def test_together_outside_a_lockstep_or_with_one_piece_runs_them_in_turn():
    order = []
    assert together([lambda: order.append(1) or 1, lambda: order.append(2) or 2]) == [1, 2] and order == [1, 2]
    assert lockstep.current() is None


def test_together_splits_pieces_into_max_pack_forks_and_raises_the_first_error(packed, monkeypatch):
    monkeypatch.setattr(Lockstep, "max_pack", 2)
    assert Lockstep().run([lambda: together([training(t) for t in "abc"])]) == [["packed:a", "packed:b", "alone:c"]]

    def bad(msg):
        def f():
            raise ValueError(msg)

        return f

    with pytest.raises(ValueError, match="first"):
        Lockstep().run([lambda: together([lambda: 1, bad("first"), bad("second")])])


def test_own_model_is_a_copy_only_in_lockstep():
    m = nn.Linear(2, 2)
    assert own_model(m) is m
    got = Lockstep().run([lambda: own_model(m)])[0]
    assert got is not m and torch.equal(got.weight, m.weight)


def test_each_run_thread_knows_its_index_and_its_lockstep():
    seen = []
    ls = Lockstep()

    def run():
        seen.append((lockstep.index(), lockstep.current() is ls, threading.current_thread().name))
        return together([lambda: lockstep.index(), lambda: lockstep.index()])

    assert ls.run([run, run]) == [[(0, 0), (0, 1)], [(1, 0), (1, 1)]]
    assert sorted(s[:2] for s in seen) == [((0,), True), ((1,), True)]
    assert lockstep.index() == () and lockstep.current() is None


def test_resolve_picks_vectorised_on_cuda_and_sequential_on_the_cpu():
    assert resolve("auto", "cpu") == "sequential" and resolve("auto", "cuda") == "vectorized"
    assert resolve("auto", "cuda:1") == "vectorized"
    assert resolve("vectorized", "cpu") == "vectorized" and resolve("sequential", "cuda") == "sequential"
    with pytest.raises(UserError, match="unknown --replicates 'fast'; choose one of: auto, vectorized, sequential"):
        resolve("fast", "cpu")


def test_resolve_is_sequential_under_data_parallel_training(monkeypatch):
    from ticketlab.train import distributed

    monkeypatch.setattr(distributed, "active", lambda: True)
    assert resolve("vectorized", "cuda") == "sequential" and resolve("auto", "cuda") == "sequential"


def test_run_all_runs_in_turn_or_in_one_lockstep(packed):
    assert run_all([lambda: 1, lambda: 2], "sequential") == [1, 2]
    assert run_all([training("a"), training("b")], "vectorized") == ["packed:a", "packed:b"]


def test_run_all_shows_the_packs_progress_only_when_asked(monkeypatch):
    shown = []

    def fake(models, data, cfg, *, progress, **kw):
        shown.append(progress)
        return [None] * len(models)

    monkeypatch.setattr(lockstep, "train_replicates", fake)
    run_all([training("a"), training("b")], "vectorized")
    run_all([training("a"), training("b")], "vectorized", quiet=False)
    assert shown == [False, True]


def test_each_run_has_its_own_named_daemon_thread():
    seen = []
    Lockstep(quiet=True).run([lambda: seen.append(threading.current_thread()) for _ in range(2)])
    assert sorted(t.name for t in seen) == ["ticketlab-run-(0,)", "ticketlab-run-(1,)"]  # what py-spy shows
    assert all(t.daemon for t in seen)  # a run left waiting after Ctrl-C never keeps the process alive
