"""train_cached, the one cached training every runner repeats: what each layout writes, what a cache hit
returns (and that it trains nothing), the start weights and mask, recorded extras, refusals of corrupt
records, the printed line, and when a training is handed to a lockstep."""

import json
import re

import pytest
import torch
from torch import nn

from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.runs import lockstep, training
from ticketlab.runs.training import train_cached
from ticketlab.train import TrainConfig

CFG = TrainConfig(iterations=6, batch_size=16, eval_every=3, lr=0.05)


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 10))


def cached(where, model, data, **kw):
    args = dict(start=None, total=CFG.iterations, seed=0, checkpoint_every=1000, label="t", quiet=True) | kw
    return train_cached(where, model, data, CFG, **args)


def no_training(monkeypatch):
    monkeypatch.setattr(training, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))


def test_the_metrics_layout_writes_summary_history_and_final_weights(tmp_path, tiny_data):
    m = net()
    summary, history = cached(tmp_path / "t", m, tiny_data)
    files = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert files == ["final.safetensors", "metrics.json"]  # the checkpoint is gone once finished
    stored = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert stored == {"summary": summary, "history": history}
    assert [h["iter"] for h in history] == [0, 3, 6] and summary["iterations"] == 6
    assert set(summary) == {"test_acc", "val_acc", "early_stop_iter", "early_stop_test_acc", "iterations"}
    assert torch.equal(load_tensors(tmp_path / "t" / "final.safetensors")["1.weight"], m[1].weight.detach())


def test_a_finished_training_is_read_back_and_not_redone(tmp_path, tiny_data, monkeypatch):
    first = cached(tmp_path / "t", net(), tiny_data)
    trained = load_tensors(tmp_path / "t" / "final.safetensors")
    no_training(monkeypatch)
    other = net(seed=5)
    assert cached(tmp_path / "t", other, tiny_data) == first
    assert not torch.equal(other[1].weight, trained["1.weight"])  # left as it was
    assert cached(tmp_path / "t", other, tiny_data, reload_final=True) == first
    assert torch.equal(other[1].weight, trained["1.weight"])


def test_the_result_layout_stores_the_summary_with_its_record_and_the_history_apart(tmp_path, tiny_data, monkeypatch):
    seen = []

    def record(result, updater):
        seen.append((len(result.history), updater))
        return {"extra": 7}

    summary, history = cached(tmp_path / "r", net(), tiny_data, layout="result", record=record)
    assert summary["extra"] == 7 and seen == [(3, None)]
    assert json.loads((tmp_path / "r" / "result.json").read_text()) == summary
    assert json.loads((tmp_path / "r" / "metrics.json").read_text()) == {"history": history}
    no_training(monkeypatch)
    assert cached(tmp_path / "r", net(), tiny_data, layout="result") == (summary, history)


def test_the_result_layout_without_history_reads_back_an_empty_one(tmp_path, tiny_data, monkeypatch):
    summary, _ = cached(tmp_path / "r", net(), tiny_data, layout="result", keep_history=False, save_final=False)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["result.json"]
    no_training(monkeypatch)
    assert cached(tmp_path / "r", net(), tiny_data, layout="result") == (summary, [])


def test_an_unknown_layout_is_a_programming_error(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="layout must be one of"):
        cached(tmp_path / "t", net(), tiny_data, layout="other")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("layout, record", [("metrics", [1]), ("metrics", {"history": []}), ("result", [1])])
def test_a_corrupt_record_is_refused_saying_what_to_delete(tmp_path, tiny_data, layout, record):
    (tmp_path / "t").mkdir()
    name = "metrics.json" if layout == "metrics" else "result.json"
    (tmp_path / "t" / name).write_text(json.dumps(record))
    with pytest.raises(UserError, match=rf"{name} is corrupt; delete it to retrain"):
        cached(tmp_path / "t", net(), tiny_data, layout=layout)


def test_training_starts_from_the_given_weights_under_the_mask_and_records_the_density(
    tmp_path, tiny_data, monkeypatch
):
    start = {k: torch.full_like(v, 0.01) for k, v in net().state_dict().items()}
    mask = {"1.weight": torch.arange(160).view(10, 16) % 4 == 0}
    seen = {}
    real = training.train

    def spy(model, *a, **k):
        seen["w"] = model[1].weight.detach().clone()
        return real(model, *a, **k)

    monkeypatch.setattr(training, "train", spy)
    summary, _ = cached(tmp_path / "t", net(seed=3), tiny_data, start=start, mask=mask)
    assert torch.equal(seen["w"], 0.01 * mask["1.weight"].float())  # start loaded, then masked
    assert summary["density"] == 0.25


def test_a_training_prints_one_line_unless_quiet(tmp_path, tiny_data, capsys):
    mask = {"1.weight": torch.ones(10, 16, dtype=torch.bool)}
    s, _ = cached(tmp_path / "t", net(), tiny_data, quiet=False, label="round 2", mask=mask)
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == (
        f"round 2: density 100.00%  test acc {s['test_acc']:.4f}  early stop "
        f"{s['early_stop_test_acc']:.4f} @ {s['early_stop_iter']}"
    )
    cached(tmp_path / "u", net(), tiny_data, quiet=False, label="dense")
    assert capsys.readouterr().err.splitlines()[-1].startswith("dense: test acc ")
    cached(tmp_path / "v", net(), tiny_data)
    assert capsys.readouterr().err == ""


