import json

import pytest
import torch

from ticketlab.models import build_model
from ticketlab.sparse import ones_mask
from ticketlab.train import Checkpointer, TrainConfig, train

CFG = TrainConfig(
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=1e-3,
    batch_size=32,
    iterations=60,
    eval_every=10,
    lr_schedule="cosine",
    warmup=5,
)


def run(data, cfg=CFG, mask=None, **kw):
    model = build_model("mlp1d", data.input_shape, 10, seed=0)
    return model, train(model, data, cfg, mask=mask, seed=3, **kw)


def test_same_seed_same_weights_and_metrics_bitwise(tiny_data):
    m1, r1 = run(tiny_data)
    m2, r2 = run(tiny_data)
    assert r1.history == r2.history
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_training_learns_and_records_evaluations(tiny_data):
    _, r = run(tiny_data)
    assert [h["iter"] for h in r.history] == list(range(0, 61, 10))
    assert r.final["test_acc"] > r.history[0]["test_acc"] + 0.2


def test_early_stop_is_the_minimum_validation_loss(tiny_data):
    _, r = run(tiny_data, TrainConfig(optimizer="adam", lr=0.05, batch_size=16, iterations=200, eval_every=10))
    best = min(r.history, key=lambda h: h["val_loss"])
    s = r.summary()
    assert s["early_stop_iter"] == best["iter"] and s["early_stop_test_acc"] == best["test_acc"]


class Stop(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_from_checkpoint_is_bitwise_identical(tiny_data, tmp_path, optimizer):
    cfg = TrainConfig(**{**CFG.__dict__, "optimizer": optimizer})
    mask = ones_mask(build_model("mlp1d", tiny_data.input_shape, 10))
    g = torch.Generator().manual_seed(0)
    for m in mask.values():
        m.copy_(torch.rand(m.shape, generator=g) > 0.4)
    ref_model, ref = run(tiny_data, cfg, mask=mask)

    def crash(it, model):
        raise Stop

    ck = Checkpointer(tmp_path / "ck.safetensors", every=20)
    with pytest.raises(Stop):  # killed at iteration 47: the last checkpoint is at 40
        run(tiny_data, cfg, mask=mask, checkpointer=ck, snapshot_at=47, on_snapshot=crash)
    model, resumed = run(tiny_data, cfg, mask=mask, checkpointer=ck)
    assert resumed.history == ref.history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()))


def test_masked_training_keeps_pruned_weights_zero(tiny_data):
    model = build_model("mlp1d", tiny_data.input_shape, 10, seed=0)
    mask = ones_mask(model)
    mask["1.weight"][:, ::2] = False
    train(model, tiny_data, CFG, mask=mask)
    assert torch.count_nonzero(model[1].weight[:, ::2]) == 0


def test_start_iter_continues_the_schedule(tiny_data):
    _, r = run(tiny_data, start_iter=30)
    assert r.history[0]["iter"] == 30 and r.iterations == 30


@pytest.mark.parametrize("optimizer,wd", [("sgd", 1e-2), ("adam", 1e-2), ("adamw", 0.5)])
def test_trainer_gradient_pass_alone_keeps_zeros_and_matches_both_passes_bitwise(tiny_data, optimizer, wd, monkeypatch):
    cfg = TrainConfig(optimizer=optimizer, lr=0.01, weight_decay=wd, batch_size=32, iterations=40, eval_every=20)
    mask = ones_mask(build_model("mlp1d", tiny_data.input_shape, 10))
    g = torch.Generator().manual_seed(0)
    for m in mask.values():
        m.copy_(torch.rand(m.shape, generator=g) > 0.7)
    fast_model, fast = run(tiny_data, cfg, mask=mask)
    params = dict(fast_model.named_parameters())
    assert all(torch.count_nonzero(params[n][~m]) == 0 for n, m in mask.items())
    from ticketlab.sparse import MaskEnforcer
    from ticketlab.train import loop

    real = MaskEnforcer.__init__
    monkeypatch.setattr(
        loop.MaskEnforcer, "__init__", lambda self, *a, after_step=True, **k: real(self, *a, after_step=True, **k)
    )
    safe_model, safe = run(tiny_data, cfg, mask=mask)
    assert fast.history == safe.history
    assert all(torch.equal(a, b) for a, b in zip(fast_model.state_dict().values(), safe_model.state_dict().values()))


