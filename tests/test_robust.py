"""Attacks in pixel units and adversarial training: the budget is never exceeded, robust <= clean, PGD at
least as strong as FGSM, adversarial training helps and keeps masks exact."""

import json

import pytest
import torch
from helpers import one_line_exit_2
from torch import nn

from ticketlab.cli import main
from ticketlab.data import load_dataset
from ticketlab.errors import UserError
from ticketlab.models import build_model
from ticketlab.robust import (
    AttackConfig,
    PixelSpace,
    fgsm,
    fgsm_rs,
    from_pixels,
    pgd,
    robust_accuracy,
    to_pixels,
)
from ticketlab.sparse import ones_mask
from ticketlab.train import TrainConfig, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", None, quiet=True)


@pytest.fixture(scope="module")
def trained(digits):
    model = build_model("mlp1d", digits.input_shape, digits.num_classes, seed=0)
    train(model, digits, TrainConfig(iterations=300, batch_size=64, eval_every=300), seed=0)
    return model.eval()


def test_pixels_round_trip_through_the_datasets_standardisation(digits):
    xp = to_pixels(digits.x_test, digits)
    assert xp.min() >= -1e-6 and xp.max() <= 1 + 1e-6  # digits are images scaled to [0, 1]
    assert torch.allclose(from_pixels(xp, digits), digits.x_test, atol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_the_eps_ball_and_the_pixel_range(digits, trained, norm):
    net = PixelSpace(trained, digits.mean, digits.std)
    x, y = to_pixels(digits.x_test[:64], digits), digits.y_test[:64]
    eps = 0.1 if norm == "linf" else 1.0
    adv = pgd(
        net,
        x,
        y,
        AttackConfig(eps=eps, norm=norm, steps=7, restarts=2),
        pixel_range=(0.0, 1.0),
        generator=torch.Generator().manual_seed(0),
    )
    d = (adv - x).flatten(1)
    size = d.abs().max(1).values if norm == "linf" else d.norm(dim=1)
    assert size.max() <= eps + 1e-5 and size.max() > 0.5 * eps
    assert adv.min() >= 0 and adv.max() <= 1


def test_fgsm_rs_stays_in_the_ball_although_its_step_exceeds_eps(digits, trained):
    net = PixelSpace(trained, digits.mean, digits.std)
    x, y = to_pixels(digits.x_test[:64], digits), digits.y_test[:64]
    adv = fgsm_rs(net, x, y, 0.05, pixel_range=(0.0, 1.0), generator=torch.Generator().manual_seed(1))
    assert (adv - x).abs().max() <= 0.05 + 1e-6


def test_robust_accuracy_is_at_most_clean_and_pgd_is_at_least_as_strong_as_fgsm(digits, trained):
    clean, rob_pgd = robust_accuracy(trained, digits, AttackConfig(eps=0.1, steps=10, restarts=1))
    _, rob_fgsm = robust_accuracy(trained, digits, AttackConfig(eps=0.1, steps=1, step_size=0.1, random_start=False))
    assert clean > 0.8 and rob_pgd <= rob_fgsm <= clean and rob_pgd < clean - 0.1
    _, zero = robust_accuracy(trained, digits, AttackConfig(eps=0.0, steps=3))
    assert zero == clean  # no budget, no change


def test_fgsm_helper_is_one_signed_step_of_size_eps(digits, trained):
    net = PixelSpace(trained, digits.mean, digits.std)
    x, y = to_pixels(digits.x_test[:32], digits), digits.y_test[:32]
    adv = fgsm(net, x, y, 0.05)  # no pixel range: a coordinate moves by exactly eps, or not at all (zero gradient)
    moved = (adv - x).abs()
    at_eps = (moved - 0.05).abs() < 1e-6
    assert (at_eps | (moved == 0)).all() and at_eps.float().mean() > 0.5


def test_a_targeted_attack_moves_predictions_to_the_target(digits, trained):
    net = PixelSpace(trained, digits.mean, digits.std)
    x, y = to_pixels(digits.x_test[:100], digits), digits.y_test[:100]
    target = (y + 1) % 10
    adv = pgd(
        net,
        x,
        y,
        AttackConfig(eps=0.3, steps=20, targeted=True),
        pixel_range=(0.0, 1.0),
        target=target,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        hit = (net(adv).argmax(1) == target).float().mean()
    assert hit > 0.5


def test_attacks_leave_parameter_gradients_and_the_mode_alone(digits, trained):
    trained.train()
    for p in trained.parameters():
        p.grad = None
    net = PixelSpace(trained, digits.mean, digits.std)
    pgd(net, to_pixels(digits.x_test[:16], digits), digits.y_test[:16], AttackConfig(eps=0.1, steps=2))
    assert all(p.grad is None for p in trained.parameters()) and trained.training
    trained.eval()


@pytest.mark.slow
def test_pgd_training_is_more_robust_than_clean_training(digits):
    cfg = dict(iterations=400, batch_size=64, eval_every=400, lr=2e-3)
    clean = build_model("mlp1d", digits.input_shape, digits.num_classes, seed=0)
    train(clean, digits, TrainConfig(**cfg), seed=0)
    robust = build_model("mlp1d", digits.input_shape, digits.num_classes, seed=0)
    train(robust, digits, TrainConfig(**cfg, adv="pgd", adv_eps=0.1, adv_steps=5), seed=0)
    attack = AttackConfig(eps=0.1, steps=10)
    assert robust_accuracy(robust, digits, attack)[1] > robust_accuracy(clean, digits, attack)[1] + 0.1


@pytest.mark.parametrize("adv", ["pgd", "trades", "fgsm-rs"])
def test_masks_stay_exact_under_adversarial_training(digits, adv):
    model = build_model("mlp1d", digits.input_shape, digits.num_classes, seed=0)
    g = torch.Generator().manual_seed(1)
    mask = {n: torch.rand(m.shape, generator=g) < 0.3 for n, m in ones_mask(model).items()}
    train(
        model,
        digits,
        TrainConfig(
            iterations=30,
            batch_size=32,
            eval_every=30,
            optimizer="sgd",
            momentum=0.9,
            weight_decay=1e-3,
            adv=adv,
            adv_eps=0.1,
            adv_steps=2,
        ),
        mask=mask,
        seed=0,
    )
    params = dict(model.named_parameters())
    assert all((params[n].detach()[~m] == 0).all() for n, m in mask.items())


def test_adversarial_training_is_seeded_and_resumes_the_same(digits):
    def run():
        m = build_model("mlp1d", digits.input_shape, digits.num_classes, seed=0)
        r = train(
            m,
            digits,
            TrainConfig(iterations=20, batch_size=32, eval_every=10, adv="pgd", adv_eps=0.1, adv_steps=2),
            seed=3,
        )
        return r.history, [p.detach().clone() for p in m.parameters()]

    (h1, p1), (h2, p2) = run(), run()
    assert h1 == h2 and all(torch.equal(a, b) for a, b in zip(p1, p2))


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(adv="fgsm"), "unknown --adv 'fgsm'"),
        (dict(adv="pgd"), "needs --adv-eps > 0"),
        (dict(adv="pgd", adv_eps=-0.1), "needs --adv-eps > 0"),
        (dict(adv="pgd", adv_eps=0.1, adv_steps=0), "--adv-steps must be >= 1"),
        (dict(adv="trades", adv_eps=0.1, adv_norm="l2"), "trades: linf"),
    ],
)
def test_bad_adversarial_settings_are_user_errors(kw, msg):
    with pytest.raises(UserError, match=msg):
        TrainConfig(**kw).validate()


