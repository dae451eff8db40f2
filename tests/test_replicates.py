"""Vectorised replicates: R models in one loop equal R sequential trainings up to float rounding; seeds of any
command run in lockstep with their trainings packed; resume, BatchNorm, masks, fallbacks."""

import copy
import json
import shutil

import pytest
import torch
from helpers import die_after_checkpoints, one_line_exit_2
from safetensors import safe_open

from ticketlab.cli import main
from ticketlab.data import load_dataset
from ticketlab.dst.runner import DSTConfig
from ticketlab.errors import UserError
from ticketlab.io import load_tensors, read_json
from ticketlab.lottery import IMPConfig
from ticketlab.models import build_model
from ticketlab.runs import get_experiment
from ticketlab.runs.lockstep import Lockstep, resolve
from ticketlab.runs.seeds import run_seeds
from ticketlab.train import Checkpointer, TrainConfig, train
from ticketlab.train import replicates as replicates_mod
from ticketlab.train.replicates import NotVectorizable, train_each, train_replicates


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def replicas(name, data, seeds, density=None):
    models = [build_model(name, data.input_shape, data.num_classes, seed=s) for s in seeds]
    masks = [None] * len(seeds)
    if density is not None:
        g = torch.Generator().manual_seed(1)
        masks = [
            {
                n: torch.rand(p.shape, generator=g) < density
                for n, p in m.named_parameters()
                if n.endswith("weight") and p.dim() > 1
            }
            for m in models
        ]
    return models, masks


def max_diff(a, b):
    return max(
        (x.float() - y.float()).abs().max().item()
        for ma, mb in zip(a, b)
        for x, y in zip(ma.state_dict().values(), mb.state_dict().values())
    )


@pytest.mark.parametrize("optimizer,lr", [("adam", 2e-3), ("sgd", 0.05), ("adamw", 2e-3)])
def test_masked_mlp_replicates_equal_sequential_training(digits, optimizer, lr):
    cfg = TrainConfig(iterations=40, eval_every=20, batch_size=32, optimizer=optimizer, lr=lr, weight_decay=1e-3)
    seeds = [0, 1, 2]
    models, masks = replicas("lenet300", digits, seeds, density=0.3)
    a, b = copy.deepcopy(models), copy.deepcopy(models)
    ra = train_replicates(a, digits, cfg, masks=masks, seeds=seeds)
    rb = train_each(b, digits, cfg, masks=masks, seeds=seeds)
    assert max_diff(a, b) < 1e-5
    for x, y in zip(ra, rb):
        assert [r["iter"] for r in x.history] == [0, 20, 40]
        for p, q in zip(x.history, y.history):
            assert abs(p["test_acc"] - q["test_acc"]) <= 1 / 360 and abs(p["val_loss"] - q["val_loss"]) < 1e-4
    for m, mk in zip(a, masks):  # pruned weights exactly zero, every replicate with its own mask
        params = dict(m.named_parameters())
        assert all(torch.count_nonzero(params[n][~k]) == 0 for n, k in mk.items())
        assert all(torch.count_nonzero(params[n][k]) == int(k.sum()) for n, k in mk.items())


def test_batchnorm_replicates_keep_their_own_running_statistics(digits):
    cfg = TrainConfig(iterations=3, eval_every=3, batch_size=16, optimizer="sgd", lr=0.05)
    seeds = [0, 1]
    models, masks = replicas("conv2bn", digits, seeds)
    a, b = copy.deepcopy(models), copy.deepcopy(models)
    train_replicates(a, digits, cfg, masks=masks, seeds=seeds)
    train_each(b, digits, cfg, masks=masks, seeds=seeds)
    assert max_diff(a, b) < 1e-4  # running variances of O(10) included
    ra, rb = (dict(m.named_buffers())["1.running_mean"] for m in a)
    assert not torch.allclose(ra, rb)  # different data orders and inits: different statistics per replicate
    assert int(dict(a[0].named_buffers())["1.num_batches_tracked"]) == 3


def test_vectorized_training_is_deterministic_and_resumes_bitwise(digits, tmp_path, monkeypatch):
    cfg = TrainConfig(iterations=40, eval_every=10, batch_size=32)
    seeds = [3, 4]
    models, masks = replicas("lenet300", digits, seeds, density=0.5)

    def run(where, n_kill=None):
        ms = copy.deepcopy(models)
        cps = [Checkpointer(where / f"ck{i}.safetensors", 10) for i in range(len(ms))]
        if n_kill is not None:
            restore = die_after_checkpoints(monkeypatch, n_kill)
            with pytest.raises(KeyboardInterrupt):
                train_replicates(copy.deepcopy(models), digits, cfg, masks=masks, seeds=seeds, checkpointers=cps)
            restore()
        res = train_replicates(ms, digits, cfg, masks=masks, seeds=seeds, checkpointers=cps)
        return ms, res

    a, ra = run(tmp_path / "a")
    b, rb = run(tmp_path / "b")
    assert max_diff(a, b) == 0 and [r.history for r in ra] == [r.history for r in rb]
    c, rc = run(tmp_path / "c", n_kill=2)  # killed after the checkpoint at 20 (of each replicate), resumed
    assert max_diff(a, c) == 0 and [r.history for r in ra] == [r.history for r in rc]


