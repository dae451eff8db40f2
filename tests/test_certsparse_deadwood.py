"""Deadwooding: multipliers rise by dual ascent while a constraint is violated, the final mask has the exact
density and holds through training, and runs resume bitwise."""

import json

import pytest
import torch
from helpers import killed_then_resumed, one_line_exit_2, without_config, write_imp_source
from torch import nn

from ticketlab.certsparse import DeadwoodConfig, Deadwooding, run_deadwood
from ticketlab.cli import main
from ticketlab.data import load_dataset
from ticketlab.io import load_tensors
from ticketlab.train import TrainConfig


def _dw(dual_lr=2.0, acc_tol=0.0, rob_tol=10.0, prune_step=100, density=0.5):
    torch.manual_seed(0)
    data = load_dataset("digits")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    dw = Deadwooding(
        model,
        opt,
        ["1.weight", "3.weight"],
        teacher,
        data,
        density=density,
        prune_step=prune_step,
        acc_tol=acc_tol,
        rob_tol=rob_tol,
        dual_lr=dual_lr,
        dual_every=2,
        rob_eps=0.0,
    )
    return dw, model, opt, data


def test_multipliers_rise_while_a_constraint_is_violated_and_stay_once_it_holds():
    """The student is not the teacher, so KL > 0 = acc_tol: the accuracy multiplier rises by dual_lr x the
    mean violation at every dual update. The robustness tolerance (10) is never reached: its multiplier
    stays 0."""
    dw, model, opt, data = _dw()
    x, y = data.x_train[:32], data.y_train[:32]
    seen = []
    for it in range(6):
        loss = dw.loss(model, x, y, it)
        violation = dw._sum["accuracy"] / dw._n
        opt.zero_grad()
        loss.backward()
        opt.step()
        before = dw.lam["accuracy"]
        dw.step()
        if dw.step_count % 2 == 0:
            assert dw.lam["accuracy"] == pytest.approx(before + 2.0 * dw.log[-1]["violation_accuracy"])
            seen.append(dw.lam["accuracy"])
        assert violation > 0
    assert seen[0] > 0 and seen == sorted(seen) and len(set(seen)) == 3
    assert dw.lam["robustness"] == 0.0


def test_the_updater_defaults_are_the_papers_l1_weight_and_seed_0():
    dw, *_ = _dw()
    assert dw.l1 == 1.0 and dw.seed == 0 and dw.rob_steps == 5 and dw.tol == {"accuracy": 0.0, "robustness": 10.0}


def test_a_satisfied_constraint_leaves_its_multiplier_at_zero():
    dw, model, opt, data = _dw(acc_tol=100.0)
    x, y = data.x_train[:32], data.y_train[:32]
    for it in range(4):
        opt.zero_grad()
        dw.loss(model, x, y, it).backward()
        opt.step()
        dw.step()
    assert dw.lam == {"accuracy": 0.0, "robustness": 0.0}


def test_pruning_is_global_by_magnitude_to_the_exact_density_and_holds():
    dw, model, opt, data = _dw(prune_step=2, density=0.25)
    x, y = data.x_train[:32], data.y_train[:32]
    for it in range(6):
        opt.zero_grad()
        dw.loss(model, x, y, it).backward()
        opt.step()
        dw.step()
        if dw.pruned:
            kept = sum(int(m.sum()) for m in dw.mask_list)
            assert kept == round(0.25 * (64 * 16 + 16 * 10))
            for p, m in zip(dw.params, dw.mask_list):
                assert torch.count_nonzero(p[~m]) == 0
    assert dw.pruned


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_imp_source(tmp_path_factory.mktemp("src") / "imp")


def dcfg(source, **kw):
    """A deadwood config on the digits source; ``kw`` adds settings or overrides these."""
    base = dict(
        dataset="digits",
        model="mlp1d",
        source=str(source),
        density=0.2,
        rob_eps=0.05,
        rob_steps=2,
        dual_every=10,
        train=TrainConfig(iterations=60, eval_every=20, batch_size=60),
    )
    return DeadwoodConfig(**(base | kw))