def test_attack_config_refuses_a_negative_eps():
    with pytest.raises(UserError, match="--eps must be >= 0"):
        AttackConfig(eps=-1).validate()


def test_adversarial_settings_stay_out_of_a_clean_runs_config():
    assert "adv" not in TrainConfig().to_dict()
    d = TrainConfig(adv="pgd", adv_eps=0.1).to_dict()
    assert d["adv"] == "pgd" and d["adv_eps"] == 0.1 and TrainConfig(**d) == TrainConfig(adv="pgd", adv_eps=0.1)


def test_adversarial_training_flops_count_the_attack_passes():
    assert TrainConfig().passes_per_example() == 3
    assert TrainConfig(adv="pgd", adv_eps=0.1, adv_steps=7).passes_per_example() == 17
    assert TrainConfig(adv="fgsm-rs", adv_eps=0.1).passes_per_example() == 5
    assert TrainConfig(adv="trades", adv_eps=0.1, adv_steps=5).passes_per_example() == 17


def test_pixel_space_without_statistics_is_the_model_itself():
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    assert torch.equal(PixelSpace(model, None, None)(x), model(x))


def test_pgd_agrees_with_torchattacks_pgd_within_a_point(digits, trained):
    torchattacks = pytest.importorskip("torchattacks")  # installed --no-deps by `make install` (it wants torchvision)
    net = PixelSpace(trained, digits.mean, digits.std).eval()
    x, y = to_pixels(digits.x_test, digits).clamp(0, 1), digits.y_test
    torch.manual_seed(0)
    theirs = torchattacks.PGD(net, eps=0.1, alpha=0.01, steps=20, random_start=True)(x, y)
    ours = pgd(
        net,
        x,
        y,
        AttackConfig(eps=0.1, steps=20, step_size=0.01),
        pixel_range=(0.0, 1.0),
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        acc = lambda a: (net(a).argmax(1) == y).float().mean().item()  # noqa: E731
    assert abs(acc(ours) - acc(theirs)) <= 0.01 and acc(ours) < acc(x) - 0.1


# -- ticketlab robustness RUN --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("rob") / "imp"
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "mlp1d",
                "--iterations",
                "100",
                "--rounds",
                "2",
                "--control",
                "reinit",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    return run


def results_dir(run, **want):
    """The robustness folder of ``run`` whose settings include ``want`` (other tests add their own)."""
    for d in run.glob("robustness-*"):
        cfg = json.loads((d / "config.json").read_text())["config"]
        if all(cfg.get(k) == v for k, v in want.items()):
            return d
    raise AssertionError(f"no robustness folder with {want}")


def test_robustness_of_every_ticket_and_control_is_cached_and_resumes(imp_run, capsys):
    assert main(["robustness", str(imp_run), "--eps", "0,0.05", "--steps", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    res_dir = results_dir(imp_run, eps=[0.0, 0.05], steps=5, transfer=False)
    rows = json.loads((res_dir / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == [
        "round 0 ticket",
        "round 1 ticket",
        "round 1 reinit",
        "round 2 ticket",
        "round 2 reinit",
    ]
    assert all(r["robust_acc"]["0.0"] == r["clean_acc"] >= r["robust_acc"]["0.05"] for r in rows)
    assert "round 2 reinit" in out and (res_dir / "robust_vs_density.png").exists()
    full = (res_dir / "results.json").read_text()
    (res_dir / "results.json").write_text(json.dumps({**json.loads(full), "rows": rows[:2]}))  # interrupted
    assert main(["robustness", str(imp_run), "--eps", "0,0.05", "--steps", "5", "--quiet"]) == 0
    assert json.loads((res_dir / "results.json").read_text())["rows"] == rows  # the same numbers, seeded


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--eps", "-0.1"], "--eps must be >= 0"),
        (["--attack", "cw"], "unknown --attack 'cw'"),
        (["--norm", "l1"], "unknown --norm 'l1'"),
        (["--samples", "0"], "--samples must be >= 1"),
    ],
)
def test_bad_robustness_flags_are_one_line(imp_run, capsys, args, msg):
    one_line_exit_2(main(["robustness", str(imp_run), *args]), capsys.readouterr().err, msg)


def test_robustness_of_a_folder_without_a_trained_model_is_one_line(tmp_path, capsys):
    one_line_exit_2(main(["robustness", str(tmp_path)]), capsys.readouterr().err, "is not a finished ticketlab run")


def test_transfer_attacks_use_the_dense_models_examples_on_every_model(imp_run):
    assert main(["robustness", str(imp_run), "--eps", "0.05", "--steps", "5", "--quiet"]) == 0
    assert main(["robustness", str(imp_run), "--eps", "0.05", "--steps", "5", "--transfer", "--quiet"]) == 0
    white, transfer = (
        json.loads((results_dir(imp_run, eps=[0.05], steps=5, transfer=t) / "results.json").read_text())["rows"]
        for t in (False, True)
    )
    assert transfer[0]["robust_acc"] == white[0]["robust_acc"]  # the source model meets its own examples
    assert all(t["clean_acc"] == w["clean_acc"] for t, w in zip(transfer, white))
    assert any(t["robust_acc"] != w["robust_acc"] for t, w in zip(transfer[1:], white[1:]))


def test_corruption_accuracy_of_every_model_on_28x28_images(tmp_path, capsys):
    from helpers import write_idx_set

    write_idx_set(tmp_path / "data" / "mnist", n_train=200, n_test=40)
    run = tmp_path / "imp"
    assert (
        main(
            [
                "imp",
                "--dataset",
                "mnist",
                "--data-dir",
                str(tmp_path / "data"),
                "--model",
                "lenet300",
                "--iterations",
                "5",
                "--rounds",
                "1",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "robustness",
                str(run),
                "--eps",
                "0.05",
                "--steps",
                "2",
                "--corruptions",
                "shot_noise,rotate",
                "--data-dir",
                str(tmp_path / "data"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "corruptions: mean test accuracy over shot_noise, rotate" in capsys.readouterr().out
    res = results_dir(run, corruptions=["shot_noise", "rotate"])
    rows = json.loads((res / "results.json").read_text())["rows"]
    for r in rows:
        assert set(r["corruption_acc"]) == {"shot_noise", "rotate"}
        assert r["mean_corruption_acc"] == pytest.approx(sum(r["corruption_acc"].values()) / 2)
    assert (res / "corrupted.safetensors").exists()


def test_corruptions_on_data_that_is_neither_mnist_nor_cifar_sized_are_one_line(imp_run, capsys):
    one_line_exit_2(
        main(["robustness", str(imp_run), "--corruptions", "all"]),
        capsys.readouterr().err,
        "(28x28 grayscale) or CIFAR-10-C's (32x32 RGB); digits is neither",
    )
    one_line_exit_2(
        main(["robustness", str(imp_run), "--corruptions", "nope"]),
        capsys.readouterr().err,
        "unknown corruption 'nope'",
    )


@pytest.mark.parametrize(
    "argv, labels",
    [
        (["dst", "--density", "0.3", "--ensemble", "2"], ["rigl run 0", "rigl run 1", "ensemble"]),
        (["prune-init", "--method", "snip", "--density", "0.3"], ["snip"]),
        (["structured", "--method", "l1", "--sparsity", "0.5"], ["structured (final)"]),
    ],
)
def test_robustness_of_dst_prune_init_and_structured_runs(tmp_path, argv, labels):
    run = tmp_path / "r"
    assert (
        main([*argv, "--dataset", "digits", "--model", "mlp1d", "--iterations", "20", "--quiet", "--out", str(run)])
        == 0
    )
    assert main(["robustness", str(run), "--eps", "0.05", "--steps", "3", "--quiet"]) == 0
    rows = json.loads((results_dir(run, eps=[0.05]) / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == labels
    assert all(r["robust_acc"]["0.05"] <= r["clean_acc"] for r in rows)
    if "ensemble" in labels:  # the mean-softmax ensemble DST itself reports, now attacked as one model
        own = json.loads((run / "summary.json").read_text())["ensemble"]["acc"]
        assert rows[-1]["clean_acc"] == pytest.approx(own, abs=1e-6)


def test_dst_training_flops_count_the_attack_passes(tmp_path):
    common = [
        "dst",
        "--method",
        "set",
        "--density",
        "0.3",
        "--dataset",
        "digits",
        "--model",
        "mlp1d",
        "--iterations",
        "10",
        "--quiet",
    ]
    assert main([*common, "--out", str(tmp_path / "clean")]) == 0
    assert main([*common, "--adv", "pgd", "--adv-eps", "0.05", "--adv-steps", "3", "--out", str(tmp_path / "adv")]) == 0
    flops = lambda d: json.loads((tmp_path / d / "summary.json").read_text())["flops"]["training"]  # noqa: E731
    assert flops("adv") == pytest.approx(flops("clean") * (3 + 2 * 3) / 3)


def test_robustness_of_a_seed_group_is_each_seeds_run_then_mean_and_std(tmp_path, capsys):
    group = tmp_path / "g"
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "mlp1d",
                "--iterations",
                "40",
                "--rounds",
                "1",
                "--seeds",
                "2",
                "--quiet",
                "--out",
                str(group),
            ]
        )
        == 0
    )
    assert main(["robustness", str(group), "--eps", "0.05", "--steps", "3", "--quiet"]) == 0
    assert "mean ± std over seeds [0, 1]" in capsys.readouterr().out
    per_seed = [
        json.loads(next((group / f"seed_{s}").glob("robustness-*/results.json")).read_text())["rows"] for s in (0, 1)
    ]
    agg = json.loads(next(group.glob("robustness-*/results.json")).read_text())["rows"]
    for i, row in enumerate(agg):
        vals = [rows[i]["robust_acc"]["0.05"] for rows in per_seed]
        assert row["robust_acc"]["0.05"]["values"] == vals
        assert row["robust_acc"]["0.05"]["mean"] == pytest.approx(sum(vals) / 2)
    assert next(group.glob("robustness-*/robust_vs_density.png")).exists()


@pytest.mark.parametrize("command", ["robustness", "verify", "show", "runs", "report"])
def test_a_regular_file_where_a_run_folder_goes_is_one_line(tmp_path, capsys, command):
    f = tmp_path / "notes.txt"
    f.write_text("not a run")
    code = main([command, str(f)] + (["--out", str(tmp_path / "r.html")] if command == "report" else []))
    one_line_exit_2(code, capsys.readouterr().err, str(f))
    assert f.read_text() == "not a run" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