def test_a_vectorized_checkpoint_resumes_sequentially(digits, tmp_path, monkeypatch):
    cfg = TrainConfig(iterations=30, eval_every=10, batch_size=32)
    seeds = [0, 1]
    models, masks = replicas("lenet300", digits, seeds, density=0.5)
    cps = [Checkpointer(tmp_path / f"ck{i}.safetensors", 10) for i in range(2)]
    restore = die_after_checkpoints(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train_replicates(copy.deepcopy(models), digits, cfg, masks=masks, seeds=seeds, checkpointers=cps)
    restore()
    resumed = copy.deepcopy(models)
    train_each(resumed, digits, cfg, masks=masks, seeds=seeds, checkpointers=cps)
    ref = copy.deepcopy(models)
    train_each(ref, digits, cfg, masks=masks, seeds=seeds)
    assert max_diff(resumed, ref) < 1e-5


def test_what_cannot_share_a_loop_is_refused(digits):
    a = build_model("lenet300", digits.input_shape, 10)
    b = build_model("conv2", digits.input_shape, 10)
    with pytest.raises(NotVectorizable):
        train_replicates([a, b], digits, TrainConfig(iterations=2), masks=[None, None], seeds=[0, 1])
    with pytest.raises(NotVectorizable):
        train_replicates(
            [a, copy.deepcopy(a)],
            digits,
            TrainConfig(iterations=2, adv="pgd", adv_eps=0.1),
            masks=[None, None],
            seeds=[0, 1],
        )
    w = {"0.weight": torch.ones(300, 784, dtype=torch.bool)}
    with pytest.raises(NotVectorizable, match="^the replicates mask different layers$"):
        train_replicates([a, copy.deepcopy(a)], digits, TrainConfig(iterations=2), masks=[w, None], seeds=[0, 1])


def imp_cfg(**kw):
    return IMPConfig(
        **(
            {
                "model": "lenet300",
                "dataset": "digits",
                "rounds": 2,
                "controls": ["reinit"],
                "train": TrainConfig(iterations=40, eval_every=20, batch_size=60),
            }
            | kw
        )
    )


@pytest.fixture
def packs_trained(monkeypatch):
    """The sizes of the vectorised packs every Lockstep of the test trained, in order."""
    sizes = []
    real = Lockstep.run

    def spy(self, fns):
        try:
            return real(self, fns)
        finally:
            sizes.extend(self.packs)

    monkeypatch.setattr(Lockstep, "run", spy)
    return sizes


@pytest.mark.slow
def test_imp_seeds_in_lockstep_pack_tickets_and_controls_and_match_sequential(tmp_path, packs_trained):
    packs = packs_trained
    exp = get_experiment("imp")
    vec = run_seeds(exp, imp_cfg(), [0, 1, 2], tmp_path / "v", replicates="vectorized", quiet=True)
    seq = run_seeds(exp, imp_cfg(), [0, 1, 2], tmp_path / "s", replicates="sequential", quiet=True)
    assert packs == [3, 6, 6]  # round 0's tickets; then each round's tickets and reinit controls together
    for v, s in zip(vec["aggregate"]["rounds"], seq["aggregate"]["rounds"]):
        assert v["density"] == s["density"]
        assert abs(v["test_acc"]["mean"] - s["test_acc"]["mean"]) < 0.01
    again = run_seeds(exp, imp_cfg(), [0, 1, 2], tmp_path / "v", replicates="vectorized", quiet=True)
    assert again["aggregate"] == vec["aggregate"]  # finished seeds read themselves back


def test_one_imp_run_in_lockstep_packs_each_rounds_ticket_with_its_controls(tmp_path, packs_trained):
    exp = get_experiment("imp")
    cfg = imp_cfg(controls=["reinit", "random-mask"], seed=3)
    vec = Lockstep().run([lambda: exp.run(cfg, tmp_path / "v", quiet=True)])[0]
    seq = exp.run(cfg, tmp_path / "s", quiet=True)
    assert packs_trained == [3, 3]  # rounds 1 and 2: ticket, reinit, random-mask together (round 0: alone)
    assert vec["rounds"][2]["controls"].keys() == {"reinit", "random-mask"}
    for v, s in zip(vec["rounds"], seq["rounds"]):
        assert v["density"] == s["density"] and v["controls"].keys() == s["controls"].keys()
        assert abs(v["test_acc"] - s["test_acc"]) < 0.01
        assert all(abs(v["controls"][c]["test_acc"] - s["controls"][c]["test_acc"]) < 0.01 for c in v["controls"])
    for f in (
        "round_02/final.safetensors",
        "round_02/reinit/final.safetensors",
        "round_02/random-mask/final.safetensors",
    ):
        a, b = load_tensors(tmp_path / "v" / f), load_tensors(tmp_path / "s" / f)
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4, f


@pytest.mark.slow
def test_batchnorm_models_and_a_killed_group_resume_in_lockstep(tmp_path, monkeypatch):
    monkeypatch.setattr(Lockstep, "cpu_convs", True)  # pack the convolutional net on CPU too
    exp = get_experiment("imp")
    cfg = imp_cfg(
        model="conv2bn", rounds=1, controls=[], train=TrainConfig(iterations=20, eval_every=10, batch_size=32)
    )
    ref = run_seeds(exp, cfg, [0, 1], tmp_path / "ref", replicates="vectorized", quiet=True, checkpoint_every=10)
    restore = die_after_checkpoints(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_seeds(exp, cfg, [0, 1], tmp_path / "g", replicates="vectorized", quiet=True, checkpoint_every=10)
    restore()
    got = run_seeds(exp, cfg, [0, 1], tmp_path / "g", replicates="vectorized", quiet=True, checkpoint_every=10)
    assert got["aggregate"]["rounds"] == ref["aggregate"]["rounds"]


@pytest.mark.parametrize("method, optimizer", [("rigl", "sgd"), ("set", "adam"), ("acdc", "sgd"), ("snfs", "sgd")])
def test_dynamic_sparse_replicates_each_drop_and_grow_as_alone(digits, method, optimizer):
    """Each replicate's own trainer (its mask, drop and grow, held steps, dense phases) on its slice of the
    stack: the same masks as sequential training, weights within float rounding, pruned weights exactly zero."""
    from ticketlab import dst

    cfg = TrainConfig(
        iterations=40, eval_every=20, batch_size=60, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3
    )
    seeds = [0, 1, 2]
    models = [build_model("lenet300", digits.input_shape, digits.num_classes, seed=s) for s in seeds]
    a, b = copy.deepcopy(models), copy.deepcopy(models)
    made: dict = {"a": [], "b": []}

    def factory(side, m, s):
        def build(opt):
            made[side].append(
                dst.make(
                    method,
                    m,
                    opt,
                    density=0.1,
                    total_steps=40,
                    seed=s,
                    delta_t=10,
                    after_step=False,
                    input_shape=digits.input_shape,
                )
            )
            return made[side][-1]

        return build

    ra = train_replicates(
        a, digits, cfg, masks=[None] * 3, seeds=seeds, sparse=[factory("a", m, s) for m, s in zip(a, seeds)]
    )
    rb = [train(m, digits, cfg, seed=s, sparse=factory("b", m, s)) for m, s in zip(b, seeds)]
    for r in range(3):
        ua, ub = made["a"][r], made["b"][r]
        assert ua.step_count == ub.step_count == 40 and ua.training_flops(60) == ub.training_flops(60)
        assert all(torch.equal(x, y) for x, y in zip(ua.mask_list, ub.mask_list))
        assert all(((p * ~m) == 0).all() for p, m in zip(ua.params, ua.mask_list))
        assert max((p - q).abs().max().item() for p, q in zip(a[r].parameters(), b[r].parameters())) < 1e-5
        assert abs(ra[r].history[-1]["test_acc"] - rb[r].history[-1]["test_acc"]) < 0.01
        assert all(
            p.untyped_storage().nbytes() == p.numel() * p.element_size() for p in a[r].parameters()
        )  # each model owns its weights again (no view of the stack)


def test_dst_seeds_and_ensemble_members_pack_and_ctre_trains_one_by_one(tmp_path, packs_trained):
    exp = get_experiment("dst")
    cfg = DSTConfig(
        model="lenet300",
        dataset="digits",
        method="rigl",
        density=0.2,
        delta_t=10,
        train=TrainConfig(iterations=30, eval_every=10, batch_size=60),
    )
    v = run_seeds(exp, cfg, [0, 1], tmp_path / "v", replicates="vectorized", quiet=True)
    s = run_seeds(exp, cfg, [0, 1], tmp_path / "s", replicates="sequential", quiet=True)
    assert packs_trained == [2]
    assert abs(v["aggregate"]["test_acc"]["mean"] - s["aggregate"]["test_acc"]["mean"]) < 0.01
    ens = copy.deepcopy(cfg)
    ens.ensemble = 3
    Lockstep().run([lambda: exp.run(ens, tmp_path / "ens", quiet=True)])
    assert packs_trained == [2, 3]
    ctre = copy.deepcopy(cfg)
    ctre.method = "ctre"  # watches the model's own forward for its activation statistics: not vectorisable
    v = run_seeds(exp, ctre, [0, 1], tmp_path / "cv", replicates="vectorized", quiet=True)
    s = run_seeds(exp, ctre, [0, 1], tmp_path / "cs", replicates="sequential", quiet=True)
    assert packs_trained == [2, 3]
    strip = lambda a: {k: v for k, v in a.items() if k != "config"}  # noqa: E731
    assert strip(v["aggregate"]) == strip(s["aggregate"])


def test_replicates_flag(tmp_path, capsys):
    assert resolve("auto", "cpu") == "sequential" and resolve("auto", "cuda") == "vectorized"
    assert resolve("vectorized", "cpu") == "vectorized"
    code = main(
        [
            "imp",
            "--model",
            "lenet300",
            "--dataset",
            "digits",
            "--seeds",
            "2",
            "--replicates",
            "batched",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    one_line_exit_2(code, capsys.readouterr().err, "unknown --replicates 'batched'")
    assert (
        main(
            [
                "imp",
                "--model",
                "lenet300",
                "--dataset",
                "digits",
                "--seeds",
                "2",
                "--replicates",
                "vectorized",
                "--rounds",
                "1",
                "--iterations",
                "20",
                "--quiet",
                "--out",
                str(tmp_path / "ok"),
            ]
        )
        == 0
    )
    assert (tmp_path / "ok" / "seed_1" / "round_01" / "final.safetensors").exists()


def test_packs_group_by_model_and_dataset_and_give_every_worker_one():
    from ticketlab.runs.sweep import Task, packs

    def t(model, i):
        return Task(None, i, ("imp", {"model": model, "dataset": "digits"}, f"out{i}", {}))

    tasks = [t("lenet300", i) for i in range(5)] + [t("conv2", i) for i in range(5, 7)]
    got = packs(tasks, size=64, jobs=1)
    assert sorted(len(p) for p in got) == [2, 5] and all(len({x.args[1]["model"] for x in p}) == 1 for p in got)
    got = packs(tasks, size=64, jobs=2)
    assert sorted(len(p) for p in got) == [1, 1, 2, 3]
    got = packs(tasks, size=2, jobs=1)
    assert sorted(len(p) for p in got) == [1, 2, 2, 2] and sum(len(p) for p in got) == 7


@pytest.mark.slow
def test_a_vectorized_sweep_packs_points_and_seeds(tmp_path, packs_trained):
    packs_seen = packs_trained
    argv = [
        "sweep",
        "imp",
        "--vary",
        "rate=0.2,0.5",
        "--seeds",
        "2",
        "--model",
        "lenet300",
        "--dataset",
        "digits",
        "--rounds",
        "1",
        "--iterations",
        "30",
        "--quiet",
    ]
    assert main([*argv, "--replicates", "vectorized", "--out", str(tmp_path / "v")]) == 0
    assert packs_seen == [4, 4]  # round 0 and round 1 of 2 points x 2 seeds, each one loop
    assert main([*argv, "--replicates", "sequential", "--out", str(tmp_path / "s")]) == 0
    from ticketlab.io import read_json

    v, s = read_json(tmp_path / "v" / "sweep.json"), read_json(tmp_path / "s" / "sweep.json")
    for a, b in zip(v["points"], s["points"]):
        assert a["state"] == b["state"] == "done"
        assert abs(a["headline"]["test_acc"]["mean"] - b["headline"]["test_acc"]["mean"]) < 0.01


@pytest.mark.slow
def test_run_level_commands_pack_their_independent_cells_and_match_sequential(tmp_path, packs_trained):
    """baselines, deconstruct and instability under --replicates vectorized: their cells share packs, and the
    tables equal the sequential ones up to float rounding."""
    run = tmp_path / "imp"
    tiny = ["--quiet", "--iterations", "30", "--eval-every", "15"]
    assert main(["imp", "--model", "lenet300", "--dataset", "digits", "--rounds", "1", *tiny, "--out", str(run)]) == 0
    shutil.copytree(run, tmp_path / "seq")
    commands = [
        ["baselines", "--only", "shuffle,reinit,finetune"],
        ["deconstruct", "--criteria", "large_final,random", "--kept", "original,constant"],
        ["instability", "--rewind", "0", "--use-rounds", "0,1", "--points", "5"],
    ]
    for c in commands:
        assert main([c[0], str(run), *c[1:], "--quiet", "--replicates", "vectorized"]) == 0
        assert main([c[0], str(tmp_path / "seq"), *c[1:], "--quiet", "--replicates", "sequential"]) == 0
    # baselines' 3 cells; deconstruct's 2 criteria + 3 kept rules (original, constant, constant-signed);
    # instability's 2 copies of the dense net, then of the ticket (a mask and no mask do not share a pack)
    assert packs_trained == [3, 5, 2, 2]

    def accs(tree, found=None):
        found = [] if found is None else found
        if isinstance(tree, dict):
            for k, v in sorted(tree.items()):
                found.append(v) if k in ("test_acc", "barrier") else accs(v, found)
        elif isinstance(tree, list):
            for v in tree:
                accs(v, found)
        return found

    for pattern in ("baselines-*/summary.json", "deconstruct-*/summary.json", "instability-*/results.json"):
        v, s = accs(read_json(next(run.glob(pattern)))), accs(read_json(next((tmp_path / "seq").glob(pattern))))
        assert len(v) == len(s) > 0 and max(abs(a - b) for a, b in zip(v, s)) < 0.02, pattern


def test_a_sweep_pack_of_prune_init_methods_at_one_density_shares_one_loop(tmp_path, packs_trained):
    from ticketlab.pruners.runner import PruneInitConfig
    from ticketlab.runs.sweep import run_pack, run_task

    def task(method, root):
        cfg = PruneInitConfig(
            model="lenet300",
            dataset="digits",
            method=method,
            density=0.1,
            train=TrainConfig(iterations=30, eval_every=15, batch_size=60),
        )
        return ("prune-init", cfg.to_dict(), str(tmp_path / root / method), {"quiet": True})

    methods = ("snip", "synflow", "random")
    assert run_pack([task(m, "v") for m in methods], None) == [None, None, None]
    assert packs_trained == [3]
    for m in methods:
        seq = run_task(*task(m, "s"), None)
        vec = read_json(tmp_path / "v" / m / "summary.json")
        assert abs(vec["test_acc"] - seq["test_acc"]) < 0.02, m
        a, b = (load_tensors(tmp_path / d / m / "mask.safetensors") for d in ("v", "s"))
        assert all(torch.equal(a[k], b[k]) for k in a)  # pruning at init is not part of the pack: the same masks


def test_a_killed_dst_group_in_lockstep_resumes_to_the_same_bits(tmp_path, monkeypatch, packs_trained):
    exp = get_experiment("dst")
    cfg = DSTConfig(
        model="lenet300",
        dataset="digits",
        method="rigl",
        density=0.2,
        delta_t=10,
        train=TrainConfig(iterations=40, eval_every=10, batch_size=60),
    )
    ref = run_seeds(exp, cfg, [0, 1], tmp_path / "ref", replicates="vectorized", quiet=True, checkpoint_every=10)
    restore = die_after_checkpoints(monkeypatch, 4)  # both seeds saved at iteration 20, then killed
    with pytest.raises(KeyboardInterrupt):
        run_seeds(exp, cfg, [0, 1], tmp_path / "g", replicates="vectorized", quiet=True, checkpoint_every=10)
    restore()
    got = run_seeds(exp, cfg, [0, 1], tmp_path / "g", replicates="vectorized", quiet=True, checkpoint_every=10)
    assert packs_trained == [2, 2]  # the reference, and the resumed pack (the killed one never finished)
    strip = lambda a: {k: v for k, v in a.items() if k != "config"}  # noqa: E731
    assert strip(got["aggregate"]) == strip(ref["aggregate"])
    for s in (0, 1):
        a = load_tensors(tmp_path / "ref" / f"seed_{s}" / "train_0" / "mask.safetensors")
        b = load_tensors(tmp_path / "g" / f"seed_{s}" / "train_0" / "mask.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_plain_mlps_take_the_baddbmm_forward_equal_to_vmap_and_other_models_vmap():
    from torch.func import functional_call, stack_module_state, vmap

    from ticketlab.train.replicates import batched_mlp

    models = [build_model("lenet300", (1, 8, 8), 10, seed=s) for s in range(3)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    one = lambda p, b, x: functional_call(base, (p, b), (x,))  # noqa: E731
    f = batched_mlp(base)
    x, shared = torch.randn(3, 5, 1, 8, 8), torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(f(params, x, False), vmap(one)(params, buffers, x), atol=1e-6)
        assert torch.allclose(
            f(params, shared, True), vmap(one, in_dims=(0, 0, None))(params, buffers, shared), atol=1e-6
        )
    assert batched_mlp(build_model("conv2", (3, 32, 32), 10, seed=0)) is None
    assert batched_mlp(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))) is None
    assert batched_mlp(torch.nn.Sequential(torch.nn.Linear(4, 4))) is None  # no leading Flatten: vmap


def test_a_linear_model_and_layers_without_bias_take_the_baddbmm_forward_and_a_norm_first_does_not():
    from torch.func import stack_module_state

    from ticketlab.train.replicates import batched_mlp

    nn = torch.nn
    torch.manual_seed(0)
    for make in (
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),  # logistic regression: one layer
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 20, bias=False), nn.ReLU(), nn.Linear(20, 10, bias=False)),
    ):
        models = [make() for _ in range(2)]
        params, _ = stack_module_state(models)
        f = batched_mlp(copy.deepcopy(models[0]).to("meta"))
        x = torch.randn(2, 5, 1, 8, 8)
        with torch.no_grad():
            want = torch.stack([m(xi) for m, xi in zip(models, x)])
            assert f is not None and torch.allclose(f(params, x, False), want, atol=1e-6)
    assert batched_mlp(nn.Sequential(nn.Flatten(), nn.BatchNorm1d(64), nn.Linear(64, 10))) is None


# -- a replicate's view of the stacked optimizer, by hand -----------------------------------------------------


def stacked_adam():
    from ticketlab.train.replicates import _ReplicaOptimizer

    stack = torch.nn.Parameter(torch.zeros(3, 4))  # 3 replicates of a 4-vector
    opt = torch.optim.Adam([stack], lr=0.1)
    stack.grad = torch.arange(12.0).view(3, 4)
    opt.step()
    own = [torch.nn.Parameter(stack.detach()[1])]  # replicate 1's parameter
    return stack, opt, own, _ReplicaOptimizer(opt, own, [stack], 1)


def test_a_replicates_param_groups_show_its_parameters_and_share_the_settings():
    stack, opt, own, view = stacked_adam()
    (g,) = view.param_groups
    assert g["params"] == own and g["lr"] == 0.1 and len(g) == len(opt.param_groups[0])
    assert set(g) == set(opt.param_groups[0])
    g["lr"] = 0.05
    assert opt.param_groups[0]["lr"] == 0.05  # settings are the stack's
    with pytest.raises(TypeError, match="^a replicate's parameters are fixed$"):
        g["params"] = []
    g["extra"] = 1
    del g["extra"]
    assert "extra" not in opt.param_groups[0]


def test_a_replicates_state_is_views_of_its_slice_and_writes_land_in_the_stack():
    stack, opt, own, view = stacked_adam()
    st = view.state[own[0]]
    full = opt.state[stack]
    assert torch.equal(st["exp_avg"], full["exp_avg"][1]) and st["step"] is full["step"]  # the step is shared
    assert own[0] in view.state and torch.nn.Parameter(torch.zeros(4)) not in view.state
    assert list(view.state) == own and len(view.state) == 1
    view.state[own[0]] = {"exp_avg": torch.full((4,), 7.0)}
    assert (full["exp_avg"][1] == 7).all() and (full["exp_avg"][0] != 7).all()
    before = full["exp_avg_sq"].clone()
    del view.state[own[0]]
    assert (full["exp_avg"][1] == 0).all() and (full["exp_avg_sq"][1] == 0).all()
    assert torch.equal(full["exp_avg_sq"][0], before[0]) and torch.equal(full["exp_avg_sq"][2], before[2])
    view.state[own[0]] = {"note": "plain values are set as they are"}
    assert full["note"] == "plain values are set as they are"


def test_a_replicate_cannot_create_tensor_state_of_its_own():
    from ticketlab.train.replicates import NotVectorizable

    stack, opt, own, view = stacked_adam()
    with pytest.raises(NotVectorizable, match="'new' cannot be created alone"):
        view.state[own[0]] = {"new": torch.zeros(4)}


def test_a_replicate_without_state_yet_lists_nothing():
    from ticketlab.train.replicates import _ReplicaOptimizer

    stack = torch.nn.Parameter(torch.zeros(2, 3))
    opt = torch.optim.SGD([stack], lr=0.1, momentum=0.9)
    own = [torch.nn.Parameter(torch.zeros(3))]
    view = _ReplicaOptimizer(opt, own, [stack], 0)
    assert list(view.state) == [] and len(view.state) == 0 and own[0] not in view.state
    view.state[own[0]] = {"step": 3}  # a plain value starts the stack's state
    assert opt.state[stack] == {"step": 3} and own[0] in view.state


def test_pre_step_hooks_run_in_order_and_can_be_removed():
    _, _, _, view = stacked_adam()
    calls = []
    view.register_step_pre_hook(lambda o, a, k: calls.append(("a", o is view, a, k)))
    h = view.register_step_pre_hook(lambda o, a, k: calls.append(("b",)))
    view.pre_step()
    h.remove()
    view.pre_step()
    assert calls == [("a", True, (), {}), ("b",), ("a", True, (), {})]


def test_train_each_trains_every_model_alone_with_its_mask_seed_checkpointer_log_and_progress():
    calls = []

    def spy(model, data, cfg, **kw):
        calls.append((model, kw))
        return f"trained {model}"

    out = train_each(
        ["a", "b"],
        "data",
        "cfg",
        masks=["ma", "mb"],
        seeds=[3, 4],
        start_iter=2,
        total=9,
        checkpointers=["ca", "cb"],
        progress=True,
        desc="seeds",
        train_fn=spy,
    )
    assert out == ["trained a", "trained b"]
    assert calls == [
        ("a", dict(mask="ma", seed=3, start_iter=2, total=9, checkpointer="ca", log=None, progress=True, desc="seeds")),
        ("b", dict(mask="mb", seed=4, start_iter=2, total=9, checkpointer="cb", log=None, progress=True, desc="seeds")),
    ]


class _Recorder:
    """A training log that keeps every call: what the vectorised loop must log as the sequential one does."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append((name, a, k))


def test_augmented_replicates_with_logs_equal_sequential_training_and_log_the_same(digits):
    cfg = TrainConfig(iterations=12, eval_every=6, batch_size=32, augment="gaussian", augment_sigma=0.3)
    seeds = [0, 1]
    models, masks = replicas("lenet300", digits, seeds, density=0.5)
    a, b = copy.deepcopy(models), copy.deepcopy(models)
    la, lb = [_Recorder(), _Recorder()], [_Recorder(), _Recorder()]
    train_replicates(a, digits, cfg, masks=masks, seeds=seeds, logs=la)
    train_each(b, digits, cfg, masks=masks, seeds=seeds, logs=lb)
    assert max_diff(a, b) < 1e-5  # the same noise, of sigma 0.3, per replicate
    c = copy.deepcopy(models)
    train_each(c, digits, TrainConfig(**(cfg.to_dict() | {"augment_sigma": 0.1})), masks=masks, seeds=seeds)
    assert max_diff(b, c) > 1e-4  # (another sigma trains otherwise)
    for x, y in zip(la, lb):
        assert [(n, a[0] if a else None) for n, a, _ in x.calls] == [(n, a[0] if a else None) for n, a, _ in y.calls]
        assert any(n == "scalars" and "loss/train" in a[1] for n, a, _ in x.calls)  # the steps' mean loss
        for (_, p, _), (_, q, _) in zip(x.calls, y.calls):
            if len(p) > 1 and isinstance(p[1], dict):
                assert p[1].keys() == q[1].keys()
                assert all(abs(p[1][k] - q[1][k]) < 1e-4 for k in p[1] if isinstance(p[1][k], float))


def test_evaluation_in_chunks_sums_every_chunks_loss_and_counts(digits):
    """Evaluation over 360 test examples in chunks of 50 (the last one short) gives the one-chunk numbers."""
    cfg = TrainConfig(iterations=20, eval_every=20, batch_size=32)
    models, masks = replicas("lenet300", digits, [0, 1], density=0.5)
    one = train_replicates(copy.deepcopy(models), digits, cfg, masks=masks, seeds=[0, 1])
    many = train_replicates(copy.deepcopy(models), digits, cfg, masks=masks, seeds=[0, 1], chunk=50)
    for x, y in zip(one, many):
        for p, q in zip(x.history, y.history):
            assert p["test_acc"] == q["test_acc"] and p["val_acc"] == q["val_acc"]
            assert p["test_loss"] == pytest.approx(q["test_loss"], rel=1e-6)


def test_one_replicate_trains_in_the_loop_as_alone_and_an_epoch_budget_comes_from_the_data(digits):
    cfg = TrainConfig(epochs=1, eval_every=4, batch_size=128)  # len(train) // 128 full batches
    models, masks = replicas("lenet300", digits, [5], density=0.3)
    a, b = copy.deepcopy(models), copy.deepcopy(models)
    ra = train_replicates(a, digits, cfg, masks=masks, seeds=[5])
    rb = train_each(b, digits, cfg, masks=masks, seeds=[5])
    steps = len(digits.y_train) // 128
    assert ra[0].iterations == rb[0].iterations == steps
    assert [r["iter"] for r in ra[0].history] == [r["iter"] for r in rb[0].history] == [*range(0, steps, 4), steps]
    assert max_diff(a, b) < 1e-5


def test_a_resumed_pack_starts_from_its_checkpoints_not_from_the_given_weights(digits, tmp_path, monkeypatch):
    """Resumed with models at other initial weights, the pack ends where the uninterrupted one does: the
    checkpoints' weights, iteration and history are the ones trained on (one replicate or two), resumed in the
    second epoch (10 batches of 128 an epoch)."""
    cfg = TrainConfig(iterations=30, eval_every=10, batch_size=128)
    for seeds in ([3], [3, 4]):
        models, masks = replicas("lenet300", digits, seeds, density=0.5)
        ref = copy.deepcopy(models)
        rref = train_replicates(ref, digits, cfg, masks=masks, seeds=seeds)
        where = tmp_path / str(len(seeds))
        cps = [Checkpointer(where / f"ck{i}.safetensors", 10) for i in range(len(seeds))]
        restore = die_after_checkpoints(monkeypatch, len(seeds))  # every replicate's checkpoint at 10
        with pytest.raises(KeyboardInterrupt):
            train_replicates(copy.deepcopy(models), digits, cfg, masks=masks, seeds=seeds, checkpointers=cps)
        restore()
        other, _ = replicas("lenet300", digits, [s + 10 for s in seeds])
        bar = []
        real = replicates_mod.tqdm
        monkeypatch.setattr(replicates_mod, "tqdm", lambda **kw: bar.append(kw["initial"]) or real(**kw))
        res = train_replicates(other, digits, cfg, masks=masks, seeds=seeds, checkpointers=cps, progress=True)
        assert bar == [10]
        assert max_diff(other, ref) == 0 and [r.history for r in res] == [r.history for r in rref]
        monkeypatch.setattr(replicates_mod, "tqdm", real)


def test_checkpoints_at_different_iterations_cannot_share_a_loop(digits, tmp_path, monkeypatch):
    cfg = TrainConfig(iterations=30, eval_every=10, batch_size=32)
    models, masks = replicas("lenet300", digits, [0, 1], density=0.5)
    cps = [Checkpointer(tmp_path / f"ck{i}.safetensors", 10) for i in range(2)]
    for m, mk, cp, kills in zip(copy.deepcopy(models), masks, cps, (1, 2)):  # one at 10, the other at 20
        restore = die_after_checkpoints(monkeypatch, kills)
        with pytest.raises(KeyboardInterrupt):
            train(m, digits, cfg, mask=mk, seed=0, checkpointer=cp)
        restore()
    with pytest.raises(NotVectorizable, match="^the replicates' checkpoints are at different iterations$"):
        train_replicates(copy.deepcopy(models), digits, cfg, masks=masks, seeds=[0, 1], checkpointers=cps)


def test_a_given_total_is_the_budget_and_the_loop_is_quiet_unless_asked(digits, capsys):
    cfg = TrainConfig(iterations=40, eval_every=20, batch_size=32)
    models, masks = replicas("lenet300", digits, [0, 1], density=0.5)
    res = train_replicates(copy.deepcopy(models), digits, cfg, masks=masks, seeds=[0, 1], total=7)
    assert [r.iterations for r in res] == [7, 7] and [r["iter"] for r in res[0].history] == [0, 7]
    assert capsys.readouterr().err == ""
    train_replicates(copy.deepcopy(models), digits, cfg, masks=masks, seeds=[0, 1], total=1, progress=True)
    assert "replicates (x2)" in capsys.readouterr().err
    res = train_replicates(copy.deepcopy(models), digits, cfg, masks=masks, seeds=[0, 1], start_iter=5, total=12)
    assert [r.iterations for r in res] == [7, 7] and [r["iter"] for r in res[0].history] == [5, 12]


def test_train_each_is_quiet_by_default_and_names_its_bar_replicates():
    seen = []
    train_each(["a"], "data", "cfg", masks=[None], seeds=[0], train_fn=lambda m, d, c, **kw: seen.append(kw))
    assert (seen[0]["progress"], seen[0]["desc"]) == (False, "replicates")


def test_every_refusal_says_why(digits):
    a = build_model("lenet300", digits.input_shape, 10)
    b = build_model("conv2", digits.input_shape, 10)
    cfg = TrainConfig(iterations=2)
    why = "^different architectures or settings, or forward hooks on the models$"
    with pytest.raises(NotVectorizable, match=why):
        train_replicates([a, b], digits, cfg, masks=[None, None], seeds=[0, 1])
    with pytest.raises(NotVectorizable, match=why):
        train_replicates([], digits, cfg, masks=[], seeds=[])
    for masks, seeds in (([None], [0, 1]), ([None, None], [0])):
        with pytest.raises(ValueError, match=r"^one mask \(or None\) and one seed per model$"):
            train_replicates([a, copy.deepcopy(a)], digits, cfg, masks=masks, seeds=seeds)
    w = {"0.weight": torch.ones(300, 784, dtype=torch.bool)}
    with pytest.raises(NotVectorizable, match="^the replicates mask different layers$"):
        train_replicates([a, copy.deepcopy(a)], digits, cfg, masks=[None, w], seeds=[0, 1])


LOOP_REFUSED = (
    r"^the sparse trainers differ, have a loss of their own, cannot be rebound or watch the model's forward "
    r"\(CTRE's activation statistics\)$"
)


class _Trainer:
    """A stand-in sparse trainer: what the loop asks of one before it trains (nothing is trained)."""

    detached = 0

    def __init__(self, optimizer, step_on_update=True):
        self.step_on_update = step_on_update

    def rebind(self, optimizer):
        pass

    def detach(self):
        type(self).detached += 1


class _Lossy(_Trainer):
    def loss(self, loss):
        pass


class _Other(_Trainer):
    pass


class _Unbound:
    def __init__(self, optimizer):
        pass

    def loss(self, loss):  # (and no detach: nothing to detach)
        pass


@pytest.mark.parametrize(
    "factories",
    [
        [_Lossy, _Lossy],
        [_Trainer, _Other],
        [_Trainer, lambda o: _Trainer(o, step_on_update=False)],
        [_Unbound, _Unbound],
    ],
    ids=["own loss", "two classes", "step on update differs", "no rebind, no detach"],
)
def test_sparse_trainers_that_cannot_share_a_loop_are_detached_and_refused(digits, factories):
    models, _ = replicas("lenet300", digits, [0, 1])
    _Trainer.detached = _Lossy.detached = _Other.detached = 0
    with pytest.raises(NotVectorizable, match=LOOP_REFUSED):
        train_replicates(models, digits, TrainConfig(iterations=2), masks=[None, None], seeds=[0, 1], sparse=factories)
    detachable = sum(isinstance(f, type) and issubclass(f, _Trainer) or not isinstance(f, type) for f in factories)
    assert _Trainer.detached + _Lossy.detached + _Other.detached == detachable


def test_sparse_trainers_for_some_replicates_only_or_beside_a_mask_are_refused(digits):
    why = "^some replicates have sparse trainers, others not$"
    models, masks = replicas("lenet300", digits, [0, 1], density=0.5)
    cfg = TrainConfig(iterations=2)
    with pytest.raises(NotVectorizable, match=why):
        train_replicates(models, digits, cfg, masks=[None, None], seeds=[0, 1], sparse=[_Trainer, None])
    with pytest.raises(NotVectorizable, match=why):
        train_replicates(models, digits, cfg, masks=masks, seeds=[0, 1], sparse=[_Trainer, _Trainer])
    with pytest.raises(NotVectorizable, match=why):
        train_replicates(models[:1], digits, cfg, masks=masks[:1], seeds=[0], sparse=[_Trainer])


def same_log_calls(x: _Recorder, y: _Recorder) -> None:
    assert [(n, a[0] if a else None) for n, a, _ in x.calls] == [(n, a[0] if a else None) for n, a, _ in y.calls]
    for (_, p, _), (_, q, _) in zip(x.calls, y.calls):
        if len(p) > 1 and isinstance(p[1], dict):
            assert p[1].keys() == q[1].keys()
            assert all(p[1][k] == pytest.approx(q[1][k], rel=1e-4, abs=1e-5) for k in p[1])


def _bn_mlp(seed: int) -> torch.nn.Module:
    """64-128-10 with BatchNorm: buffers, and a forward vmap runs (not the plain-MLP one). (RigL's choices on a
    convolutional net flip on near-ties where vmap's grouped convolutions round otherwise.)"""
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))