class Recorder(torch.nn.Module):
    """A linear model on one feature that records the training examples of every step (inputs are their ids)
    and the learning rate it was trained at."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(1, 2)
        self.batches, self.lrs, self.opt = [], [], None

    def forward(self, x):
        if self.training:
            self.batches.append(x.flatten().long().tolist())
            if self.opt is not None:
                self.lrs.append(self.opt.param_groups[0]["lr"])
        return self.fc(x.flatten(1))


def indexed(n):
    from ticketlab.data import Dataset

    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1)
    small, labels = torch.zeros(4, 1, 1), torch.zeros(4, dtype=torch.long)
    return Dataset("indexed", x, torch.arange(n) % 2, small, labels, small, labels, 2)


def record(data, cfg, seed=0, monkeypatch=None, **kw):
    model = Recorder()
    if monkeypatch is not None:  # capture the loop's optimizer so the model can read its learning rate
        from ticketlab.train import loop

        real = loop.make_optimizer

        def spy(m, c):
            model.opt = real(m, c)
            return model.opt

        monkeypatch.setattr(loop, "make_optimizer", spy)
    train(model, data, cfg, seed=seed, **kw)
    return model


def test_each_epoch_visits_every_example_exactly_once_in_a_new_order():
    cfg = TrainConfig(optimizer="sgd", lr=0.01, batch_size=32, iterations=12, eval_every=12)
    m = record(indexed(96), cfg)  # 3 steps per epoch, 4 epochs
    assert [len(b) for b in m.batches] == [32] * 12
    epochs = [sum(m.batches[3 * e : 3 * e + 3], []) for e in range(4)]
    assert all(sorted(e) == list(range(96)) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 4  # the order differs between epochs
    other = record(indexed(96), cfg, seed=1)
    assert sum(other.batches[:3], []) != epochs[0]  # and between seeds
    assert record(indexed(96), cfg).batches == m.batches  # and is the same for the same seed


def test_the_last_partial_batch_is_dropped_and_the_order_comes_from_seed_and_epoch():
    from ticketlab.train.loop import epoch_permutation

    cfg = TrainConfig(optimizer="sgd", lr=0.01, batch_size=32, iterations=9, eval_every=9)
    m = record(indexed(100), cfg, seed=5)  # 3 full batches per epoch, 4 examples left out of each
    for e in range(3):
        seen = sum(m.batches[3 * e : 3 * e + 3], [])
        assert len(set(seen)) == 96 and seen == epoch_permutation(5, e, 100)[:96].tolist()
    left_out = [set(range(100)) - set(sum(m.batches[3 * e : 3 * e + 3], [])) for e in range(3)]
    assert len({frozenset(s) for s in left_out}) > 1  # not always the same four


def test_a_batch_larger_than_the_data_uses_it_all_every_step():
    cfg = TrainConfig(optimizer="sgd", lr=0.01, batch_size=64, iterations=3, eval_every=3)
    m = record(indexed(10), cfg)
    assert all(sorted(b) == list(range(10)) for b in m.batches) and m.batches[0] != m.batches[1]


def test_a_resumed_run_continues_the_same_order_and_learning_rates(tmp_path, monkeypatch):
    cfg = TrainConfig(
        optimizer="sgd", lr=0.1, batch_size=16, iterations=20, eval_every=5, lr_schedule="cosine", warmup=3
    )
    ref = record(indexed(48), cfg, seed=2, monkeypatch=monkeypatch)
    from ticketlab.train.schedule import lr_at

    assert ref.lrs == [lr_at(cfg, i, 20) for i in range(20)]  # each step trains at its own lr
    ck = Checkpointer(tmp_path / "ck.safetensors", every=5)

    def crash(it, model):
        raise Stop

    with pytest.raises(Stop):
        record(indexed(48), cfg, seed=2, checkpointer=ck, snapshot_at=13, on_snapshot=crash)
    resumed = record(indexed(48), cfg, seed=2, monkeypatch=monkeypatch, checkpointer=ck)
    assert resumed.batches == ref.batches[10:] and resumed.lrs == ref.lrs[10:]


def test_constant_lr_is_never_touched_and_start_iter_continues_the_schedule(monkeypatch):
    cfg = TrainConfig(
        optimizer="sgd",
        lr=0.1,
        batch_size=16,
        iterations=12,
        eval_every=4,
        lr_schedule="step",
        milestones=[6],
        gamma=0.5,
    )
    m = record(indexed(48), cfg, monkeypatch=monkeypatch, start_iter=4)
    assert m.lrs == [0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
    full = record(indexed(48), cfg)
    assert m.batches == full.batches[4:]  # step 4 draws epoch 1's first batch, as an uninterrupted run does
    flat = record(
        indexed(48),
        TrainConfig(optimizer="sgd", lr=0.1, batch_size=16, iterations=3, eval_every=3),
        monkeypatch=monkeypatch,
    )
    assert flat.lrs == [0.1, 0.1, 0.1]


def test_evaluation_is_exact_and_in_eval_mode(tiny_data):
    from ticketlab.train.loop import evaluate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10), torch.nn.Dropout(0.9))
    model.train()
    loss, acc = evaluate(model, tiny_data.x_test, tiny_data.y_test, batch=7)
    with torch.no_grad():
        out = model[1](model[0](tiny_data.x_test))
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(out, tiny_data.y_test)), rel=1e-5)
    assert acc == float((out.argmax(1) == tiny_data.y_test).double().mean()) and model.training


def test_history_has_the_start_every_eval_every_and_the_end(tiny_data):
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, iterations=25, eval_every=10)
    _, r = run(tiny_data, cfg)
    assert [h["iter"] for h in r.history] == [0, 10, 20, 25] and r.iterations == 25
    assert set(r.history[0]) == {"iter", "val_loss", "val_acc", "test_loss", "test_acc"}
    s = r.summary()
    assert s["test_acc"] == r.history[-1]["test_acc"] and s["val_acc"] == r.history[-1]["val_acc"]


def test_early_stop_takes_the_first_of_tied_minima():
    from ticketlab.train import TrainResult

    rows = [
        {"iter": i, "val_loss": v, "test_acc": a, "val_acc": 0.0}
        for i, v, a in [(0, 2.0, 0.1), (10, 1.0, 0.5), (20, 1.0, 0.6), (30, 1.5, 0.7)]
    ]
    r = TrainResult(history=rows, iterations=30)
    assert r.early_stop["iter"] == 10 and r.summary()["early_stop_test_acc"] == 0.5
    assert r.summary()["test_acc"] == 0.7 and r.final["iter"] == 30


@pytest.mark.parametrize(
    "name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_make_optimizer_passes_every_setting_and_uses_fused_kernels(name, cls):
    from ticketlab.train.loop import make_optimizer

    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # frozen parameters are left out
    opt = make_optimizer(model, TrainConfig(optimizer=name, lr=0.07, momentum=0.8, weight_decay=0.02))
    assert type(opt) is cls and len(opt.param_groups[0]["params"]) == 1
    group = opt.param_groups[0]
    assert group["lr"] == 0.07 and group["weight_decay"] == 0.02 and group["fused"] is True
    if name == "sgd":
        assert group["momentum"] == 0.8


def test_make_optimizer_falls_back_to_foreach_where_no_fused_kernel_exists(monkeypatch):
    from ticketlab.train.loop import make_optimizer

    class NoFused(torch.optim.Adam):  # as on a device or dtype without a fused kernel
        def __init__(self, params, fused=None, **kw):
            if fused:
                raise RuntimeError("fused=True requires ...")
            super().__init__(params, **kw)

    monkeypatch.setattr(torch.optim, "Adam", NoFused)
    opt = make_optimizer(torch.nn.Linear(3, 2), TrainConfig(optimizer="adam", lr=0.1, weight_decay=0.5))
    group = opt.param_groups[0]
    assert type(opt) is NoFused and group["foreach"] is True and not group["fused"]
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.5


def test_checkpoints_are_saved_every_n_steps_but_not_at_the_end(tiny_data, tmp_path, monkeypatch):
    saved = []
    real = Checkpointer.save
    monkeypatch.setattr(Checkpointer, "save", lambda self, it, *a, **k: saved.append(it) or real(self, it, *a, **k))
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, iterations=30, eval_every=10)
    run(tiny_data, cfg, checkpointer=Checkpointer(tmp_path / "ck.safetensors", every=10))
    assert saved == [10, 20]


def test_snapshots_fire_at_their_iterations_start_included(tiny_data):
    seen = []
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, iterations=12, eval_every=6)
    model, _ = run(tiny_data, cfg, snapshot_at=[0, 5, 12], on_snapshot=lambda it, m: seen.append((it, m)))
    assert [it for it, _ in seen] == [0, 5, 12] and all(m is model for _, m in seen)
    seen.clear()
    run(tiny_data, cfg, snapshot_at=7, on_snapshot=lambda it, m: seen.append(it))
    assert seen == [7]
    run(tiny_data, cfg, snapshot_at=[3])  # no callback: nothing to call


def test_to_json_holds_history_iterations_and_summary(tiny_data):
    _, r = run(tiny_data, TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, iterations=10, eval_every=5))
    j = r.to_json()
    assert j["history"] == r.history and j["iterations"] == 10 and j["summary"] == r.summary()
    assert set(j["summary"]) == {"test_acc", "val_acc", "early_stop_iter", "early_stop_test_acc", "iterations"}


def test_progress_bar_runs_to_the_end(tiny_data, capsys):
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, iterations=10, eval_every=5)
    _, r = run(tiny_data, cfg, progress=True, desc="unit")
    assert r.iterations == 10 and "unit" in capsys.readouterr().err


def test_epoch_orders_are_pinned_so_stored_runs_resume_identically():
    # Golden permutations: a change in how (seed, epoch) seeds the order would silently change every run.
    from ticketlab.train.loop import epoch_permutation

    assert epoch_permutation(0, 0, 12).tolist() == [8, 0, 5, 9, 7, 4, 2, 10, 3, 1, 11, 6]
    assert epoch_permutation(3, 2, 12).tolist() == [6, 11, 9, 5, 4, 0, 3, 10, 8, 7, 1, 2]
    assert epoch_permutation(10**13, 1, 12).tolist() == [8, 7, 0, 3, 1, 10, 9, 5, 11, 4, 2, 6]  # past 2^63
    assert epoch_permutation(126, 0, 12).tolist() == [7, 5, 9, 8, 2, 11, 0, 4, 10, 1, 3, 6]


def test_defaults_seed_zero_no_progress_and_an_explicit_total(capsys):
    cfg = TrainConfig(optimizer="sgd", lr=0.01, batch_size=16, iterations=12, eval_every=4)
    default = Recorder()
    result = train(default, indexed(48), cfg, total=7)
    assert len(default.batches) == 7 and result.iterations == 7 and result.final["iter"] == 7
    assert default.batches == record(indexed(48), cfg, seed=0).batches[:7]
    assert capsys.readouterr().err == ""


def test_frozen_entries_hold_their_values_through_training(tiny_data):
    model = build_model("mlp1d", tiny_data.input_shape, 10, seed=0)
    mask = ones_mask(model)
    mask["1.weight"][:, ::2] = False
    frozen = {n: torch.full_like(p, 0.125) for n, p in model.named_parameters() if n in mask}
    train(model, tiny_data, CFG, mask=mask, frozen=frozen)
    assert torch.all(model[1].weight[:, ::2] == 0.125) and not torch.all(model[1].weight[:, 1::2] == 0.125)


def test_a_sparse_trainer_built_on_the_loops_optimizer_runs_every_step(tiny_data, tmp_path):
    import ticketlab.dst as dst

    model = build_model("mlp1d", tiny_data.input_shape, 10, seed=0)
    made = {}

    def factory(opt):
        made["t"] = dst.make("set", model, opt, density=0.3, total_steps=40, delta_t=10, seed=1)
        return made["t"]

    r = train(
        model,
        tiny_data,
        TrainConfig(optimizer="adam", lr=0.01, batch_size=32, iterations=40, eval_every=20),
        sparse=factory,
    )
    t = made["t"]
    assert t.optimizer is not None and t.step_count == 40 and r.iterations == 40
    assert all(torch.count_nonzero(p[~m]) == 0 for p, m in zip(t.params, t.mask_list))


class Updater:
    """The loop's side of a sparse trainer: told every step and evaluation, checkpointed with the run."""

    def __init__(self):
        self.steps, self.rows, self.loaded = 0, [], None

    def step(self):
        self.steps += 1

    def observe(self, row):
        self.rows.append(row)

    def state_dict(self):
        return {"count": torch.tensor([self.steps])}, json.dumps({"steps": self.steps})

    def load_state_dict(self, tensors, meta):
        self.loaded = json.loads(meta)
        self.steps = int(tensors["count"][0])


