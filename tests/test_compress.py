import json

import pytest
import torch
import torch.nn.functional as F
from helpers import killed_then_resumed, one_line_exit_2, without_config, write_imp_source
from torch import nn

from ticketlab.cli import main
from ticketlab.compress import CompressConfig, GradualPruner, run_compress, step_densities, step_iterations
from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.pruners import PRUNERS, score
from ticketlab.sparse import global_prune, layerwise_prune, nm_prune
from ticketlab.train import TrainConfig

# -- schedules, hand-worked ----------------------------------------------------------------------------------


def test_cubic_schedule_is_zhu_and_gupta_density_path():
    assert step_densities(0.1, 2, "cubic") == pytest.approx([0.1 + 0.9 * 0.5**3, 0.1])
    assert step_densities(0.1, 2, "exponential") == pytest.approx([0.1**0.5, 0.1])
    assert step_densities(0.1, 2, "linear") == pytest.approx([0.55, 0.1])
    assert step_densities(0.3, 1, "cubic") == [0.3]


def test_steps_are_spaced_from_iteration_zero_to_the_prune_end():
    assert step_iterations(100, 1, 0.5) == [0]
    assert step_iterations(100, 3, 0.5) == [0, 25, 50]
    assert step_iterations(90, 4, 1.0) == [0, 30, 60, 90]
    with pytest.raises(UserError, match="need at least 4 iterations"):
        step_iterations(6, 5, 0.5)
    with pytest.raises(UserError, match="unknown --schedule"):
        step_densities(0.1, 2, "quadratic")


# -- the gradual pruner -------------------------------------------------------------------------------------


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_gradual_pruner_reaches_each_density_exactly_and_keeps_pruned_weights_zero():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    names = ["0.weight", "2.weight"]
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    pr = GradualPruner(
        net,
        opt,
        names,
        PRUNERS.get("magnitude"),
        final_density=0.25,
        total=20,
        steps=3,
        schedule="linear",
        end_fraction=0.5,
        batches=lambda k: [(x, y)],
    )
    seen = {0: pr.log[-1]["density"]}
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        pr.step()
        seen[pr.step_count] = pr.log[-1]["density"]
        for n, m in pr.mask.items():
            w = dict(net.named_parameters())[n]
            assert torch.count_nonzero(w[~m]) == 0
            assert torch.count_nonzero(opt.state[w]["momentum_buffer"][~m]) == 0
    # 160 prunable weights: 0.75 -> 120, 0.5 -> 80, 0.25 -> 40 kept, at iterations 0, 5, 10
    assert [e["iter"] for e in pr.log] == [0, 5, 10]
    assert [e["density"] for e in pr.log] == [0.75, 0.5, 0.25]
    assert seen[4] == 0.75 and seen[5] == 0.5 and seen[19] == 0.25


def test_gradual_pruner_state_round_trips():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 8), torch.randint(0, 4, (8,))
    kw = dict(final_density=0.5, total=10, steps=2, end_fraction=0.5, batches=lambda k: [(x, y)])
    a = GradualPruner(net, opt, ["0.weight"], PRUNERS.get("random"), **kw)
    for _ in range(6):
        a.step()
    b = GradualPruner(_net(), torch.optim.SGD(_net().parameters(), lr=0.1), ["0.weight"], PRUNERS.get("random"), **kw)
    b.load_state_dict(*a.state_dict())
    assert b.step_count == 6 and b.log == a.log and torch.equal(b.mask_list[0], a.mask_list[0])


def test_the_pruners_checkpoint_names_its_method_and_schedule_position():
    import json

    net = _net()
    x, y = torch.randn(8, 8), torch.randint(0, 4, (8,))
    pr = GradualPruner(
        net,
        torch.optim.SGD(net.parameters(), lr=0.1),
        ["0.weight"],
        PRUNERS.get("random"),
        final_density=0.5,
        total=10,
        steps=2,
        end_fraction=0.5,
        batches=lambda k: [(x, y)],
    )
    pr.step()
    tensors, meta = pr.state_dict()
    meta = json.loads(meta)
    assert meta["method"] == pr.method and pr.method and meta["step_count"] == 1 and sorted(tensors) == ["mask.0"]


