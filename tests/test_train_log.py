"""Live logs (--log jsonl|tensorboard): named scalars per training stream, exact densities and FLOPs, mask
changes of sparse trainers, no duplicate iterations after a resume."""

import pytest
import torch
from helpers import die_after_checkpoints, one_line_exit_2

from ticketlab import flops
from ticketlab.cli import main
from ticketlab.dst.evolutionary import SET
from ticketlab.dst.runner import DSTConfig, run_dst
from ticketlab.lottery import IMPConfig
from ticketlab.lottery import imp as run_imp
from ticketlab.train import TrainConfig
from ticketlab.train import log as live
from ticketlab.train.log import read_jsonl


@pytest.fixture
def logging_as():
    def use(kind):
        live.configure(kind)

    yield use
    live.configure("none")


def imp_cfg(**kw):
    return IMPConfig(
        **(
            {
                "model": "lenet300",
                "dataset": "digits",
                "rounds": 1,
                "controls": ["reinit"],
                "train": TrainConfig(iterations=40, eval_every=20, batch_size=60),
            }
            | kw
        )
    )


def test_jsonl_streams_per_training_hold_the_named_scalars_with_exact_density_and_flops(tmp_path, logging_as):
    logging_as("jsonl")
    s = run_imp(imp_cfg(), tmp_path / "r", quiet=True)
    streams = sorted(p.parent.relative_to(tmp_path / "r").as_posix() for p in (tmp_path / "r").rglob("log.jsonl"))
    assert streams == ["round_00", "round_01", "round_01/reinit"]
    rows = read_jsonl(tmp_path / "r" / "round_01" / "log.jsonl")
    assert [r["iter"] for r in rows] == [0, 20, 40]
    need = {"loss/train", "loss/val", "loss/test", "acc/val", "acc/test", "lr", "density", "flops"}
    assert need <= set(rows[-1]) and "loss/train" not in rows[0]  # no step before the first evaluation
    layers = s["rounds"][1]["layer_densities"]
    assert {k[len("density/") :]: v for k, v in rows[-1].items() if k.startswith("density/")} == layers
    assert rows[-1]["density"] == s["rounds"][1]["density"]
    assert rows[-1]["acc/test"] == s["rounds"][1]["test_acc"] and rows[-1]["lr"] == TrainConfig().lr
    from ticketlab.io import load_tensors
    from ticketlab.models import build_model

    mask = load_tensors(tmp_path / "r" / "round_01" / "mask.safetensors")
    fwd = sum(flops.forward_flops(build_model("lenet300", (1, 8, 8), 10), (1, 8, 8), mask).values())
    assert rows[1]["flops"] == 3 * fwd * 60 * 20 and rows[2]["flops"] == 3 * fwd * 60 * 40
    dense = read_jsonl(tmp_path / "r" / "round_00" / "log.jsonl")
    assert dense[-1]["density"] == 1.0


def test_no_log_files_without_log(tmp_path):
    run_imp(imp_cfg(rounds=1, controls=[]), tmp_path / "r", quiet=True)
    assert not list((tmp_path / "r").rglob("log.jsonl")) and not list((tmp_path / "r").rglob("events.*"))


def test_set_masks_records_the_fraction_of_kept_connections_that_are_new():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = SET(model, opt, density=0.5, total_steps=10, seed=0)
    old = t.mask_list[0].clone()
    new = old.clone().flatten()
    kept, free = torch.nonzero(new).flatten(), torch.nonzero(~new).flatten()
    new[kept[0]], new[free[0]] = False, True  # one of the 2 kept connections replaced
    t.set_masks([new.view_as(old)])
    assert t.last_change == (0, 0.5)
    t.set_masks([new.view_as(old)])
    assert t.last_change == (0, 0.0)


def test_sparse_trainers_log_mask_change_at_each_update(tmp_path, logging_as):
    logging_as("jsonl")
    cfg = DSTConfig(
        model="lenet300",
        dataset="digits",
        method="set",
        density=0.2,
        delta_t=10,
        train=TrainConfig(iterations=40, eval_every=20, batch_size=60),
    )
    run_dst(cfg, tmp_path / "d", quiet=True)
    rows = read_jsonl(tmp_path / "d" / "train_0" / "log.jsonl")
    changes = [(r["iter"], r["mask_change"]) for r in rows if "mask_change" in r]
    assert [i for i, _ in changes] == [10, 20, 30]  # SET's updates stop at 75% of training
    # at most the drop fraction (0.3, cosine-decayed to 0 at the last update) is regrown
    assert 0.3 >= changes[0][1] > changes[1][1] > 0 and changes[2][1] == 0
    evals = [r for r in rows if "acc/test" in r]
    assert all(abs(r["density"] - 0.2) < 1e-3 for r in evals)
    assert evals[-1]["flops"] > evals[1]["flops"] > 0


