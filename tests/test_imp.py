import json

import pytest
import torch
from helpers import die_after_checkpoints
from torch import nn

from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.lottery import IMPConfig, imp
from ticketlab.runs import training as imp_module  # the cached training unit IMP runs every training through
from ticketlab.sparse import keep_count
from ticketlab.train import TrainConfig

TRAIN = TrainConfig(optimizer="adam", lr=0.01, batch_size=32, iterations=40, eval_every=10)


def cfg(**kw):
    return IMPConfig(model="mlp1d", dataset="tiny", train=TRAIN, **kw)


def run(tiny_data, out, quiet=True, **kw):
    return imp(cfg(**kw), out, data=tiny_data, quiet=quiet, checkpoint_every=15)


@pytest.fixture
def spy(monkeypatch):
    """Record (start_iter, starting weights) of every training IMP launches."""
    calls = []
    real = imp_module.train

    def wrapped(model, data, c, **kw):
        calls.append((kw["start_iter"], {k: v.clone() for k, v in model.state_dict().items()}))
        return real(model, data, c, **kw)

    monkeypatch.setattr(imp_module, "train", wrapped)
    return calls


def test_summary_schema_and_exact_layer_densities(tiny_data, tmp_path):
    s = run(tiny_data, tmp_path / "r", rounds=3, controls=["reinit", "random-mask"])
    assert [r["round"] for r in s["rounds"]] == [0, 1, 2, 3]
    for r in s["rounds"]:
        assert {"round", "density", "test_acc", "early_stop_iter", "early_stop_test_acc", "controls"} <= set(r)
    assert set(s["rounds"][2]["controls"]) == {"reinit", "random-mask"}
    assert set(s["rounds"][2]["controls"]["reinit"]) >= {
        "density",
        "test_acc",
        "early_stop_iter",
        "early_stop_test_acc",
    }
    for k in (1, 2, 3):
        mask = load_tensors(tmp_path / "r" / f"round_{k:02d}" / "mask.safetensors")
        rates = {"1.weight": 0.2, "3.weight": 0.2, "5.weight": 0.1}  # output layer at half rate
        for n, m in mask.items():
            assert int(m.sum()) == keep_count(m.numel(), (1 - rates[n]) ** k)
        assert s["rounds"][k]["density"] == pytest.approx(
            sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
        )
    for name in (
        "config.json",
        "init.safetensors",
        "summary.json",
        "accuracy_vs_density.png",
        "test_acc_by_round.png",
        "round_02/final.safetensors",
        "round_02/metrics.json",
        "round_02/reinit/metrics.json",
    ):
        assert (tmp_path / "r" / name).exists(), name
    assert not list((tmp_path / "r").rglob("checkpoint.safetensors"))


def test_masks_are_nested_and_pruned_by_magnitude(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "r", rounds=2)
    m1 = load_tensors(tmp_path / "r/round_01/mask.safetensors")
    m2 = load_tensors(tmp_path / "r/round_02/mask.safetensors")
    w1 = load_tensors(tmp_path / "r/round_01/final.safetensors")
    for n in m2:
        assert not (m2[n] & ~m1[n]).any()
        dropped = m1[n] & ~m2[n]
        assert w1[n].abs()[dropped].max() <= w1[n].abs()[m2[n]].min()


def test_rewind_to_init_restarts_kept_weights_from_init(tiny_data, tmp_path, spy):
    run(tiny_data, tmp_path / "r", rounds=2)
    init = load_tensors(tmp_path / "r/init.safetensors")
    mask = load_tensors(tmp_path / "r/round_02/mask.safetensors")
    start_iter, state = spy[2]
    assert start_iter == 0
    for n, v in state.items():
        assert torch.equal(v, init[n] * mask[n] if n in mask else init[n])


def test_late_rewinding_starts_from_iteration_k(tiny_data, tmp_path, spy):
    run(tiny_data, tmp_path / "r", rounds=2, rewind="15")
    rewind = load_tensors(tmp_path / "r/rewind.safetensors")
    mask = load_tensors(tmp_path / "r/round_01/mask.safetensors")
    start_iter, state = spy[1]
    assert start_iter == 15
    assert all(torch.equal(state[n], rewind[n] * mask[n]) for n in mask)
    # The rewind point really is the dense net at iteration 15 (same seed, same data order).
    from ticketlab.models import build_model
    from ticketlab.train import train as plain_train

    model = build_model("mlp1d", tiny_data.input_shape, 10, seed=0)
    plain_train(model, tiny_data, TrainConfig(**{**TRAIN.__dict__, "iterations": 15}), seed=0)
    assert all(torch.equal(v, rewind[k]) for k, v in model.state_dict().items())
    metrics = json.loads((tmp_path / "r/round_01/metrics.json").read_text())
    assert metrics["history"][0]["iter"] == 15 and metrics["summary"]["iterations"] == 25


