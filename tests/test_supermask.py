import pytest
import torch
from helpers import killed_then_resumed, without_config

from ticketlab.errors import UserError
from ticketlab.models import build_model
from ticketlab.sparse import prunable_names
from ticketlab.supermask import (
    BernoulliMask,
    HardConcreteMask,
    L0Penalty,
    SupermaskConfig,
    TopKMask,
    attach,
    hard_masks,
    run_supermask,
    set_eval_mode,
    signed_constant_,
)
from ticketlab.train import TrainConfig, evaluate, train


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
    population = ((before - before.mean()) ** 2).mean().sqrt()  # np.std, as Zhou et al.'s code
    assert torch.allclose(m[1].weight.detach(), before.sign() * population)


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
    cfg = SupermaskConfig(
        dataset="digits", train=TrainConfig(optimizer="sgd", lr=100.0, momentum=0.9, iterations=150, eval_every=50)
    )
    s = run_supermask(cfg, tmp_path / "sm", quiet=True)
    assert s["untrained_mask_test_acc"] < 0.4 and s["expected_mask_test_acc"] > 0.7
    assert s["sampled_mask_test_acc"]["samples"] == 10 and s["sampled_mask_test_acc"]["mean"] > 0.6
    assert run_supermask(cfg, tmp_path / "sm", quiet=True) == s  # finished runs are not redone


def test_supermask_resume_is_bitwise(tmp_path, monkeypatch):
    cfg = SupermaskConfig(
        dataset="digits", train=TrainConfig(optimizer="sgd", lr=100.0, momentum=0.9, iterations=60, eval_every=20)
    )
    ref = run_supermask(cfg, tmp_path / "ref", quiet=True, checkpoint_every=20)
    again = killed_then_resumed(run_supermask, cfg, tmp_path / "r", monkeypatch, quiet=True, checkpoint_every=20)
    assert without_config(again) == without_config(ref)


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"method": "dropout"}, "unknown supermask method"),
        ({"weights": "ones"}, "unknown --weights"),
        ({"density": 0.0}, "--density"),
        ({"method": "jackpot"}, "needs --pretrained"),
        ({"method": "hard-concrete"}, "needs --pretrained"),
        ({"l0_strength": -1.0}, "--l0-strength must be >= 0"),
    ],
)
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


# -- hard-concrete gates (robust tickets) ---------------------------------------------------------------------


def test_hard_concrete_gates_are_exact_zeros_and_ones_often_and_differentiable():
    mod = HardConcreteMask(torch.Size([4000]), density=0.25, init_logit=0.0, seed=0)
    z = mod(torch.ones(4000))
    assert float(z.detach().min()) == 0.0 and float(z.detach().max()) == 1.0
    assert 0.1 < float((z == 0).float().mean()) < 0.3 and 0.1 < float((z == 1).float().mean()) < 0.3
    z.sum().backward()
    assert mod.scores.grad.abs().sum() > 0
    # P(z > 0) = sigmoid(log_alpha - beta log(-gamma / zeta)) = sigmoid(2/3 log 11) at log_alpha 0
    assert float(mod.open_probability()[0].detach()) == pytest.approx(1 / (1 + 11 ** (-2 / 3)), abs=1e-3)
    mod.eval()  # the deterministic gate: clamp(sigmoid(0) * 1.2 - 0.1, 0, 1) = 0.5
    assert torch.allclose(mod(torch.ones(4000)), torch.full((4000,), 0.5), atol=0.02)
    mod.eval_mode = "binary"
    assert int(mod(torch.ones(4000)).sum()) == 1000  # exactly the density's count


def test_l0_penalty_gradient_is_strength_over_n_times_p_one_minus_p_and_stops_at_the_target():
    mod = HardConcreteMask(torch.Size([10]), density=0.5, init_logit=1.0, seed=0)
    opt = torch.optim.SGD(mod.parameters(), lr=0.0)
    pen = L0Penalty(opt, [mod], strength=5.0, target=0.5)
    mod.scores.grad = torch.zeros(10)
    opt.step()
    p = mod.open_probability().detach()
    assert torch.allclose(mod.scores.grad, 5.0 / 10 * p * (1 - p))
    low = L0Penalty(opt, [mod], strength=5.0, target=0.999)  # already below target: no push
    pen.detach()
    mod.scores.grad = torch.zeros(10)
    opt.step()
    assert float(mod.scores.grad.abs().sum()) == 0.0
    low.detach()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from ticketlab.cli import main

    run = tmp_path_factory.mktemp("hc") / "imp"
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "mlp1d",
                "--iterations",
                "150",
                "--rounds",
                "1",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    return run


