"""Linear mode connectivity / instability (Frankle et al. 2020): the barrier of identical copies is 0, the
interpolation is linear, and `ticketlab instability` runs, caches and refuses bad input in one line."""

import json

import pytest
import torch
from helpers import one_line_exit_2
from torch import nn

from ticketlab.cli import main
from ticketlab.lottery.instability import barrier, error_curve, interpolate


def test_interpolation_is_linear_and_keeps_integer_counters():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, 0.0]), "n": torch.tensor(9)}
    mid = interpolate(a, b, 0.25)
    assert torch.equal(mid["w"], torch.tensor([1.0, 1.5])) and int(mid["n"]) == 3


def test_the_barrier_of_two_identical_copies_is_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(50, 5), torch.randint(0, 3, (50,))
    errs = error_curve(model, state, state, x, y, points=7)
    assert len(errs) == 7 and len(set(errs)) == 1 and barrier(errs) == 0.0
    assert barrier([0.1, 0.5, 0.2]) == pytest.approx(0.35)


def test_instability_runs_for_rewinds_and_rounds_and_reads_back(tmp_path, capsys):
    run = tmp_path / "imp"
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
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    args = ["instability", str(run), "--rewind", "0,10", "--use-rounds", "0,1", "--points", "5", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    res = json.loads(next(run.glob("instability-*")).joinpath("results.json").read_text())
    assert [(r["rewind"], r["round"]) for r in res["rows"]] == [(0, 0), (0, 1), (10, 0), (10, 1)]
    assert all(len(r["errors"]) == 5 and r["barrier"] >= 0 for r in res["rows"])
    assert res["rows"][1]["density"] < 1 and "round 1:" in out
    assert next(run.glob("instability-*")).joinpath("instability.png").exists()
    assert main(args) == 0  # cached: the same result again
    again = json.loads(next(run.glob("instability-*")).joinpath("results.json").read_text())
    assert again["rows"] == res["rows"]


@pytest.mark.parametrize(
    "extra, msg",
    [
        (["--rewind", "100000"], "is not before the end of training"),
        (["--rewind", "0", "--use-rounds", "5"], "has no finished round 5"),
        (["--rewind", "0", "--points", "2"], "--points must be >= 3"),
    ],
)
def test_bad_instability_input_is_one_line(tmp_path, capsys, extra, msg):
    run = tmp_path / "imp"
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "mlp1d",
                "--iterations",
                "20",
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
    one_line_exit_2(main(["instability", str(run), *extra, "--quiet"]), capsys.readouterr().err, msg)
    one_line_exit_2(
        main(["instability", str(tmp_path), "--rewind", "0", "--quiet"]),
        capsys.readouterr().err,
        "is not a finished IMP run",
    )