def test_rewind_none_fine_tunes_the_previous_trained_weights(tiny_data, tmp_path, spy):
    run(tiny_data, tmp_path / "r", rounds=2, rewind="none")
    prev = load_tensors(tmp_path / "r/round_01/final.safetensors")
    mask = load_tensors(tmp_path / "r/round_02/mask.safetensors")
    assert all(torch.equal(spy[2][1][n], prev[n] * mask[n]) for n in mask)


def test_rewind_finetune_trains_the_previous_weights_at_the_schedules_final_lr(tiny_data, tmp_path, monkeypatch):
    import math

    seen = []
    real = imp_module.train

    def wrapped(model, data, c, **kw):
        seen.append(c)
        return real(model, data, c, **kw)

    monkeypatch.setattr(imp_module, "train", wrapped)
    cosine = TrainConfig(optimizer="sgd", lr=0.1, batch_size=32, iterations=40, eval_every=10, lr_schedule="cosine")
    imp(
        IMPConfig(model="mlp1d", dataset="tiny", train=cosine, rounds=1, rewind="finetune"),
        tmp_path / "ft",
        data=tiny_data,
        quiet=True,
    )
    assert seen[0] is not seen[1] and seen[0].lr_schedule == "cosine"
    assert seen[1].lr_schedule == "constant" and seen[1].lr == pytest.approx(0.05 * (1 + math.cos(math.pi * 39 / 40)))
    # under a constant schedule fine-tuning and learning-rate rewinding are the same training, bitwise
    a = run(tiny_data, tmp_path / "a", rounds=1, rewind="finetune")
    b = run(tiny_data, tmp_path / "b", rounds=1, rewind="none")
    assert a["rounds"][1]["test_acc"] == b["rounds"][1]["test_acc"]
    fa, fb = (load_tensors(tmp_path / d / "round_01/final.safetensors") for d in ("a", "b"))
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_controls_use_same_mask_fresh_init_and_random_mask_same_counts(tiny_data, tmp_path, spy):
    run(tiny_data, tmp_path / "r", rounds=1, controls=["reinit", "random-mask"])
    init = load_tensors(tmp_path / "r/init.safetensors")
    mask = load_tensors(tmp_path / "r/round_01/mask.safetensors")
    ticket, reinit, random_mask = spy[1][1], spy[2][1], spy[3][1]
    for n, m in mask.items():
        assert torch.count_nonzero(reinit[n][~m]) == 0 and not torch.equal(reinit[n], ticket[n])
        rm = random_mask[n] != 0
        assert int(rm.sum()) == int(m.sum()) and not torch.equal(rm, m)
        assert torch.equal(random_mask[n][rm], init[n][rm])


def test_interrupted_run_resumes_bitwise_identical(tiny_data, tmp_path, monkeypatch):
    ref = run(tiny_data, tmp_path / "ref", rounds=2, controls=["reinit"])
    restore = die_after_checkpoints(monkeypatch, 4)  # inside round 1's ticket training, right after a checkpoint
    with pytest.raises(KeyboardInterrupt):
        run(tiny_data, tmp_path / "r", rounds=2, controls=["reinit"])
    assert list((tmp_path / "r").rglob("checkpoint.safetensors"))
    restore()
    again = run(tiny_data, tmp_path / "r", rounds=2, controls=["reinit"])
    assert again == ref
    for f in ("round_02/final.safetensors", "round_02/reinit/final.safetensors"):
        a, b = load_tensors(tmp_path / "ref" / f), load_tensors(tmp_path / "r" / f)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_masks_and_metrics(tiny_data, tmp_path):
    a = run(tiny_data, tmp_path / "a", rounds=2)
    b = run(tiny_data, tmp_path / "b", rounds=2)
    assert a == b
    ma = load_tensors(tmp_path / "a/round_02/mask.safetensors")
    mb = load_tensors(tmp_path / "b/round_02/mask.safetensors")
    assert all(torch.equal(ma[n], mb[n]) for n in ma)


def test_out_dir_with_a_different_config_is_refused_and_untouched(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "r", rounds=1)
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    with pytest.raises(UserError, match=r"different config \(differs in: rate\)"):
        run(tiny_data, tmp_path / "r", rounds=1, rate=0.5)
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before