def test_by_default_one_pruning_step_and_three_passes_per_training_example():
    """steps 1: straight to the final density at the start; each training step costs forward + backward
    (twice the forward: input and weight gradients) of the current sparse net."""
    net = _net()
    x, y = torch.randn(8, 8), torch.randint(0, 4, (8,))
    pr = GradualPruner(
        net,
        torch.optim.SGD(net.parameters(), lr=0.1),
        ["0.weight"],
        PRUNERS.get("magnitude"),
        final_density=0.5,
        total=10,
        end_fraction=0.5,
        input_shape=(8,),
        batches=lambda k: [(x, y)],
    )
    assert [e["density"] for e in pr.log] == [0.5]
    before = pr.flops_per_example
    pr.step()
    assert pr._fwd > 0 and pr.flops_per_example - before == 3 * pr._fwd


def test_layerwise_steps_keep_each_layers_share_and_an_n_m_pattern_keeps_n_of_every_m():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 8), torch.randint(0, 4, (8,))
    kw = dict(total=10, batches=lambda k: [(x, y)])
    lay = GradualPruner(
        net,
        opt,
        ["0.weight", "2.weight"],
        PRUNERS.get("magnitude"),
        final_density=0.25,
        scope="layerwise",
        steps=1,
        **kw,
    )
    assert [int(m.sum()) for m in lay.mask_list] == [32, 16]  # a quarter of 128 and of 64
    nm = GradualPruner(
        _net(),
        torch.optim.SGD(_net().parameters(), lr=0.1),
        ["0.weight"],
        PRUNERS.get("magnitude"),
        final_density=0.5,
        pattern=(2, 4),
        steps=3,
        end_fraction=0.5,
        **kw,
    )
    # step densities 0.648, 0.519, 0.5: round(4 d) = 3, then 2 of each group of 4 (never below N = 2)
    groups = lambda: nm.mask_list[0].view(16, 2, 4).sum(-1)  # noqa: E731
    assert (groups() == 3).all()
    for _ in range(6):
        nm.step()
    assert (groups() == 2).all()


def test_a_step_scores_the_pruned_model_and_clears_the_removed_weights_state():
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 8), torch.randint(0, 4, (8,))
    F.cross_entropy(net(x), y).backward()
    opt.step()
    seen = []

    def scorer(model, names, batches, g):
        w = dict(model.named_parameters())
        seen.append(int((w["0.weight"] == 0).sum()))
        return {n: w[n].detach().abs() for n in names}

    pr = GradualPruner(
        net,
        opt,
        ["0.weight"],
        scorer,
        final_density=0.25,
        total=4,
        steps=2,
        end_fraction=0.25,
        batches=lambda k: [(x, y)],
    )
    w = net[0].weight
    assert seen == [0] and torch.count_nonzero(opt.state[w]["exp_avg"][~pr.mask_list[0]]) == 0
    pr.step()  # iteration 1 = round(0.25 x 4): the second step sees the first's zeros
    assert seen == [0, 128 - int(round(128 * (0.25 + 0.75 * 0.5**3)))]  # the zeros of the first step's mask
    assert int(pr.mask_list[0].sum()) == 32


def test_without_after_step_the_weights_are_not_remultiplied_and_flops_follow_the_density():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 8), torch.randint(0, 4, (8,))
    pr = GradualPruner(
        net,
        opt,
        ["0.weight", "2.weight"],
        PRUNERS.get("magnitude"),
        final_density=0.5,
        total=4,
        batches=lambda k: [(x, y)],
        input_shape=(8,),
        passes_per_example=3,
        after_step=False,
    )
    with torch.no_grad():
        net[0].weight.add_(1.0)  # writes into pruned places: only the multiply after a step would undo it
    pr.step()
    assert (net[0].weight[~pr.mask_list[0]] != 0).all()
    # forward FLOPs of the pruned net: 2 per kept weight (multiply-add) plus the biases, 3 passes per step
    fwd = pr._fwd
    assert fwd > 0 and pr.flops_per_example == 3 * fwd
    dense = GradualPruner(
        _net(),
        torch.optim.SGD(_net().parameters(), lr=0.1),
        ["0.weight"],
        PRUNERS.get("magnitude"),
        final_density=1.0,
        total=4,
        batches=lambda k: [(x, y)],
        input_shape=(8,),
    )
    assert dense._fwd > fwd
    assert (
        GradualPruner(
            _net(),
            torch.optim.SGD(_net().parameters(), lr=0.1),
            ["0.weight"],
            PRUNERS.get("magnitude"),
            final_density=0.5,
            total=4,
            batches=lambda k: [(x, y)],
        )._fwd
        == 0.0
    )


