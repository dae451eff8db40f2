import pytest
import torch
from helpers import die_after_checkpoints

from ticketlab.cli import main
from ticketlab.dst.runner import DSTConfig, run_dst
from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.train import TrainConfig


def cfg(**kw):
    return DSTConfig(
        **({"dataset": "digits", "train": TrainConfig(iterations=60, eval_every=20, batch_size=60), "delta_t": 10} | kw)
    )


def test_summary_reports_members_ensemble_and_flops(tmp_path):
    s = run_dst(cfg(method="rigl", density=0.1, ensemble=2), tmp_path / "r", quiet=True)
    assert len(s["runs"]) == 2 and s["ensemble"]["size"] == 2
    assert s["density"] == 5020 / 50200  # lenet300 on 8x8 digits: exactly round(0.1 x 50200) kept
    assert s["runs"][0]["seed"] == 0 and s["runs"][1]["seed"] != 0
    for i in range(2):
        mask = load_tensors(tmp_path / "r" / f"train_{i}" / "mask.safetensors")
        final = load_tensors(tmp_path / "r" / f"train_{i}" / "final.safetensors")
        assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    f = s["flops"]
    assert f["training"] < f["training_dense"] and f["inference"] < 2 * f["forward_dense"]
    assert set(s["ensemble"]) == {"acc", "nll", "ece", "size"}
    assert run_dst(cfg(method="rigl", density=0.1, ensemble=2), tmp_path / "r", quiet=True) == s


@pytest.mark.parametrize("method", ["rigl", "ctre", "edst", "acdc", "gmp", "snfs"])
def test_interrupted_runs_resume_bitwise(tmp_path, monkeypatch, method):
    kw = {"method": method, "density": 0.2, "ctre_probe": 100}
    ref = run_dst(cfg(**kw), tmp_path / "ref", quiet=True, checkpoint_every=20)
    restore = die_after_checkpoints(monkeypatch, n=2)
    with pytest.raises(KeyboardInterrupt):
        run_dst(cfg(**kw), tmp_path / "r", quiet=True, checkpoint_every=20)
    restore()
    assert run_dst(cfg(**kw), tmp_path / "r", quiet=True, checkpoint_every=20) == ref


def test_edst_members_and_acdc_dense_model(tmp_path):
    s = run_dst(cfg(method="edst", members=2), tmp_path / "e", quiet=True)
    assert len(s["members"]) == 2 and len(s["runs"]) == 1
    assert (tmp_path / "e" / "train_0" / "member_1_mask.safetensors").exists()
    a = run_dst(cfg(method="acdc", acdc_warmup=0.2, acdc_phase=0.2, acdc_final=0.2), tmp_path / "a", quiet=True)
    assert set(a["dense_model"]) == {"acc", "nll", "ece"}
    assert a["flops"]["training"] > 0.4 * a["flops"]["training_dense"]  # 24 of 60 steps are dense


def test_different_config_refused(tmp_path):
    run_dst(cfg(method="static"), tmp_path / "r", quiet=True)
    with pytest.raises(UserError, match="differs in: method"):
        run_dst(cfg(method="set"), tmp_path / "r", quiet=True)


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"method": "nope"}, "unknown sparse trainer"),
        ({"density": 1.5}, "--density"),
        ({"ensemble": 0}, "--ensemble"),
        ({"method": "edst", "ensemble": 2}, "--members"),
        ({"method": "edst", "train": TrainConfig(lr_schedule="cosine")}, "constant"),
        ({"ctre_probe": -1}, "--ctre-probe"),
    ],
)
def test_bad_settings(kw, msg):
    with pytest.raises(UserError, match=msg):
        cfg(**kw).validate()