def test_foreign_non_empty_dir_is_refused(tiny_data, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a ticketlab run directory"):
        run(tiny_data, tmp_path / "r", rounds=1)
    assert (tmp_path / "r" / "thesis.tex").read_text() == "precious"


def test_corrupt_mask_file_is_reported(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "r", rounds=1)
    (tmp_path / "r/round_01/mask.safetensors").write_bytes(b"junk")
    (tmp_path / "r/round_01/metrics.json").unlink()
    with pytest.raises(UserError, match="corrupt"):
        run(tiny_data, tmp_path / "r", rounds=1)


@pytest.mark.parametrize("global_pruning", [False, True])
def test_target_density_and_one_shot(tiny_data, tmp_path, global_pruning):
    s = run(tiny_data, tmp_path / "it", target_density=0.4, global_pruning=global_pruning)
    kept = round(s["rounds"][-1]["density"] * 12600)  # mlp1d on 16 inputs: 1600 + 10000 + 1000 weights
    # global: exactly round(0.4 N) = 5040; layerwise: each of the 3 layers rounds its own share
    assert kept == 5040 if global_pruning else abs(kept - 5040) <= 1.5
    one = run(tiny_data, tmp_path / "os", target_density=0.4, one_shot=True, global_pruning=global_pruning)
    assert len(one["rounds"]) == 2 and one["rounds"][1]["density"] == s["rounds"][-1]["density"]


def test_global_pruning_allots_density_unevenly(tiny_data, tmp_path):
    s = run(tiny_data, tmp_path / "r", rounds=3, global_pruning=True)
    dens = s["rounds"][3]["layer_densities"]
    assert s["rounds"][3]["density"] == 6451 / 12600  # round(12600 x 0.8^3 = 6451.2)
    assert max(dens.values()) - min(dens.values()) > 0.01


def test_a_users_own_module_works(tiny_data, tmp_path):
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh())
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            return self.head(self.body(x))

    s = imp(cfg(rounds=1), tmp_path / "r", model=Mine(), data=tiny_data, quiet=True)
    assert s["config"]["model"] == "custom:Mine"
    assert ["body.1.weight", [32, 16]] in s["config"]["architecture"]
    assert s["rounds"][1]["density"] < 1


def test_rewind_past_the_end_is_refused(tiny_data, tmp_path):
    with pytest.raises(UserError, match="not before the end"):
        run(tiny_data, tmp_path / "r", rewind="40")
    assert not (tmp_path / "r").exists()


def test_criterion_flag_chooses_the_mask(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "r", rounds=1, criterion="large_init")
    init = load_tensors(tmp_path / "r/init.safetensors")
    mask = load_tensors(tmp_path / "r/round_01/mask.safetensors")
    for n, m in mask.items():
        assert init[n].abs()[~m].max() <= init[n].abs()[m].min()


def test_kept_values_rule_sets_the_ticket_start(tiny_data, tmp_path, spy):
    run(tiny_data, tmp_path / "r", rounds=1, reinit="constant", signed=True)
    init = load_tensors(tmp_path / "r/init.safetensors")
    mask = load_tensors(tmp_path / "r/round_01/mask.safetensors")
    start = spy[1][1]
    for n, m in mask.items():
        assert torch.allclose(start[n][m], init[n].std(correction=0) * init[n][m].sign())
        assert torch.count_nonzero(start[n][~m]) == 0


def test_pruned_weights_frozen_at_init(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "r", rounds=1, mask_zero="freeze-init")
    init = load_tensors(tmp_path / "r/init.safetensors")
    mask = load_tensors(tmp_path / "r/round_01/mask.safetensors")
    final = load_tensors(tmp_path / "r/round_01/final.safetensors")
    for n, m in mask.items():
        assert torch.equal(final[n][~m], init[n][~m]) and not torch.equal(final[n][m], init[n][m])


def test_run_made_before_a_setting_existed_still_resumes(tiny_data, tmp_path):
    ref = run(tiny_data, tmp_path / "r", rounds=1)
    cfg_file = tmp_path / "r" / "config.json"
    stored = json.loads(cfg_file.read_text())
    for key in ("criterion", "reinit", "signed", "mask_zero"):
        del stored["config"][key]
    cfg_file.write_text(json.dumps(stored))
    assert run(tiny_data, tmp_path / "r", rounds=1)["rounds"] == ref["rounds"]
    with pytest.raises(UserError, match="differs in: criterion"):
        run(tiny_data, tmp_path / "r", rounds=1, criterion="movement")