def test_the_sparse_updater_steps_sees_each_evaluation_and_resumes(tiny_data, tmp_path):
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, iterations=20, eval_every=5)
    up = Updater()
    _, r = run(tiny_data, cfg, sparse=lambda opt: up)
    assert up.steps == 20 and up.rows == r.history and len(up.rows) == 5
    ck = Checkpointer(tmp_path / "ck.safetensors", every=10)
    first = Updater()

    def crash(it, model):
        raise Stop

    with pytest.raises(Stop):
        run(tiny_data, cfg, sparse=lambda opt: first, checkpointer=ck, snapshot_at=13, on_snapshot=crash)
    again = Updater()
    _, r2 = run(tiny_data, cfg, sparse=lambda opt: again, checkpointer=ck)
    assert again.loaded == {"steps": 10} and again.steps == 20 and again.rows == r2.history[3:]
    assert r2.history == r.history


def test_a_budget_in_epochs_counts_steps_of_the_training_set():
    m = record(indexed(96), TrainConfig(optimizer="sgd", lr=0.01, batch_size=32, epochs=2, eval_every=100))
    assert len(m.batches) == 6 and sorted(sum(m.batches[:3], [])) == list(range(96))


def _poisoned(tiny_data, example: int):
    """tiny_data with one training example's inputs all NaN."""
    from dataclasses import replace as dc_replace

    x = tiny_data.x_train.clone()
    x[example] = float("nan")
    return dc_replace(tiny_data, x_train=x)


