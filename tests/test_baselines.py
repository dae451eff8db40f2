import pytest
import torch

from ticketlab.baselines import run_baselines
from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.lottery import IMPConfig, imp
from ticketlab.pruners import PruneInitConfig, run_prune_init
from ticketlab.runs import training as imp_runner  # the cached training unit every runner uses
from ticketlab.train import TrainConfig

TRAIN = TrainConfig(iterations=30, eval_every=10)


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bl") / "imp"
    imp(IMPConfig(model="lenet300", dataset="digits", rounds=2, train=TRAIN), out, quiet=True)
    return out


def test_baselines_beside_the_method_with_flops(imp_run, monkeypatch):
    starts = []
    real = imp_runner.train

    def spy(model, data, cfg, **kw):
        starts.append((kw["mask"], {k: v.clone() for k, v in model.state_dict().items()}, kw["total"]))
        return real(model, data, cfg, **kw)

    monkeypatch.setattr(imp_runner, "train", spy)
    r = run_baselines(imp_run, rounds=[2], quiet=True)
    row = r["rows"][0]
    assert row["label"] == "round 2" and set(row["baselines"]) == {"shuffle", "reinit", "scratch-b", "finetune"}
    init = load_tensors(imp_run / "init.safetensors")
    mask = load_tensors(imp_run / "round_02" / "mask.safetensors")
    dense = load_tensors(imp_run / "round_00" / "final.safetensors")
    shuffle, reinit, scratch_b, finetune = starts
    assert all(int(shuffle[0][n].sum()) == int(mask[n].sum()) and not torch.equal(shuffle[0][n], mask[n]) for n in mask)
    assert all(torch.equal(shuffle[1][n][shuffle[0][n]], init[n][shuffle[0][n]]) for n in mask)
    assert all(torch.equal(reinit[0][n], mask[n]) and not torch.equal(reinit[1][n], init[n] * mask[n]) for n in mask)
    assert all(torch.equal(finetune[1][n], dense[n] * mask[n]) for n in mask)
    ratio = r["dense_training_flops"] / row["method"]["training_flops"]  # dense / sparse forward FLOPs
    assert reinit[2] == 30 and 1 < ratio < 2 and scratch_b[2] == round(30 * ratio)
    assert row["baselines"]["scratch-b"]["training_flops"] > row["baselines"]["reinit"]["training_flops"]
    assert row["method"]["training_flops"] == row["baselines"]["reinit"]["training_flops"]


def test_prune_init_runs_get_all_but_finetune(tmp_path):
    run_prune_init(
        PruneInitConfig(dataset="digits", method="snip", density=0.2, train=TRAIN), tmp_path / "p", quiet=True
    )
    r = run_baselines(tmp_path / "p", quiet=True)
    assert set(r["rows"][0]["baselines"]) == {"shuffle", "reinit", "scratch-b"}
    with pytest.raises(UserError, match="IMP runs only"):
        run_baselines(tmp_path / "p", which=["finetune"], quiet=True)


def test_bad_input(imp_run, tmp_path):
    with pytest.raises(UserError, match="not an IMP or prune-init run"):
        run_baselines(tmp_path, quiet=True)
    with pytest.raises(UserError, match="unknown baseline"):
        run_baselines(imp_run, which=["magic"], quiet=True)
    with pytest.raises(UserError, match="not a finished pruned round"):
        run_baselines(imp_run, rounds=[5], quiet=True)


def test_imp_runs_from_before_a_new_setting_keep_their_baselines(imp_run, monkeypatch):
    import json

    first = run_baselines(imp_run, rounds=[1], which=["shuffle"], quiet=True)
    cfg_file = imp_run / "config.json"
    original = cfg_file.read_text()
    stored = json.loads(original)
    del stored["config"]["label_noise"]  # the IMP run predates --label-noise
    cfg_file.write_text(json.dumps(stored))
    try:
        monkeypatch.setattr(imp_runner, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
        again = run_baselines(imp_run, rounds=[1], which=["shuffle"], quiet=True)
        assert again["rows"] == first["rows"]
    finally:
        cfg_file.write_text(original)