def test_a_resumed_training_logs_each_iteration_once_and_as_the_uninterrupted_one(tmp_path, monkeypatch, logging_as):
    logging_as("jsonl")
    cfg = imp_cfg(rounds=1, controls=[], train=TrainConfig(iterations=60, eval_every=10, batch_size=60))
    run_imp(cfg, tmp_path / "ref", quiet=True, checkpoint_every=20)
    restore = die_after_checkpoints(monkeypatch, n=2)
    with pytest.raises(KeyboardInterrupt):
        run_imp(cfg, tmp_path / "r", quiet=True, checkpoint_every=20)
    cut = read_jsonl(tmp_path / "r" / "round_00" / "log.jsonl")
    assert cut[-1]["iter"] == 40
    restore()
    run_imp(cfg, tmp_path / "r", quiet=True, checkpoint_every=20)
    ref = read_jsonl(tmp_path / "ref" / "round_00" / "log.jsonl")
    got = read_jsonl(tmp_path / "r" / "round_00" / "log.jsonl")
    assert [r["iter"] for r in got] == [0, 10, 20, 30, 40, 50, 60]
    # the rows after the checkpoint are the uninterrupted run's (the train loss restarts its mean at 40)
    assert got[5:] == ref[5:] and got[:5] == ref[:5]


def test_tensorboard_event_files_per_training_hold_the_tags(tmp_path, logging_as):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging_as("tensorboard")
    run_imp(imp_cfg(), tmp_path / "r", quiet=True)
    runs = sorted(p.parent.relative_to(tmp_path / "r").as_posix() for p in (tmp_path / "r").rglob("events.out.*"))
    assert runs == ["round_00", "round_01", "round_01/reinit"]
    acc = EventAccumulator(str(tmp_path / "r" / "round_01"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/train", "acc/test", "lr", "density", "density/1.weight", "flops"} <= tags
    assert [e.step for e in acc.Scalars("acc/test")] == [0, 20, 40]


def test_log_flag_errors_are_one_line(tmp_path, capsys, monkeypatch):
    code = main(["imp", "--model", "lenet300", "--dataset", "digits", "--log", "csv", "--out", str(tmp_path / "r")])
    one_line_exit_2(code, capsys.readouterr().err, "unknown --log 'csv'")
    assert not (tmp_path / "r").exists()
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *a, **kw):
        if name == "tensorboard":
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    code = main(
        ["imp", "--model", "lenet300", "--dataset", "digits", "--log", "tensorboard", "--out", str(tmp_path / "r")]
    )
    one_line_exit_2(code, capsys.readouterr().err, "pip install 'ticketlab[tensorboard]'")
    assert not (tmp_path / "r").exists()


def test_sweep_points_log_in_their_own_folders(tmp_path):
    code = main(
        [
            "sweep",
            "imp",
            "--vary",
            "rate=0.2,0.5",
            "--model",
            "lenet300",
            "--dataset",
            "digits",
            "--rounds",
            "1",
            "--iterations",
            "20",
            "--eval-every",
            "10",
            "--log",
            "jsonl",
            "--quiet",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    live.configure("none")
    assert code == 0
    streams = sorted(p.parent.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("log.jsonl"))
    assert streams == [f"rate={r}/seed_0/round_0{k}" for r in ("0.2", "0.5") for k in (0, 1)]


def test_resuming_rewrites_the_kept_log_atomically_then_appends(tmp_path, monkeypatch):
    """A kill between the rewrite and the first new line leaves the kept part, never an empty file: the kept
    lines go through a temporary file renamed onto the log."""
    import os

    from ticketlab.train.log import JsonlLog

    log = JsonlLog(tmp_path)
    (tmp_path / "log.jsonl").write_text('{"iter": 10, "a": 1}\n{"iter": 20, "a": 2}\n{"iter": 30, "a": 3}\n')
    renamed = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: renamed.append((a, b)) or real(a, b))
    log.start(20)
    assert [os.path.basename(b) for _, b in renamed] == ["log.jsonl"]
    log.scalars(25, {"a": 9.0})
    log.close()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert lines == ['{"iter": 10, "a": 1}', '{"iter": 20, "a": 2}', '{"iter": 25, "a": 9.0}']