def test_dst_replicates_of_a_batchnorm_net_under_warmup_and_cosine_log_and_observe_as_alone(digits):
    """RigL on an MLP with BatchNorm (its buffers views of the stack too), the learning rate warmed up and
    annealed: the same masks, weights, running statistics, logged rows (density, FLOPs, mask changes) and rows
    each trainer observes as in sequential training."""
    from ticketlab import dst

    cfg = TrainConfig(
        iterations=12, eval_every=4, batch_size=32, optimizer="sgd", lr=0.05, lr_schedule="cosine", warmup=3
    )  # (not Adam: it turns the rounding noise of a bias before BatchNorm, whose gradient is 0, into steps of lr)
    seeds = [0, 1]
    models = [_bn_mlp(s) for s in seeds]
    a, b = copy.deepcopy(models), copy.deepcopy(models)
    made: dict = {"a": [], "b": []}
    seen: dict = {"a": [[], []], "b": [[], []]}

    def factory(side, m, s, r):
        def build(opt):
            u = dst.make("rigl", m, opt, density=0.2, total_steps=12, seed=s, delta_t=4, input_shape=digits.input_shape)
            real = u.observe
            u.observe = lambda row: (seen[side][r].append(dict(row)), real(row))
            made[side].append(u)
            return u

        return build

    la, lb = [_Recorder(), _Recorder()], [_Recorder(), _Recorder()]
    ra = train_replicates(
        a,
        digits,
        cfg,
        masks=[None] * 2,
        seeds=seeds,
        logs=la,
        sparse=[factory("a", m, s, r) for r, (m, s) in enumerate(zip(a, seeds))],
    )
    rb = [
        train(m, digits, cfg, seed=s, log=lg, sparse=factory("b", m, s, r))
        for r, (m, s, lg) in enumerate(zip(b, seeds, lb))
    ]
    assert max_diff(a, b) < 1e-4
    for r in range(2):
        assert all(torch.equal(x, y) for x, y in zip(made["a"][r].mask_list, made["b"][r].mask_list))
        assert seen["a"][r] == ra[r].history and len(seen["b"][r]) == len(rb[r].history) == 4
        same_log_calls(la[r], lb[r])
    assert any(n == "scalars" and "mask_change" in a[1] for n, a, _ in la[0].calls)
    assert any(n == "scalars" and a[1].get("density") == pytest.approx(0.2, abs=0.01) for n, a, _ in la[0].calls)


