import pytest
import torch
from helpers import die_after_checkpoints

from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.pruners import PruneInitConfig, run_prune_init
from ticketlab.train import TrainConfig


def cfg(**kw):
    return PruneInitConfig(dataset="digits", train=TrainConfig(iterations=60, eval_every=20, batch_size=60), **kw)


def test_prune_init_summary_flops_and_mask(tmp_path):
    s = run_prune_init(cfg(method="snip", density=0.1), tmp_path / "r", quiet=True)
    mask = load_tensors(tmp_path / "r" / "mask.safetensors")
    kept = sum(int(m.sum()) for m in mask.values())
    assert s["density"] == pytest.approx(0.1, abs=1e-5)
    assert s["flops"]["forward_sparse"] == 2 * kept  # an MLP uses each weight once per example
    assert s["flops"]["training"] == 3 * 2 * kept * 60 * 60
    final = load_tensors(tmp_path / "r" / "final.safetensors")
    assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    assert run_prune_init(cfg(method="snip", density=0.1), tmp_path / "r", quiet=True) == s


def test_prune_init_resumes_bitwise(tmp_path, monkeypatch):
    ref = run_prune_init(cfg(method="grasp", density=0.2), tmp_path / "ref", quiet=True, checkpoint_every=20)
    restore = die_after_checkpoints(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_prune_init(cfg(method="grasp", density=0.2), tmp_path / "r", quiet=True, checkpoint_every=20)
    restore()
    assert run_prune_init(cfg(method="grasp", density=0.2), tmp_path / "r", quiet=True, checkpoint_every=20) == ref


def test_different_config_refused(tmp_path):
    run_prune_init(cfg(method="random", density=0.3), tmp_path / "r", quiet=True)
    with pytest.raises(UserError, match="differs in: density"):
        run_prune_init(cfg(method="random", density=0.4), tmp_path / "r", quiet=True)


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"method": "obd"}, "unknown pruner"),
        ({"scope": "local"}, "unknown --scope"),
        ({"distribution": "gauss"}, "unknown --distribution"),
        ({"density": 0}, "--density"),
        ({"prune_rounds": 0}, "--prune-rounds"),
    ],
)
def test_bad_settings(kw, msg):
    with pytest.raises(UserError, match=msg):
        cfg(**kw).validate()


def test_override_keeps_a_layer_at_its_density_and_meets_the_total(tmp_path):
    from ticketlab.sparse import layer_densities

    s = run_prune_init(
        cfg(
            method="synflow",
            density=0.2,
            scope="layerwise",
            distribution="erk",
            override=["5.weight=1.0"],
            prune_rounds=5,
        ),
        tmp_path / "r",
        quiet=True,
    )
    mask = load_tensors(tmp_path / "r" / "mask.safetensors")
    assert layer_densities(mask)["5.weight"] == 1.0 and s["density"] == pytest.approx(0.2, abs=1e-4)


@pytest.mark.parametrize(
    "override,msg",
    [(["1.weight"], "NAME=DENSITY"), (["1.weight=2"], "NAME=DENSITY"), (["nope.weight=0.5"], "unknown layer")],
)
def test_bad_overrides(tmp_path, override, msg):
    with pytest.raises(UserError, match=msg):
        run_prune_init(cfg(scope="layerwise", override=override), tmp_path / "r", quiet=True)


def test_override_needs_layerwise_scope():
    with pytest.raises(UserError, match="--scope layerwise"):
        cfg(override=["1.weight=1.0"]).validate()