@pytest.mark.slow
def test_deadwood_run_reaches_the_density_and_resumes_bitwise(source, tmp_path, monkeypatch):
    c = dcfg(source)
    ref = run_deadwood(c, tmp_path / "ref", quiet=True, checkpoint_every=20)
    assert ref["density"] == pytest.approx(0.2, abs=1e-4)
    assert len(ref["duals"]) == 6 and ref["multipliers"]["accuracy"] >= 0
    mask = load_tensors(tmp_path / "ref" / "mask.safetensors")
    final = load_tensors(tmp_path / "ref" / "final.safetensors")
    assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    s = killed_then_resumed(run_deadwood, c, tmp_path / "r", monkeypatch, quiet=True, checkpoint_every=20)
    assert without_config(s) == without_config(ref)
    a, b = (load_tensors(tmp_path / d / "final.safetensors") for d in ("ref", "r"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "args, msg",
    [
        ([], "error: deadwood needs --source RUN (an IMP run directory with a trained round 0)"),
        (["--source", "SRC", "--density", "0"], "--density must be in (0, 1]"),
        (["--source", "SRC", "--acc-tol", "-1"], "--acc-tol must be >= 0"),
        (["--source", "SRC", "--adv", "pgd", "--adv-eps", "0.1"], "deadwood sets its own loss"),
        (["--source", "NOTRUN"], "is not an IMP run directory"),
    ],
)
def test_bad_deadwood_input_is_one_line(source, tmp_path, capsys, args, msg):
    args = [str(source) if a == "SRC" else str(tmp_path) if a == "NOTRUN" else a for a in args]
    base = ["deadwood", "--dataset", "digits", "--model", "mlp1d", "--quiet", "--out", str(tmp_path / "x")]
    one_line_exit_2(main(base + args), capsys.readouterr().err, msg)
    assert not (tmp_path / "x").exists()


def test_the_lagrangian_is_l1_mean_abs_weight_plus_each_multiplier_times_its_violation_until_pruned():
    dw, model, opt, data = _dw(acc_tol=0.01, rob_tol=0.0, prune_step=1000)
    dw.lam = {"accuracy": 3.0, "robustness": 0.5}
    dw.l1 = 2.0
    x, y = data.x_train[:16], data.y_train[:16]
    with torch.no_grad():
        t = torch.softmax(dw.teacher(x), 1)
        kl = torch.nn.functional.kl_div(torch.log_softmax(model(x), 1), t, reduction="batchmean")
        mean_abs = torch.cat([p.abs().flatten() for p in dw.params]).mean()
    got = dw.loss(model, x, y, 0)
    # rob_eps 0: the robustness constraint is the accuracy one, at its own tolerance
    want = 3.0 * (kl - 0.01).clamp_min(0) + 0.5 * kl.clamp_min(0) + 2.0 * mean_abs
    assert torch.allclose(got, want) and dw._n == 1
    assert dw._sum == pytest.approx({"accuracy": float(kl - 0.01), "robustness": float(kl)})
    dw.pruned = True
    assert torch.allclose(dw.loss(model, x, y, 1), want - 2.0 * mean_abs)  # no objective once the density is fixed


def test_a_dual_update_uses_the_mean_violation_since_the_last_and_never_goes_below_zero():
    dw, *_ = _dw(dual_lr=0.5)
    dw.dual_update()  # nothing seen yet: nothing changes, nothing logged
    assert dw.lam == {"accuracy": 0.0, "robustness": 0.0} and dw.log == []
    dw.lam = {"accuracy": 1.0, "robustness": 0.0}
    dw._sum, dw._n = {"accuracy": 3.0, "robustness": 1.0}, 2
    dw.step_count = 7
    dw.dual_update()
    assert dw.lam == {"accuracy": 1.75, "robustness": 0.25}
    assert dw.log == [
        {
            "iter": 7,
            "lambda_accuracy": 1.75,
            "lambda_robustness": 0.25,
            "violation_accuracy": 1.5,
            "violation_robustness": 0.5,
        }
    ]
    assert dw._sum == {"accuracy": 0.0, "robustness": 0.0} and dw._n == 0
    dw.dual_lr = -10.0  # a (hypothetical) negative step is clipped at zero
    dw._sum, dw._n = {"accuracy": 1.0, "robustness": 1.0}, 1
    dw.dual_update()
    assert dw.lam == {"accuracy": 0.0, "robustness": 0.0}


def test_dual_updates_come_every_dual_every_steps_and_pruning_at_its_step():
    dw, model, opt, data = _dw(prune_step=3)
    calls = []
    for k in range(1, 7):  # the k-th optimizer step
        dw.dual_update = lambda k=k: calls.append(k)
        dw.step()
        assert dw.pruned == (k >= 3) and dw.step_count == k
    assert calls == [2, 4, 6]
    now, *_ = _dw(prune_step=0)
    assert now.pruned  # prune_step 0: pruned before the first step


def test_the_robustness_constraint_is_the_kl_on_pgd_examples_against_the_student():
    from ticketlab.robust import AttackConfig, PixelSpace, from_pixels, pgd, to_pixels
    from ticketlab.seeding import generator

    dw, model, opt, data = _dw()
    dw.rob_eps, dw.rob_steps, dw.seed = 0.1, 3, 4
    x, y = data.x_train[:16], data.y_train[:16]
    got = dw.constraint_losses(model, x, y, 9)
    adv = pgd(
        PixelSpace(model, data.mean, data.std),
        to_pixels(x, data),
        y,
        AttackConfig(eps=0.1, steps=3),
        pixel_range=data.pixel_range,
        generator=generator(4, "deadwood-pgd", 9),
    )
    with torch.no_grad():
        t = torch.softmax(dw.teacher(x), 1)
        want = torch.nn.functional.kl_div(torch.log_softmax(model(from_pixels(adv, data)), 1), t, reduction="batchmean")
    assert torch.allclose(got["robustness"], want) and model.training
    assert float(got["robustness"].detach()) > float(got["accuracy"].detach())


def test_the_updater_state_round_trips_into_a_fresh_one():
    dw, model, opt, data = _dw(prune_step=1, density=0.3)
    x, y = data.x_train[:16], data.y_train[:16]
    for it in range(3):
        opt.zero_grad()
        dw.loss(model, x, y, it).backward()
        opt.step()
        dw.step()
    tensors, meta = dw.state_dict()
    assert json.loads(meta)["method"] == "deadwooding"  # the checkpoint names its method
    fresh, *_ = _dw(prune_step=1, density=0.3)
    fresh.load_state_dict(tensors, meta)
    assert all(torch.equal(a, b) for a, b in zip(fresh.mask_list, dw.mask_list))
    assert all(torch.equal(a, m.float()) for a, m in zip(fresh._float, dw.mask_list))
    assert (fresh.step_count, fresh.pruned, fresh.log, fresh.lam, fresh._sum, fresh._n) == (
        dw.step_count,
        dw.pruned,
        dw.log,
        dw.lam,
        dw._sum,
        dw._n,
    )


def test_the_deadwood_table_names_the_run_density_accuracy_and_multipliers():
    from ticketlab.certsparse.deadwood import format_deadwood

    s = {
        "config": {"model": "mlp1d", "dataset": "digits"},
        "density": 0.1234,
        "test_acc": 0.81234,
        "dense_test_acc": 0.9,
        "multipliers": {"accuracy": 1.23456, "robustness": 0.0},
    }
    assert format_deadwood(s) == (
        "deadwooding on mlp1d / digits: density 12.34%  test acc 0.8123 (dense parent "
        "0.9000)\nmultipliers: accuracy 1.23  robustness 0"
    )


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(prune_at=1.5), "--prune-at must be in [0, 1]"),
        (dict(rob_tol=-1.0), "--rob-tol must be >= 0"),
        (dict(dual_every=0), "--dual-every and --rob-steps must be >= 1"),
        (dict(l1=float("nan")), "--l1 must be >= 0"),
        (dict(rob_steps=0), "--dual-every and --rob-steps must be >= 1"),
        (dict(density=1.5), "--density must be in"),
    ],
)
def test_bad_deadwood_settings_are_refused(kw, msg):
    from ticketlab.errors import UserError

    with pytest.raises(UserError, match=msg.replace("[", r"\[").replace("(", r"\(")):
        DeadwoodConfig(source="x", **kw).validate()
    with pytest.raises(UserError, match=r"--density must be in \(0, 1\]"):
        _dw(density=0.0)


