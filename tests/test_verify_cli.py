"""`ticketlab verify RUN`: every model of a run gets clean, PGD and verified accuracy (verified <= PGD <=
clean), unstable neurons per layer and time per sample; complete verdicts; cached and resumed; bad input in
one line."""

import json
import shutil

import pytest
import torch
from helpers import one_line_exit_2

from ticketlab.cli import main


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ver") / "imp"
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
                "2",
                "--rate",
                "0.7",
                "--control",
                "reinit",
                "--certified",
                "ibp",
                "--cert-eps",
                "0.05",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    return run


def results(run):
    (d,) = [
        d
        for d in run.glob("verify-*")
        if "complete" in json.loads((d / "config.json").read_text())["config"]["methods"]
    ]
    return d, json.loads((d / "results.json").read_text())["rows"]


@pytest.mark.slow
def test_verify_every_ticket_and_control_with_bounds_and_complete_verification(imp_run, capsys):
    args = [
        "verify",
        str(imp_run),
        "--eps",
        "0.05",
        "--samples",
        "30",
        "--method",
        "all",
        "--timeout",
        "20",
        "--pgd-steps",
        "10",
        "--pgd-restarts",
        "1",
        "--quiet",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    d, rows = results(imp_run)
    assert [r["label"] for r in rows] == [
        "round 0 ticket",
        "round 1 ticket",
        "round 1 reinit",
        "round 2 ticket",
        "round 2 reinit",
    ]
    for r in rows:
        v = r["verified"]
        assert (
            v["ibp"] <= v["complete"]
            and v["crown"] <= v["alpha-crown"] <= v["complete"] <= r["pgd_acc"] <= r["clean_acc"]
        )
        c = r["complete"]
        assert c["verified"] + c["falsified"] + c["timeout"] + c["unknown"] == 30
        assert c["min_counterexample_margin"] is None or c["min_counterexample_margin"] > 0
        layers = r["neurons_per_sample"]["crown"]
        assert [lay["neurons"] for lay in layers] == [100, 100]
        assert all(abs(lay["unstable"] + lay["active"] + lay["inactive"] - 100) < 1e-9 for lay in layers)
        assert all(r["seconds_per_sample"][m] > 0 for m in ("ibp", "crown", "alpha-crown", "complete"))
    assert rows[0]["density"] == 1.0 and rows[3]["density"] < rows[1]["density"] < 1.0
    assert "round 2 reinit" in out and "complete (milp)" in out
    # interrupted after two models: the rerun keeps them and adds the rest, with the same numbers
    (d / "results.json").write_text(json.dumps({**json.loads((d / "results.json").read_text()), "rows": rows[:2]}))
    assert main(args) == 0
    assert [r["label"] for r in results(imp_run)[1]] == [r["label"] for r in rows]
    again = results(imp_run)[1]
    for a, b in zip(again, rows):
        assert (
            a["verified"] == b["verified"]
            and a["pgd_acc"] == b["pgd_acc"]
            and a["complete"]["verified"] == b["complete"]["verified"]
        )


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--eps", "-0.1"], "--eps must be >= 0"),
        (["--method", "lp"], "unknown --method 'lp'"),
        (["--samples", "0"], "--samples must be >= 1"),
        (["--method", "complete", "--solver", "z3"], "unknown --solver 'z3'"),
        (["--timeout", "0"], "--timeout must be > 0"),
    ],
)
def test_bad_verify_flags_are_one_line(imp_run, capsys, args, msg):
    one_line_exit_2(main(["verify", str(imp_run), *args]), capsys.readouterr().err, msg)
    assert not [d for d in imp_run.glob("verify-*") if not (d / "results.json").exists()]


def test_verify_of_a_folder_without_a_trained_model_is_one_line(tmp_path, capsys):
    one_line_exit_2(main(["verify", str(tmp_path)]), capsys.readouterr().err, "is not a finished ticketlab run")


def test_verify_of_a_model_with_an_unsupported_layer_names_it_before_any_work(tmp_path, capsys):
    run = tmp_path / "res"
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "resnet20",
                "--iterations",
                "2",
                "--rounds",
                "1",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    capsys.readouterr()
    one_line_exit_2(
        main(["verify", str(run), "--samples", "5"]), capsys.readouterr().err, "does not support layer ResNet"
    )
    assert not list(run.glob("verify-*"))


