import pytest
import torch

from ticketlab.models import build_model
from ticketlab.sparse import ones_mask
from ticketlab.train import Checkpointer, TrainConfig, train

CFG = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=32, iterations=60,
                  eval_every=10, lr_schedule="cosine", warmup=5)


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
def test_trainer_gradient_pass_alone_keeps_zeros_and_matches_both_passes_bitwise(tiny_data, optimizer, wd,
                                                                                  monkeypatch):
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
    monkeypatch.setattr(loop.MaskEnforcer, "__init__",
                        lambda self, *a, after_step=True, **k: real(self, *a, after_step=True, **k))
    safe_model, safe = run(tiny_data, cfg, mask=mask)
    assert fast.history == safe.history
    assert all(torch.equal(a, b) for a, b in zip(fast_model.state_dict().values(), safe_model.state_dict().values()))