def test_the_pre_step_hook_masks_gradients_until_detached():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    x, y = torch.randn(8, 8), torch.randint(0, 4, (8,))
    pr = GradualPruner(
        net,
        opt,
        ["0.weight"],
        PRUNERS.get("magnitude"),
        final_density=0.5,
        total=4,
        batches=lambda k: [(x, y)],
        after_step=False,
    )
    F.cross_entropy(net(x), y).backward()
    opt.step()
    assert torch.count_nonzero(net[0].weight[~pr.mask_list[0]]) == 0
    pr.detach()
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()
    assert torch.count_nonzero(net[0].weight[~pr.mask_list[0]]) > 0


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(final_density=0.0), r"--density must be in \(0, 1\]"),
        (dict(final_density=1.5), "--density must be"),
        (dict(scope="local"), "unknown --scope 'local'; choose one of: global, layerwise"),
        (dict(steps=0), "--steps must be >= 1"),
    ],
)
def test_bad_gradual_settings_are_refused(kw, msg):
    net = _net()
    args = dict(final_density=0.5, total=10, batches=lambda k: []) | kw
    with pytest.raises(UserError, match=msg):
        GradualPruner(net, torch.optim.SGD(net.parameters(), lr=0.1), ["0.weight"], PRUNERS.get("random"), **args)


def test_exponential_and_linear_paths_and_rounded_step_iterations():
    assert step_densities(0.2, 4, "exponential") == pytest.approx([0.2**0.25, 0.2**0.5, 0.2**0.75, 0.2])
    assert step_densities(0.2, 4, "linear") == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert step_densities(0.2, 4) == pytest.approx([0.2 + 0.8 * 0.75**3, 0.2 + 0.8 * 0.5**3, 0.2 + 0.8 * 0.25**3, 0.2])
    assert step_iterations(10, 3, 0.55) == [0, 3, 6]  # last = round(5.5) = 6, middle round(3.0)
    assert step_iterations(7, 2, 1.0) == [0, 7]


@pytest.fixture(scope="module")
def digits():
    from ticketlab.data import load_dataset

    return load_dataset("digits", None, quiet=True)


# -- the GAP score ------------------------------------------------------------------------------------------


def test_gap_score_is_minus_w_times_the_adversarial_loss_gradient(digits):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x, y = digits.x_train[:50], digits.y_train[:50]
    names = ["1.weight"]
    w = net[1].weight
    # eps 0: the adversarial inputs are the clean ones, so the score is -w * dL/dw on them
    s0 = score(
        PRUNERS.get("gap"),
        net,
        names,
        [(x, y)],
        torch.Generator().manual_seed(0),
        {"data": digits, "eps": 0.0, "steps": 3},
    )
    (g,) = torch.autograd.grad(F.cross_entropy(net(x), y), [w])
    assert torch.allclose(s0["1.weight"], -(w.detach() * g), atol=1e-6)
    # eps > 0: the gradient is taken at inputs with a higher loss
    s1 = score(
        PRUNERS.get("gap"),
        net,
        names,
        [(x, y)],
        torch.Generator().manual_seed(0),
        {"data": digits, "eps": 0.2, "steps": 5},
    )
    assert not torch.allclose(s1["1.weight"], s0["1.weight"])


def test_gap_without_the_dataset_is_refused():
    net = _net()
    with pytest.raises(UserError, match="needs the dataset"):
        score(
            PRUNERS.get("gap"),
            net,
            ["0.weight"],
            [(torch.randn(4, 8), torch.zeros(4, dtype=torch.long))],
            torch.Generator(),
            None,
        )


# -- ticketlab compress --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_imp_source(tmp_path_factory.mktemp("cmp") / "imp")


def ccfg(source, **kw):
    return CompressConfig(
        dataset="digits",
        model="mlp1d",
        source=str(source),
        train=TrainConfig(iterations=60, eval_every=20, batch_size=60),
        **kw,
    )