def test_a_short_deadwood_run_records_its_duals_mask_and_parent_and_reads_itself_back(
    source, tmp_path, monkeypatch, capsys
):
    c = dcfg(
        source,
        density=0.3,
        rob_steps=1,
        dual_every=5,
        prune_at=0.5,
        train=TrainConfig(iterations=20, eval_every=10, batch_size=32),
    )
    s = run_deadwood(c, tmp_path / "d", quiet=True)
    assert capsys.readouterr().err == ""  # quiet: no progress bar, no finished-training line
    assert s["density"] == pytest.approx(0.3, abs=2e-4) and len(s["duals"]) == 4
    assert [d["iter"] for d in s["duals"]] == [5, 10, 15, 20] and set(s["multipliers"]) == {"accuracy", "robustness"}
    assert s["dense_test_acc"] == 0.5 and s["config"]["source"] == str(source.resolve())
    mask = load_tensors(tmp_path / "d" / "mask.safetensors")
    final = load_tensors(tmp_path / "d" / "final.safetensors")
    assert mask and set(mask) <= set(final)
    assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    assert (tmp_path / "d" / "result.json").is_file()  # the result layout, as its folders have always been
    from ticketlab.lottery import round_weights
    from ticketlab.runs.models import trained_models

    _, models = trained_models(tmp_path / "d")
    assert models == [
        {"label": "dense parent", "group": "dense", "density": 1.0, "weights": round_weights(source.resolve(), 0)},
        {
            "label": "deadwooding",
            "group": "deadwood",
            "density": s["density"],
            "weights": tmp_path / "d" / "final.safetensors",
        },
    ]
    from ticketlab.runs import training

    monkeypatch.setattr(training, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    assert run_deadwood(c, tmp_path / "d", quiet=True) == s  # a finished run reads itself back


def test_the_updaters_defaults_are_the_commands_defaults():
    """A library user's Deadwooding(...) and `ticketlab deadwood` start from the same settings."""
    dw, model, opt, data = _dw()
    plain = Deadwooding(model, opt, dw.names, dw.teacher, data, density=0.5, prune_step=10)
    c = DeadwoodConfig(source="x")
    assert plain.tol == {"accuracy": c.acc_tol, "robustness": c.rob_tol}
    assert (plain.l1, plain.dual_lr, plain.dual_every, plain.rob_eps, plain.rob_steps, plain.seed) == (
        c.l1,
        c.dual_lr,
        c.dual_every,
        c.rob_eps,
        c.rob_steps,
        c.seed,
    )
    assert (plain.step_count, plain.pruned, plain.log, plain._n) == (0, False, [], 0)


def test_a_density_of_1_is_accepted_and_above_1_refused():
    from ticketlab.errors import UserError

    dw, *_ = _dw(density=1.0)
    assert dw.final_density == 1.0
    with pytest.raises(UserError, match=r"^--density must be in \(0, 1\], got 1.5$"):
        _dw(density=1.5)


def test_violations_add_up_over_the_steps_between_dual_updates():
    dw, model, opt, data = _dw(acc_tol=0.0, rob_tol=0.0)
    x, y = data.x_train[:16], data.y_train[:16]
    with torch.no_grad():
        t = torch.softmax(dw.teacher(x), 1)
        kl = float(torch.nn.functional.kl_div(torch.log_softmax(model(x), 1), t, reduction="batchmean"))
    dw.loss(model, x, y, 0)
    dw.loss(model, x, y, 1)
    assert dw._n == 2 and dw._sum == pytest.approx({"accuracy": 2 * kl, "robustness": 2 * kl})
    dw.dual_update()
    assert dw.log[-1]["violation_accuracy"] == pytest.approx(kl)  # their mean over the two steps


def test_each_steps_attack_draws_from_that_steps_stream():
    """The Lagrangian at step ``it`` uses the PGD examples of the stream (seed, "deadwood-pgd", it)."""
    dw, model, opt, data = _dw(acc_tol=0.0, rob_tol=0.0)
    dw.rob_eps, dw.rob_steps = 0.1, 2
    dw.lam = {"accuracy": 0.0, "robustness": 1.0}
    dw.l1 = 0.0
    x, y = data.x_train[:16], data.y_train[:16]
    for it in (3, 4):
        want = dw.constraint_losses(model, x, y, it)["robustness"]
        assert torch.equal(dw.loss(model, x, y, it), want.clamp_min(0))
    assert not torch.equal(dw.loss(model, x, y, 3), dw.loss(model, x, y, 4))


def test_without_a_robustness_radius_no_attack_is_run(monkeypatch):
    from ticketlab.certsparse import deadwood as mod

    dw, model, opt, data = _dw()  # rob_eps 0
    monkeypatch.setattr(mod, "pgd", lambda *a, **k: pytest.fail("an attack at radius 0"))
    out = dw.constraint_losses(model, data.x_train[:8], data.y_train[:8], 0)
    assert out["robustness"] is out["accuracy"]


def test_pruning_ties_come_from_the_runs_deadwood_prune_stream():
    from ticketlab.seeding import generator
    from ticketlab.sparse import global_prune

    masks = []
    for seed in (0, 3):
        dw, model, opt, data = _dw(prune_step=1000, density=0.3)
        dw.seed = seed
        with torch.no_grad():
            for p in dw.params:
                p.fill_(0.5)  # every magnitude ties
        before = dw.mask
        dw.prune()
        want = global_prune(
            {n: torch.full_like(p, 0.5) for n, p in zip(dw.names, dw.params)},
            before,
            0.3,
            generator(seed, "deadwood-prune"),
        )
        assert all(torch.equal(dw.mask[n], want[n]) for n in dw.names)
        assert all(torch.equal(f, m.float()) for f, m in zip(dw._float, dw.mask_list))
        masks.append(dw.mask)
    assert not all(torch.equal(masks[0][n], masks[1][n]) for n in masks[0])  # the seed decides the ties


@pytest.mark.parametrize(
    "kw",
    [dict(density=1.0), dict(prune_at=0.0), dict(prune_at=1.0), dict(l1=0.0), dict(rob_eps=0.0), dict(dual_every=1)],
)
def test_the_edges_of_the_deadwood_settings_are_accepted(kw):
    DeadwoodConfig(source="x", **kw).validate()


def test_deadwood_refuses_an_attack_or_certified_loss_with_its_whole_message():
    from ticketlab.errors import UserError

    for train in (TrainConfig(adv="pgd", adv_eps=0.1), TrainConfig(certified="ibp", cert_eps=0.1)):
        with pytest.raises(UserError) as e:
            DeadwoodConfig(source="x", train=train).validate()
        assert str(e.value) == "deadwood sets its own loss (the Lagrangian); drop --adv / --certified"


def test_a_deadwood_run_builds_its_updater_from_every_setting_and_an_epoch_budget(
    source, tmp_path, monkeypatch, capsys
):
    """Settings away from the defaults, so a setting the run drops shows; the budget in epochs, so the total
    the pruning step comes from is the data's (``prune_at`` x total steps)."""
    from ticketlab.certsparse import deadwood as mod
    from ticketlab.io import load_tensors

    built = []

    class Spy(mod.Deadwooding):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            built.append(self)

    monkeypatch.setattr(mod, "Deadwooding", Spy)
    seen, real = [], mod.start_derived_run
    monkeypatch.setattr(mod, "start_derived_run", lambda *a: seen.append(a[3:6]) or real(*a))
    c = dcfg(
        source,
        seed=3,
        density=0.4,
        prune_at=0.3,
        l1=0.5,
        acc_tol=0.2,
        rob_tol=0.7,
        dual_lr=0.25,
        dual_every=7,
        rob_eps=0.03,
        rob_steps=2,
        train=TrainConfig(epochs=1, eval_every=100, batch_size=128),
    )
    s = run_deadwood(c, tmp_path / "d", data_dir=str(tmp_path))
    (u,) = built
    total = c.train.total_iterations(len(load_dataset("digits").y_train))
    assert total > 1 and u.prune_step == round(0.3 * total) and u.step_count == total
    assert u.final_density == 0.4 and u.seed == 3 and u.l1 == 0.5 and u.tol == {"accuracy": 0.2, "robustness": 0.7}
    assert (u.dual_lr, u.dual_every, u.rob_eps, u.rob_steps) == (0.25, 7, 0.03, 2)
    assert [d["iter"] for d in s["duals"]] == list(range(7, total + 1, 7))
    assert s["density"] == pytest.approx(0.4, abs=1e-3)
    parent = load_tensors(source / "round_00" / "final.safetensors")
    assert all(torch.equal(p, parent[n]) for n, p in u.teacher.state_dict().items())  # the teacher: the parent
    assert seen == [("cpu", str(tmp_path), False)]
    assert "\rdeadwood: test acc" in capsys.readouterr().err  # progress by default, labelled
    monkeypatch.setattr(mod, "train_cached", lambda *a, **k: pytest.fail("a finished run trained again"))
    assert run_deadwood(c, tmp_path / "d", quiet=True) == s
    assert capsys.readouterr().err == ""