@pytest.mark.parametrize(
    "argv, labels",
    [
        (["dst", "--density", "0.3", "--ensemble", "2"], ["rigl run 0", "rigl run 1"]),  # not the softmax ensemble
        (["prune-init", "--method", "snip", "--density", "0.3"], ["snip"]),
    ],
)
def test_verify_of_dst_members_and_prune_init_runs(tmp_path, argv, labels):
    run = tmp_path / "r"
    assert (
        main([*argv, "--dataset", "digits", "--model", "mlp1d", "--iterations", "20", "--quiet", "--out", str(run)])
        == 0
    )
    assert main(["verify", str(run), "--eps", "0.02", "--samples", "10", "--pgd-steps", "3", "--quiet"]) == 0
    (d,) = run.glob("verify-*")
    rows = json.loads((d / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == labels
    assert all(r["verified"]["crown"] <= r["verified"]["alpha-crown"] <= r["pgd_acc"] for r in rows)


def _without_times(obj):
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


@pytest.mark.slow
def test_complete_verification_killed_mid_run_resumes_to_the_uninterrupted_verdicts(imp_run, tmp_path):
    """kill -9 once the first model's verdicts are written; the rerun keeps them, verifies the rest, and every
    number but the timings equals an uninterrupted run's (the MILP decides each sample well within its limit)."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    for d in (killed, whole):
        shutil.copytree(imp_run, d, ignore=shutil.ignore_patterns("verify-*"))
    args = ["--eps", "0.05", "--samples", "8", "--method", "crown,complete", "--timeout", "60", "--quiet"]
    assert main(["verify", str(whole), *args]) == 0
    p = subprocess.Popen([sys.executable, "-m", "ticketlab", "verify", str(killed), *args])
    rows = []
    while p.poll() is None and not rows:
        for f in killed.glob("verify-*/results.json"):
            try:
                rows = json.loads(f.read_text())["rows"]
            except (ValueError, OSError):
                pass
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    want = json.loads(next(whole.glob("verify-*/results.json")).read_text())["rows"]
    assert 1 <= len(rows) < len(want)  # killed part way
    assert main(["verify", str(killed), *args]) == 0
    got = json.loads(next(killed.glob("verify-*/results.json")).read_text())["rows"]
    assert _without_times(got) == _without_times(want)


def test_the_alpha_setting_is_stored_but_the_earlier_one_keeps_the_folders_hash():
    """``--alpha last-layer`` (the setting before the field existed) leaves it out of the config, so results
    folders made before resume bitwise; the new default is stored, so it gets folders of its own."""
    from ticketlab.errors import UserError
    from ticketlab.verify.evaluate import VerifyConfig

    old = VerifyConfig(alpha="last-layer").to_dict()
    assert "alpha" not in old and set(old) == set(VerifyConfig().to_dict()) - {"alpha", "alpha_revision"}
    assert VerifyConfig().to_dict()["alpha"] == "optimized"
    # the optimized setting's second revision bounds differently from the first: its folders get a new hash
    assert VerifyConfig().to_dict()["alpha_revision"] == 2 and "alpha_revision" not in old
    with pytest.raises(UserError, match="unknown --alpha 'best'; choose one of: optimized, last-layer"):
        VerifyConfig(alpha="best").validate()


def test_optimized_alpha_crown_is_never_looser_than_the_last_layer_setting():
    from ticketlab.verify.bounds import ALPHA, alpha_crown, input_box, margin_spec
    from ticketlab.verify.graph import to_ops

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 20), torch.nn.ReLU(), torch.nn.Linear(20, 20), torch.nn.ReLU(), torch.nn.Linear(20, 4)
    ).double()
    ops = to_ops(net, (6,))
    x = torch.rand(8, 6, dtype=torch.float64)
    lo, hi = input_box(x, 0.1, None)
    C = margin_spec(net(x).argmax(1), 4).double()
    a = alpha_crown(ops, lo, hi, C, **ALPHA["optimized"]).lower
    b = alpha_crown(ops, lo, hi, C, **ALPHA["last-layer"]).lower
    assert (a >= b - 1e-9).all() and (a > b + 1e-6).any()


def test_branch_and_bound_through_the_command_gives_the_milps_verdicts(imp_run, tmp_path):
    run = tmp_path / "imp"
    shutil.copytree(imp_run, run, ignore=shutil.ignore_patterns("verify-*"))
    args = ["verify", str(run), "--eps", "0.12", "--samples", "12", "--method", "complete", "--timeout", "30"]
    got = {}
    for solver in ("milp", "bab"):
        assert main([*args, "--solver", solver, "--quiet"]) == 0
        (d,) = [
            d for d in run.glob("verify-*") if json.loads((d / "config.json").read_text())["config"]["solver"] == solver
        ]
        got[solver] = json.loads((d / "results.json").read_text())["rows"]
    asked = 0
    for a, b in zip(got["milp"], got["bab"]):
        ca, cb = a["complete"], b["complete"]
        assert ca["timeout"] == cb["timeout"] == 0
        assert (ca["verified"], ca["falsified"]) == (cb["verified"], cb["falsified"]), a["label"]
        asked += sum(n for k, n in cb["by"].items() if k.endswith("by bab"))
    assert asked > 0