def hc_cfg(pretrained, **kw):
    return SupermaskConfig(
        dataset="digits",
        model="mlp1d",
        method="hard-concrete",
        pretrained=str(pretrained),
        density=0.2,
        init_logit=3.0,
        **{"train": TrainConfig(optimizer="adam", lr=0.05, iterations=80, eval_every=20)} | kw,
    )


def test_hard_concrete_ticket_reaches_the_asked_density_and_keeps_the_pretrained_weights(pretrained, tmp_path):
    from ticketlab.io import load_tensors

    s = run_supermask(hc_cfg(pretrained), tmp_path / "hc", quiet=True)
    assert s["density"] == pytest.approx(0.2, abs=1e-3)
    assert s["expected_density"] < 0.9  # the L0 penalty closed gates while the mask learned
    ticket = load_tensors(tmp_path / "hc" / "ticket.safetensors")
    mask = load_tensors(tmp_path / "hc" / "mask.safetensors")
    dense = load_tensors(pretrained / "round_00" / "final.safetensors")
    for n, m in mask.items():
        assert torch.equal(ticket[n], dense[n] * m)
    assert {"gate_test_acc", "test_acc"} <= set(s)
    # no penalty: the gates have no reason to close
    s0 = run_supermask(hc_cfg(pretrained, l0_strength=0.0), tmp_path / "hc0", quiet=True)
    assert s0["expected_density"] > s["expected_density"]


def test_hard_concrete_with_pgd_resumes_bitwise_and_is_evaluated_by_robustness(pretrained, tmp_path, monkeypatch):
    import json

    from ticketlab.cli import main

    cfg = hc_cfg(
        pretrained,
        train=TrainConfig(optimizer="adam", lr=0.05, iterations=40, eval_every=20, adv="pgd", adv_eps=0.1, adv_steps=3),
    )
    ref = run_supermask(cfg, tmp_path / "ref", quiet=True, checkpoint_every=20)
    again = killed_then_resumed(run_supermask, cfg, tmp_path / "r", monkeypatch, quiet=True, checkpoint_every=20)
    assert without_config(again) == without_config(ref)
    assert main(["robustness", str(tmp_path / "r"), "--eps", "0.05", "--steps", "3", "--quiet"]) == 0
    rows = json.loads(next((tmp_path / "r").glob("robustness-*/results.json")).read_text())["rows"]
    assert [r["label"] for r in rows] == ["dense parent", "hard-concrete ticket"]
    assert rows[1]["clean_acc"] == pytest.approx(again["test_acc"], abs=1e-6)


def test_old_supermask_configs_keep_their_hash():
    assert "l0_strength" not in SupermaskConfig().to_dict()
    assert SupermaskConfig(method="hard-concrete").to_dict()["l0_strength"] == 100.0


def test_hard_phase_learns_through_the_binary_ticket_and_resumes(pretrained, tmp_path, monkeypatch):
    cfg = hc_cfg(pretrained, hard_phase=0.5)
    ref = run_supermask(cfg, tmp_path / "ref", quiet=True, checkpoint_every=20)
    # from iteration 40 of 80 the forward pass is the binary ticket: training's own evaluation is the ticket's
    assert ref["gate_test_acc"] == ref["test_acc"]
    assert ref["density"] == pytest.approx(0.2, abs=1e-3)
    again = killed_then_resumed(
        run_supermask, cfg, tmp_path / "r", monkeypatch, n=3, quiet=True, checkpoint_every=20
    )  # killed inside the hard phase (after iteration 60)
    assert without_config(again) == without_config(ref)
    assert "hard_phase" not in hc_cfg(pretrained).to_dict() and cfg.to_dict()["hard_phase"] == 0.5