def _first_step_with(example: int, seed: int, n: int, bs: int) -> int:
    from ticketlab.train.loop import epoch_permutation

    pos = int((epoch_permutation(seed, 0, n) == example).nonzero())
    return pos // bs + 1


def test_a_nan_loss_stops_training_naming_its_iteration_and_keeps_the_checkpoint_before_it(tiny_data, tmp_path):
    from safetensors import safe_open

    from ticketlab.errors import UserError

    data = _poisoned(tiny_data, 123)
    bad = _first_step_with(123, 0, len(data.y_train), 10)
    assert 2 <= bad <= 30
    model = build_model("mlp1d", tiny_data.input_shape, 10, seed=0)
    cfg = TrainConfig(iterations=30, batch_size=10, eval_every=100, lr=0.1, optimizer="sgd")
    cp = Checkpointer(tmp_path / "ck.safetensors", every=1)
    with pytest.raises(
        UserError, match=rf"^tiny run: the training loss is not finite \(NaN or inf\) at iteration {bad};"
    ):
        train(model, data, cfg, seed=0, checkpointer=cp, desc="tiny run")
    with safe_open(str(tmp_path / "ck.safetensors"), framework="pt") as f:
        assert int(f.metadata()["iteration"]) == bad - 1
        assert all(bool(torch.isfinite(f.get_tensor(k)).all()) for k in f.keys() if k.startswith("model."))


def test_vectorised_replicates_name_the_first_non_finite_iteration_of_any_replicate(tiny_data):
    from ticketlab.errors import UserError
    from ticketlab.train.replicates import train_replicates

    data = _poisoned(tiny_data, 77)
    first = min(_first_step_with(77, s, len(data.y_train), 10) for s in (0, 1))
    assert first <= 30
    models = [build_model("mlp1d", tiny_data.input_shape, 10, seed=s) for s in (0, 1)]
    cfg = TrainConfig(iterations=30, batch_size=10, eval_every=100, lr=0.1, optimizer="sgd")
    with pytest.raises(UserError, match=rf"not finite \(NaN or inf\) at iteration {first};"):
        train_replicates(models, data, cfg, masks=[None, None], seeds=[0, 1])
