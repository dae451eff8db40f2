import pytest
import torch

from ticketlab.errors import UserError
from ticketlab.models import build_model
from ticketlab.sparse import prunable_names
from ticketlab.supermask import (BernoulliMask, SupermaskConfig, TopKMask, attach, hard_masks, run_supermask,
                                 set_eval_mode, signed_constant_)
from ticketlab.train import TrainConfig, evaluate, train

from helpers import die_after_checkpoints


def test_topk_mask_keeps_exactly_k_and_passes_gradients_straight_through():
    scores = torch.tensor([[0.1, -0.9, 0.3], [0.5, 0.05, -0.2]])
    mod = TopKMask(scores, density=0.5)
    w = torch.ones(2, 3)
    out = mod(w)
    assert out.tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]  # |s| top 3: .9 .5 .3
    out.sum().backward()
    assert torch.equal(mod.scores.grad, scores.sign())  # identity through the top-k, then d|s|/ds


def test_bernoulli_mask_samples_with_straight_through_gradient_and_evaluates_expected():
    mod = BernoulliMask(torch.Size([1000]), init_logit=0.0, seed=3)
    w = torch.ones(1000)
    sample = mod(w)
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0} and 400 < sample.sum() < 600
    sample.sum().backward()
    assert torch.allclose(mod.scores.grad, torch.full((1000,), 0.25))  # d sigmoid at 0
    mod.eval()
    assert torch.allclose(mod(w), torch.full((1000,), 0.5))
    mod.eval_mode = "round"
    assert mod(w).sum() == 0  # p = 1/2 is not > 1/2


def test_bernoulli_draws_are_reproducible_from_the_step_counter():
    a, b = BernoulliMask(torch.Size([50]), seed=1), BernoulliMask(torch.Size([50]), seed=1)
    w = torch.ones(50)
    first_a, first_b = a(w), b(w)
    assert torch.equal(first_a, first_b)  # same seed, same step: same draw
    assert not torch.equal(a(w), first_a)  # the step counter moved on
    b.load_state_dict(a.state_dict())  # the counter is state: restoring it restores the draws
    assert torch.equal(a(w), b(w))


def test_signed_constant_is_sign_times_layer_std():
    m = build_model("lenet300", (1, 8, 8), 10, seed=0)
    before = m[1].weight.detach().clone()
    signed_constant_(m, ["1.weight"])
    assert torch.allclose(m[1].weight.detach(), before.sign() * before.std())


def test_only_mask_scores_train_and_weights_stay_frozen(tiny_data):
    model = build_model("mlp1d", tiny_data.input_shape, 10, seed=0)
    names = prunable_names(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    mods = attach(model, names, "edge-popup", density=0.3, seed=0)
    before = {n: m.scores.detach().clone() for n, m in mods.items()}
    train(model, tiny_data, TrainConfig(optimizer="sgd", lr=0.1, iterations=30, eval_every=10))
    for n, p in model.named_parameters():
        if n.endswith("original") or n in frozen:
            key = n.replace("parametrizations.", "").replace(".original", "")
            assert torch.equal(p, frozen[key])
    assert any(not torch.equal(m.scores, before[n]) for n, m in mods.items())
    masks = hard_masks(mods)
    assert all(int(m.sum()) == round(m.numel() * 0.3) for m in masks.values())


def test_jackpot_starts_from_the_magnitude_mask(tiny_data):
    model = build_model("mlp1d", tiny_data.input_shape, 10, seed=0)
    w = model[1].weight.detach().clone()
    mods = attach(model, ["1.weight"], "jackpot", density=0.25)
    m = hard_masks(mods)["1.weight"]
    assert w.abs()[~m].max() <= w.abs()[m].min()


def test_learned_supermask_beats_chance_on_untrained_weights(tmp_path):
    cfg = SupermaskConfig(dataset="digits", train=TrainConfig(optimizer="sgd", lr=100.0, momentum=0.9,
                                                              iterations=150, eval_every=50))
    s = run_supermask(cfg, tmp_path / "sm", quiet=True)
    assert s["untrained_mask_test_acc"] < 0.4 and s["expected_mask_test_acc"] > 0.7
    assert s["sampled_mask_test_acc"]["samples"] == 10 and s["sampled_mask_test_acc"]["mean"] > 0.6
    assert run_supermask(cfg, tmp_path / "sm", quiet=True) == s  # finished runs are not redone


def test_supermask_resume_is_bitwise(tmp_path, monkeypatch):
    cfg = SupermaskConfig(dataset="digits", train=TrainConfig(optimizer="sgd", lr=100.0, momentum=0.9,
                                                              iterations=60, eval_every=20))
    ref = run_supermask(cfg, tmp_path / "ref", quiet=True, checkpoint_every=20)
    restore = die_after_checkpoints(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_supermask(cfg, tmp_path / "r", quiet=True, checkpoint_every=20)
    restore()
    again = run_supermask(cfg, tmp_path / "r", quiet=True, checkpoint_every=20)
    assert {k: v for k, v in again.items() if k != "config"} == {k: v for k, v in ref.items() if k != "config"}


@pytest.mark.parametrize("kw,msg", [({"method": "dropout"}, "unknown supermask method"),
                                    ({"weights": "ones"}, "unknown --weights"),
                                    ({"density": 0.0}, "--density"),
                                    ({"method": "jackpot"}, "needs --pretrained")])
def test_bad_supermask_settings(kw, msg):
    with pytest.raises(UserError, match=msg):
        SupermaskConfig(**kw).validate()


def test_eval_modes_change_only_bernoulli_masks(tiny_data):
    model = build_model("mlp1d", tiny_data.input_shape, 10, seed=0)
    mods = attach(model, prunable_names(model), "bernoulli", seed=0, init_logit=2.0)
    set_eval_mode(mods, "round")
    acc_round = evaluate(model, tiny_data.x_test, tiny_data.y_test)
    set_eval_mode(mods, "expected")
    assert evaluate(model, tiny_data.x_test, tiny_data.y_test) != acc_round  # p = 0.88 vs 1