@pytest.mark.parametrize(
    "schedule",
    [dict(lr_schedule="cosine"), dict(warmup=6), dict(lr_schedule="step", milestones=[8], gamma=0.1)],
    ids=["cosine", "warmup", "step"],
)
def test_learning_rate_schedules_train_as_alone(digits, schedule):
    base = dict(iterations=16, eval_every=8, batch_size=32, optimizer="sgd", lr=0.1)
    cfg = TrainConfig(**base, **schedule)
    models, masks = replicas("lenet300", digits, [0, 1], density=0.5)
    a, b, c = copy.deepcopy(models), copy.deepcopy(models), copy.deepcopy(models)
    train_replicates(a, digits, cfg, masks=masks, seeds=[0, 1])
    train_each(b, digits, cfg, masks=masks, seeds=[0, 1])
    train_each(c, digits, TrainConfig(**base), masks=masks, seeds=[0, 1])
    assert max_diff(a, b) < 1e-5 and max_diff(b, c) > 1e-3  # (the schedule changes the training)


def read_checkpoint(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_vectorized_checkpoints_hold_what_sequential_ones_do_and_only_replicates_given_one(
    digits, tmp_path, monkeypatch
):
    """Saved every 10 of 30 iterations (at 10 and 20: the end is the result, not a checkpoint), for the
    second replicate only: its file holds the sequential file's weights, momenta, learning rate and history."""
    cfg = TrainConfig(iterations=30, eval_every=10, batch_size=32, optimizer="sgd", lr=0.1, lr_schedule="cosine")
    models, masks = replicas("lenet300", digits, [0, 1], density=0.5)
    saved = []
    real = Checkpointer.save
    monkeypatch.setattr(Checkpointer, "save", lambda self, it, *a, **k: (saved.append(it), real(self, it, *a, **k)))
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train_replicates(
        copy.deepcopy(models), digits, cfg, masks=masks, seeds=[0, 1], checkpointers=[None, Checkpointer(a, 10)]
    )
    assert saved == [10, 20]
    train(copy.deepcopy(models[1]), digits, cfg, mask=masks[1], seed=1, checkpointer=Checkpointer(b, 10))
    (ta, ma), (tb, mb) = read_checkpoint(a), read_checkpoint(b)
    assert ta.keys() == tb.keys() and any(k.endswith("momentum_buffer") for k in ta)
    assert all(ta[k].shape == tb[k].shape and torch.allclose(ta[k], tb[k], atol=1e-5) for k in ta)
    assert ma["iteration"] == mb["iteration"] == "20"
    ga, gb = json.loads(ma["optimizer"])["param_groups"], json.loads(mb["optimizer"])["param_groups"]
    assert [g.keys() for g in ga] == [g.keys() for g in gb]
    assert [g["lr"] for g in ga] == pytest.approx([g["lr"] for g in gb]) and ga[0]["lr"] < 0.1
    ha, hb = json.loads(ma["history"]), json.loads(mb["history"])
    assert [r["iter"] for r in ha] == [r["iter"] for r in hb] == [0, 10, 20]


class _Bar:
    made: list = []

    def __init__(self, **kw):
        self.kw, self.n, self.closed = kw, kw.get("initial", 0), False
        _Bar.made.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


def test_the_progress_bar_counts_iterations_to_the_total(digits, monkeypatch):
    monkeypatch.setattr(replicates_mod, "tqdm", _Bar)
    _Bar.made = []
    cfg = TrainConfig(iterations=40, eval_every=3, batch_size=32)
    models, masks = replicas("lenet300", digits, [0, 1], density=0.5)
    train_replicates(models, digits, cfg, masks=masks, seeds=[0, 1], total=7, progress=True, desc="seeds")
    (bar,) = _Bar.made
    assert bar.kw == dict(total=7, initial=0, desc="seeds (x2)", leave=False, mininterval=0.5, dynamic_ncols=True)
    assert bar.n == 7 and bar.closed


class _Scaled(torch.nn.Module):
    """A user's MLP with a non-persistent buffer (in named_buffers, not in the state dict)."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.fc2 = torch.nn.Linear(64, 32), torch.nn.Linear(32, 10)
        self.register_buffer("scale", torch.tensor(0.5), persistent=False)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1) * self.scale)))


def test_a_model_with_a_non_persistent_buffer_trains_as_alone(digits):
    cfg = TrainConfig(iterations=10, eval_every=5, batch_size=32)
    models = [_Scaled(0), _Scaled(1)]
    a, b = copy.deepcopy(models), copy.deepcopy(models)
    train_replicates(a, digits, cfg, masks=[None, None], seeds=[0, 1])
    train_each(b, digits, cfg, masks=[None, None], seeds=[0, 1])
    assert max_diff(a, b) < 1e-5 and max_diff(a, models) > 1e-3


def test_a_plain_mlp_trains_without_vmap(digits, monkeypatch):
    def no_vmap(*a, **k):
        raise AssertionError("vmap")

    monkeypatch.setattr(torch.func, "vmap", no_vmap)
    models, masks = replicas("lenet300", digits, [0, 1], density=0.5)
    res = train_replicates(models, digits, TrainConfig(iterations=4, eval_every=4), masks=masks, seeds=[0, 1])
    assert [r.iterations for r in res] == [4, 4]


def test_a_diverging_pack_stops_with_a_line_naming_it(digits):
    models, masks = replicas("lenet300", digits, [0, 1], density=0.5)
    cfg = TrainConfig(iterations=20, eval_every=20, batch_size=32, lr=1e30, momentum=0.0)
    with pytest.raises(UserError, match=r"^seeds \(x2\): the training loss is not finite \(NaN or inf\) at iteration "):
        train_replicates(models, digits, cfg, masks=masks, seeds=[0, 1], desc="seeds")


def test_one_replicates_trainer_with_a_loss_of_its_own_is_refused(digits):
    models, _ = replicas("lenet300", digits, [0])
    with pytest.raises(NotVectorizable, match=LOOP_REFUSED):
        train_replicates(models, digits, TrainConfig(iterations=2), masks=[None], seeds=[0], sparse=[_Lossy])


class _Wide(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


class _Squashed(_Wide):
    """The same parameters as _Wide, another forward: they must not share a loop."""

    def forward(self, x):
        return torch.tanh(self.fc(x.flatten(1)))


def test_models_of_other_classes_or_devices_with_the_same_parameters_are_not_stacked(digits):
    from ticketlab.train.replicates import signature

    a = _Wide()
    assert signature(a) == signature(_Wide()) != signature(_Squashed())
    assert signature(a) != signature(copy.deepcopy(a).to("meta"))
    with pytest.raises(NotVectorizable):
        train_replicates([a, _Squashed()], digits, TrainConfig(iterations=2), masks=[None, None], seeds=[0, 1])
