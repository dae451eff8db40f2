"""Deadwooding: multipliers rise by dual ascent while a constraint is violated, the final mask has the exact
density and holds through training, and runs resume bitwise."""
import pytest
import torch
from helpers import killed_then_resumed, one_line_exit_2, without_config
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
    dw = Deadwooding(model, opt, ["1.weight", "3.weight"], teacher, data, density=density, prune_step=prune_step,
                     acc_tol=acc_tol, rob_tol=rob_tol, dual_lr=dual_lr, dual_every=2, rob_eps=0.0)
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
            kept = sum(int(m.sum()) for m in dw.masks)
            assert kept == round(0.25 * (64 * 16 + 16 * 10))
            for p, m in zip(dw.params, dw.masks):
                assert torch.count_nonzero(p[~m]) == 0
    assert dw.pruned


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    run = tmp_path_factory.mktemp("dw") / "imp"
    assert main(["imp", "--dataset", "digits", "--model", "mlp1d", "--iterations", "150", "--rounds", "1",
                 "--quiet", "--out", str(run)]) == 0
    return run


def dcfg(source, **kw):
    return DeadwoodConfig(dataset="digits", model="mlp1d", source=str(source), density=0.2, rob_eps=0.05,
                          rob_steps=2, dual_every=10, train=TrainConfig(iterations=60, eval_every=20, batch_size=60),
                          **kw)


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


@pytest.mark.parametrize("args, msg", [
    ([], "deadwood needs --source RUN"),
    (["--source", "SRC", "--density", "0"], "--density must be in (0, 1]"),
    (["--source", "SRC", "--acc-tol", "-1"], "--acc-tol must be >= 0"),
    (["--source", "SRC", "--adv", "pgd", "--adv-eps", "0.1"], "deadwood sets its own loss"),
    (["--source", "NOTRUN"], "is not an IMP run directory"),
])
def test_bad_deadwood_input_is_one_line(source, tmp_path, capsys, args, msg):
    args = [str(source) if a == "SRC" else str(tmp_path) if a == "NOTRUN" else a for a in args]
    base = ["deadwood", "--dataset", "digits", "--model", "mlp1d", "--quiet", "--out", str(tmp_path / "x")]
    one_line_exit_2(main(base + args), capsys.readouterr().err, msg)
    assert not (tmp_path / "x").exists()