def test_raising_rounds_continues_a_run_with_the_same_earlier_rounds(tiny_data, tmp_path):
    short = run(tiny_data, tmp_path / "r", rounds=1)
    longer = run(tiny_data, tmp_path / "r", rounds=3)
    fresh = run(tiny_data, tmp_path / "fresh", rounds=3)
    assert longer["rounds"][:2] == short["rounds"] and longer == fresh
    with pytest.raises(UserError, match="differs in: rounds"):
        run(tiny_data, tmp_path / "r", rounds=2)  # fewer rounds than trained is a different run
    with pytest.raises(UserError, match="differs in"):
        run(tiny_data, tmp_path / "fresh", rounds=4, rate=0.3)  # another setting too: refused


class Recording(nn.Module):
    """16 -> 7 -> classes; inputs carry the example's id in every feature, recorded at each training step."""

    def __init__(self, classes=10):
        super().__init__()
        self.fc = nn.Linear(16, 7)
        self.head = nn.Linear(7, classes)
        self.batches = []

    def forward(self, x):
        if self.training:
            self.batches.append(x[:, 0, 0].long().tolist())
        return self.head(torch.relu(self.fc(x.flatten(1))))


def indexed(n=96, classes=10):
    from ticketlab.data import Dataset

    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, 1, 16).contiguous()
    small = torch.zeros(8, 1, 16)
    labels = torch.arange(8) % classes
    return Dataset("indexed", x, torch.arange(n) % classes, small, labels, small, labels, classes)


def kept_counts(out, rounds):
    return [
        {n: int(m.sum()) for n, m in load_tensors(out / f"round_{k:02d}" / "mask.safetensors").items()}
        for k in range(1, rounds + 1)
    ]


ADAM = TrainConfig(optimizer="adam", lr=1e-3, batch_size=32, iterations=12, eval_every=12)


def test_imp_layer_counts_are_literal_at_half_weights(tmp_path):
    # fc: 112 weights at rate 0.5 -> 56, 28, 14, 7, 3.5 -> 4 (half to even);
    # head (output, half rate 0.25): 70 x 0.75^k = 52.5 -> 52, 39.375 -> 39, 29.53 -> 30, 22.15 -> 22, 16.6 -> 17
    s = imp(IMPConfig(rate=0.5, rounds=5, train=ADAM), tmp_path / "r", model=Recording(), data=indexed(), quiet=True)
    assert kept_counts(tmp_path / "r", 5) == [
        {"fc.weight": a, "head.weight": b} for a, b in [(56, 52), (28, 39), (14, 30), (7, 22), (4, 17)]
    ]
    assert s["rounds"][5]["density"] == 21 / 182


def test_global_imp_and_target_density_counts_are_literal(tmp_path):
    # 182 weights at 0.5 per round: 91, 45.5 -> 46, 22.75 -> 23
    imp(
        IMPConfig(rate=0.5, rounds=3, global_pruning=True, train=ADAM),
        tmp_path / "g",
        model=Recording(),
        data=indexed(),
        quiet=True,
    )
    assert [sum(c.values()) for c in kept_counts(tmp_path / "g", 3)] == [91, 46, 23]
    # target 0.3: rounds at 0.5 and then exactly 0.3: 182 x 0.3 = 54.6 -> 55
    s = imp(
        IMPConfig(rate=0.5, target_density=0.3, global_pruning=True, train=ADAM),
        tmp_path / "t",
        model=Recording(),
        data=indexed(),
        quiet=True,
    )
    assert [sum(c.values()) for c in kept_counts(tmp_path / "t", 2)] == [91, 55] and len(s["rounds"]) == 3


def test_controls_train_on_the_tickets_data_order(tmp_path):
    model = Recording()
    imp(
        IMPConfig(rate=0.5, rounds=1, controls=["reinit", "random-mask"], train=ADAM),
        tmp_path / "r",
        model=model,
        data=indexed(),
        quiet=True,
    )
    runs = [model.batches[12 * i : 12 * (i + 1)] for i in range(4)]  # dense, ticket, reinit, random-mask
    assert len(model.batches) == 48 and runs[0] == runs[1] == runs[2] == runs[3]
    other = Recording()
    imp(IMPConfig(rate=0.5, rounds=1, seed=1, train=ADAM), tmp_path / "s", model=other, data=indexed(), quiet=True)
    assert other.batches[:12] != runs[0]  # another seed, another order


def test_late_rewinding_continues_the_data_order_from_iteration_k(tmp_path):
    model = Recording()
    imp(IMPConfig(rate=0.5, rounds=1, rewind="6", train=ADAM), tmp_path / "r", model=model, data=indexed(), quiet=True)
    assert len(model.batches) == 18 and model.batches[12:] == model.batches[6:12]