def test_the_progress_bar_carries_the_label(tmp_path, tiny_data, capsys):
    cached(tmp_path / "t", net(), tiny_data, quiet=False, label="round 7")
    err = capsys.readouterr().err
    assert re.search(r"round 7: +\d+%\|", err) and "train:" not in err


def test_snapshots_are_handed_to_on_snapshot_at_the_asked_iterations(tmp_path, tiny_data):
    seen = []
    cached(tmp_path / "t", net(), tiny_data, snapshot_at={0, 4}, on_snapshot=lambda it, m: seen.append(it))
    assert seen == [0, 4]


def test_an_interrupted_training_resumes_from_its_checkpoint_to_the_same_bits(tmp_path, tiny_data, monkeypatch):
    from helpers import die_after_checkpoints

    whole, _ = cached(tmp_path / "whole", net(), tiny_data)
    w = load_tensors(tmp_path / "whole" / "final.safetensors")
    restore = die_after_checkpoints(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        cached(tmp_path / "t", net(), tiny_data, checkpoint_every=2)
    restore()
    assert (tmp_path / "t" / "checkpoint.safetensors").exists()
    assert cached(tmp_path / "t", net(), tiny_data, checkpoint_every=2)[0] == whole
    assert all(torch.equal(v, w[k]) for k, v in load_tensors(tmp_path / "t" / "final.safetensors").items())


def test_in_lockstep_a_plain_training_is_handed_in_and_one_with_snapshots_or_frozen_weights_is_not(tmp_path, tiny_data):
    seen = []

    class Spy(lockstep.Lockstep):
        def submit(self, req):
            seen.append(req.cfg == CFG and req.total == 6 and req.seed == 4)
            return req.alone()

    ls = Spy()
    ls.run([lambda: cached(tmp_path / "a", net(), tiny_data, seed=4)])
    assert seen == [True]
    ls.run([lambda: cached(tmp_path / "b", net(), tiny_data, frozen={"1.bias": torch.zeros(10)})])
    ls.run([lambda: cached(tmp_path / "c", net(), tiny_data, snapshot_at={3}, on_snapshot=lambda *a: None)])
    assert seen == [True] and (tmp_path / "c" / "metrics.json").exists()


def test_with_a_live_log_configured_the_training_writes_it_in_its_own_folder(tmp_path, tiny_data, monkeypatch):
    from ticketlab.train import log

    monkeypatch.setattr(log, "_kind", "jsonl")
    cached(tmp_path / "t", net(), tiny_data)
    rows = log.read_jsonl(tmp_path / "t" / "log.jsonl")
    assert rows and not (tmp_path / "log.jsonl").exists()


def test_a_result_layouts_metrics_without_a_history_read_back_as_an_empty_one(tmp_path, tiny_data, monkeypatch):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "result.json").write_text(json.dumps({"test_acc": 0.5}))
    (tmp_path / "r" / "metrics.json").write_text(json.dumps({"summary": {}}))
    no_training(monkeypatch)
    assert cached(tmp_path / "r", net(), tiny_data, layout="result") == ({"test_acc": 0.5}, [])


def test_a_training_runs_from_its_start_iteration_to_its_total_holding_frozen_values_where_pruned(tmp_path, tiny_data):
    """From iteration 2 to 5 (not the config's 6): 3 iterations, evaluated at 2, 3 and 5; the pruned weights hold
    their frozen values (0.5) through training, the kept ones train."""
    mask = {"1.weight": torch.arange(160).view(10, 16) % 2 == 0}
    frozen = {"1.weight": torch.full((10, 16), 0.5)}
    m = net()
    summary, history = cached(tmp_path / "t", m, tiny_data, mask=mask, frozen=frozen, start_iter=2, total=5)
    assert summary["iterations"] == 3 and [h["iter"] for h in history] == [2, 3, 5]
    w = m[1].weight.detach()
    assert (w[~mask["1.weight"]] == 0.5).all() and not (w[mask["1.weight"]] == 0.5).all()


def test_a_training_in_lockstep_writes_its_live_log_in_its_own_folder(tmp_path, tiny_data, monkeypatch):
    from ticketlab.train import log

    monkeypatch.setattr(log, "_kind", "jsonl")
    lockstep.Lockstep(quiet=True).run(
        [lambda s=s: cached(tmp_path / f"s{s}", net(s), tiny_data, seed=s) for s in (0, 1)]
    )
    assert all(log.read_jsonl(tmp_path / f"s{s}" / "log.jsonl") for s in (0, 1))


def test_the_printed_density_is_the_masks_percentage(tmp_path, tiny_data, capsys):
    mask = {"1.weight": torch.arange(160).view(10, 16) % 4 == 0}
    cached(tmp_path / "t", net(), tiny_data, quiet=False, label="r", mask=mask)
    assert capsys.readouterr().err.splitlines()[-1].startswith("r: density 25.00%  test acc ")