def test_cli_runs_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "r"
    assert (
        main(
            [
                "dst",
                "--dataset",
                "digits",
                "--method",
                "set",
                "--iterations",
                "30",
                "--eval-every",
                "10",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "training FLOPs" in capsys.readouterr().out
    assert (
        main(
            [
                "dst",
                "--dataset",
                "digits",
                "--method",
                "set",
                "--distribution",
                "normal",
                "--iterations",
                "30",
                "--out",
                str(tmp_path / "x"),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "distribution" in err


def test_show_prints_a_finished_dst_run(tmp_path, capsys):
    run_dst(cfg(method="static"), tmp_path / "r", quiet=True)
    assert main(["show", str(tmp_path / "r")]) == 0
    assert "static on lenet300 / digits" in capsys.readouterr().out


def test_ensemble_metrics_are_those_of_the_mean_of_member_probabilities(tmp_path):
    from ticketlab.data import load_dataset
    from ticketlab.models import build_model

    s = run_dst(
        cfg(method="set", density=0.2, ensemble=3, train=TrainConfig(iterations=30, eval_every=30, batch_size=60)),
        tmp_path / "r",
        quiet=True,
    )
    data = load_dataset("digits")
    probs = []
    for i, _r in enumerate(s["runs"]):
        m = build_model("lenet300", data.input_shape, data.num_classes, seed=0)
        m.load_state_dict(load_tensors(tmp_path / "r" / f"train_{i}" / "final.safetensors"))
        with torch.no_grad():
            p = torch.softmax(m.eval()(data.x_test).double(), 1)
        assert s["members"][i]["acc"] == pytest.approx(float((p.argmax(1) == data.y_test).double().mean()))
        probs.append(p)
    mean = sum(probs) / 3
    acc = float((mean.argmax(1) == data.y_test).double().mean())
    nll = float(-mean[torch.arange(len(data.y_test)), data.y_test].log().mean())
    assert s["ensemble"]["acc"] == pytest.approx(acc, abs=1e-12) and s["ensemble"]["nll"] == pytest.approx(nll)
    assert s["ensemble"]["size"] == 3 and len({m["acc"] for m in s["members"]}) > 1


def test_ensemble_members_train_from_their_own_seeds_and_data_orders(tmp_path, monkeypatch):
    from ticketlab.dst.runner import member_seed
    from ticketlab.train import loop

    seen = []
    real = loop.epoch_permutation
    monkeypatch.setattr(loop, "epoch_permutation", lambda seed, e, n: seen.append((seed, e)) or real(seed, e, n))
    short = TrainConfig(iterations=25, eval_every=25, batch_size=60)
    s = run_dst(cfg(method="static", density=0.3, ensemble=3, seed=4, train=short), tmp_path / "r", quiet=True)
    seeds = [r["seed"] for r in s["runs"]]
    assert seeds == [4, member_seed(4, 1), member_seed(4, 2)] and len(set(seeds)) == 3
    assert [sd for sd, e in seen if e == 0] == seeds  # member i's data order comes from its own seed
    single = run_dst(cfg(method="static", density=0.3, seed=4, train=short), tmp_path / "one", quiet=True)
    assert single["runs"][0] == s["runs"][0]  # member 0 is the single run


def test_reference_fidelity_fields_keep_older_hashes_except_rigls_changed_default():
    d = cfg(method="set").to_dict()
    assert "erk_power_scale" not in d and "step_on_update" not in d
    assert cfg(method="rigl").to_dict()["step_on_update"] == "skip"
    assert cfg(method="rigl", step_on_update="apply").to_dict()["step_on_update"] == "apply"
    assert cfg(method="set", erk_power_scale=0.5).to_dict()["erk_power_scale"] == 0.5
    with pytest.raises(UserError, match="unknown --step-on-update"):
        cfg(step_on_update="never").validate()


def test_an_older_rigl_folder_is_refused_under_the_new_default_and_resumes_with_apply(tmp_path, capsys):
    """A rigl run made before the reference-code update rule (no step_on_update stored) was trained with the
    step applied: `--step-on-update apply` resumes it; the plain command is refused in one line."""
    import json

    run = tmp_path / "old"
    assert (
        main(
            [
                "dst",
                "--dataset",
                "digits",
                "--method",
                "rigl",
                "--iterations",
                "20",
                "--step-on-update",
                "apply",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    rec = json.loads((run / "config.json").read_text())
    del rec["config"]["step_on_update"]  # as an older folder has it
    (run / "config.json").write_text(json.dumps(rec))
    assert (
        main(
            [
                "dst",
                "--dataset",
                "digits",
                "--method",
                "rigl",
                "--iterations",
                "20",
                "--step-on-update",
                "apply",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert (
        main(["dst", "--dataset", "digits", "--method", "rigl", "--iterations", "20", "--quiet", "--out", str(run)])
        == 2
    )
    assert "differs in: step_on_update" in capsys.readouterr().err


def test_a_new_method_is_one_class_whose_hooks_the_runner_calls(tmp_path):
    """A method defined and registered here, in one class: its refusal, its snapshots as the ensemble's
    members and its own keyword arguments all come from its hooks (the runner names no method)."""
    from ticketlab.dst import SparseTrainer
    from ticketlab.dst.registry import SPARSE_TRAINERS

    seen = {}

    class Halves(SparseTrainer):
        """Static sparse training whose ensemble is the model at half time and at the end."""

        name = "test-halves"

        def __init__(self, *a, marker=None, **kw):
            seen["marker"] = marker
            super().__init__(*a, **kw)

        @classmethod
        def check_config(cls, cfg):
            if cfg.density > 0.5:
                raise UserError("test-halves keeps at most half")

        @classmethod
        def config_kwargs(cls, cfg):
            return {"marker": cfg.seed + 7}

        @classmethod
        def snapshots(cls, cfg, total):
            return {total // 2: "half", total: "end"}

        @classmethod
        def ensemble_members(cls, cfg):
            return ["half", "end"]

    SPARSE_TRAINERS.register("test-halves")(Halves)
    try:
        with pytest.raises(UserError, match="at most half"):
            cfg(method="test-halves", density=0.8).validate()
        s = run_dst(cfg(method="test-halves", density=0.2), tmp_path / "r", quiet=True)
        assert seen["marker"] == 7 and s["ensemble"]["size"] == 2
        assert {p.name for p in (tmp_path / "r" / "train_0").glob("*.safetensors")} >= {
            "half.safetensors",
            "half_mask.safetensors",
            "end.safetensors",
            "end_mask.safetensors",
        }
    finally:
        SPARSE_TRAINERS._items.pop("test-halves")