def test_compress_prunes_the_trained_parent_to_the_exact_density(source, tmp_path):
    s = run_compress(ccfg(source, method="gap", density=0.2, steps=3, gap_steps=3), tmp_path / "c", quiet=True)
    mask = load_tensors(tmp_path / "c" / "mask.safetensors")
    final = load_tensors(tmp_path / "c" / "final.safetensors")
    assert s["density"] == pytest.approx(0.2, abs=1e-4)
    assert [st["iter"] for st in s["steps"]] == [0, 15, 30]
    assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    parent = json.loads((source / "summary.json").read_text())["rounds"][0]["test_acc"]
    assert s["dense_test_acc"] == parent
    assert s["flops"]["training"] < s["flops"]["training_dense"]
    assert run_compress(ccfg(source, method="gap", density=0.2, steps=3, gap_steps=3), tmp_path / "c", quiet=True) == s


def test_compress_resumes_bitwise(source, tmp_path, monkeypatch):
    c = ccfg(source, method="magnitude", density=0.3, steps=4, prune_end=0.8)
    ref = run_compress(c, tmp_path / "ref", quiet=True, checkpoint_every=20)
    s = killed_then_resumed(run_compress, c, tmp_path / "r", monkeypatch, quiet=True, checkpoint_every=20)
    assert without_config(s) == without_config(ref)
    a, b = (load_tensors(tmp_path / d / "final.safetensors") for d in ("ref", "r"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_robustness_of_a_compress_run_has_the_parent_and_int8_forms(source, tmp_path, capsys):
    run = tmp_path / "c"
    assert (
        main(
            [
                "compress",
                "--source",
                str(source),
                "--dataset",
                "digits",
                "--model",
                "mlp1d",
                "--method",
                "random",
                "--density",
                "0.3",
                "--iterations",
                "30",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert main(["robustness", str(run), "--eps", "0.05", "--steps", "3", "--transfer", "--int8", "--quiet"]) == 0
    out = capsys.readouterr().out
    res = next(run.glob("robustness-*"))
    rows = json.loads((res / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == [
        "dense parent",
        "dense parent int8",
        "random (1 steps)",
        "random (1 steps) int8",
    ]
    assert rows[0]["density"] == 1.0 and rows[2]["density"] == pytest.approx(0.3, abs=1e-4)
    assert "dense parent int8" in out
    # int8 is close to its float model on clean inputs
    assert abs(rows[1]["clean_acc"] - rows[0]["clean_acc"]) < 0.05


@pytest.mark.parametrize(
    "args, msg",
    [
        ([], "compress needs --source RUN"),
        (["--source", "SRC", "--method", "nope"], "unknown pruner 'nope'"),
        (["--source", "SRC", "--density", "0"], "--density must be in (0, 1]"),
        (["--source", "SRC", "--schedule", "square"], "unknown --schedule 'square'"),
        (["--source", "SRC", "--steps", "50", "--iterations", "20"], "50 pruning steps need at least 49"),
        (["--source", "SRC", "--model", "lenet300"], "use the same --model and --dataset"),
        (["--source", "NOTRUN"], "is not an IMP run directory"),
    ],
)
def test_bad_compress_input_is_one_line(source, tmp_path, capsys, args, msg):
    args = [str(source) if a == "SRC" else str(tmp_path) if a == "NOTRUN" else a for a in args]
    base = ["compress", "--dataset", "digits", "--quiet", "--out", str(tmp_path / "x")]
    if "--model" not in args:
        base += ["--model", "mlp1d"]
    one_line_exit_2(main(base + args), capsys.readouterr().err, msg)
    assert not (tmp_path / "x").exists()


# -- each step's draws, defaults, scopes (mutation testing) ---------------------------------------------------


def _flat_net():
    """Every weight equal: magnitude scores tie everywhere, so a mask is the tie-breaking generator's alone."""
    net = _net()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.5)
    return net


def _pruner(net, scorer="magnitude", **kw):
    x, y = torch.randn(8, 8, generator=torch.Generator().manual_seed(1)), torch.zeros(8, dtype=torch.long)
    args = dict(final_density=0.5, total=10, batches=lambda k: [(x, y)]) | kw
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return GradualPruner(net, opt, ["0.weight", "2.weight"], PRUNERS.get(scorer), **args)


@pytest.mark.parametrize(
    "kw, prune",
    [
        (dict(), lambda s, m, g: global_prune(s, m, 0.5, g)),
        (dict(scope="layerwise"), lambda s, m, g: layerwise_prune(s, m, {"0.weight": 0.5, "2.weight": 0.5}, g)),
        (dict(pattern=(2, 4)), lambda s, m, g: nm_prune(s, m, 2, 4, g)),
    ],
)
def test_each_steps_ties_are_broken_by_the_generator_of_the_runs_seed_and_the_step(kw, prune):
    """All scores tied: the mask is the one the step's generator (seed, "compress", step) draws, seed 0 by
    default, and another seed draws another."""
    from ticketlab.seeding import generator

    net = _flat_net()
    names = ["0.weight", "2.weight"]
    ones = {n: torch.ones_like(p, dtype=torch.bool) for n, p in net.named_parameters() if n in names}
    scores = {n: torch.full_like(m, 0.5, dtype=torch.float32) for n, m in ones.items()}
    for seed in (0, 3):
        want = prune(scores, ones, generator(seed, "compress", 0))
        got = _pruner(_flat_net(), **kw, **({} if seed == 0 else {"seed": seed})).mask
        assert all(torch.equal(got[n], want[n]) for n in names), seed
    assert not torch.equal(_pruner(_flat_net(), **kw).mask_list[0], _pruner(_flat_net(), seed=3, **kw).mask_list[0])


def test_random_scores_of_each_step_come_from_its_own_generator_on_its_own_batches():
    """Two steps of random pruning: step k scores with generator(seed, "compress", k) on batches(k) (the
    scorer sees both), so its mask is the oracle's built from those."""
    from ticketlab.seeding import generator

    seen = []
    real = PRUNERS.get("random")

    def scorer(model, names, batches, g):
        seen.append((batches, g.initial_seed()))
        return real(model, names, batches, g)

    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    pr = GradualPruner(
        net, opt, ["0.weight"], scorer, final_density=0.25, total=4, steps=2, end_fraction=0.25, seed=5,
        batches=lambda k: [("batch", k)],
    )  # fmt: skip
    pr.step()
    assert seen == [([("batch", 0)], generator(5, "compress", 0).initial_seed()),
                    ([("batch", 1)], generator(5, "compress", 1).initial_seed())]  # fmt: skip


def test_by_default_the_last_step_is_at_half_the_training_and_every_step_remultiplies_the_weights():
    pr = _pruner(_net(), steps=2)
    assert pr.at == [0, 5]
    w = pr.params[0]
    with torch.no_grad():
        w.add_(1.0)  # writes into pruned places
    pr.step()
    assert torch.count_nonzero(w[~pr.mask_list[0]]) == 0


def test_global_scope_ranks_all_layers_together():
    """Layer 2's weights all 1, above every one of layer 0's (|w| < 0.36 at init): globally, half of all 192
    weights are layer 2's 64 and 32 of layer 0's; layerwise would keep half of each."""
    net = _net()
    with torch.no_grad():
        net[2].weight.fill_(1.0)
    assert [int(m.sum()) for m in _pruner(net).mask_list] == [32, 64]


def test_flops_accumulate_over_steps():
    pr = _pruner(_net(), input_shape=(8,))
    for _ in range(3):
        pr.step()
    assert pr.flops_per_example == pytest.approx(3 * 3 * pr._fwd) and pr._fwd > 0


def test_an_unknown_schedule_names_every_choice():
    with pytest.raises(UserError, match=r"^unknown --schedule 'quadratic'; choose one of: cubic, exponential, linear$"):
        step_densities(0.1, 2, "quadratic")


def test_a_loaded_pruners_masks_are_on_its_parameters_device():
    """Masks come from the checkpoint on the CPU; they go where the weights are (the meta device standing in
    for a GPU), as float masks of the weights' dtype for the multiplies."""
    pr = _pruner(_net())
    assert {m.dtype for m in pr._float} == {torch.float32}
    tensors, meta = pr.state_dict()
    pr.params = [p.detach().to("meta", torch.float64) for p in pr.params]
    pr.load_state_dict(tensors, meta)
    assert {(m.device.type, m.dtype) for m in pr.mask_list} == {("meta", torch.bool)}
    assert {(m.device.type, m.dtype) for m in pr._float} == {("meta", torch.float64)}
