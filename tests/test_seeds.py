"""Seed groups: the statistics, their display as mean ± std, and groups of real runs."""

import json
import math

import pytest
from helpers import one_line_exit_2

from ticketlab.cli import main
from ticketlab.errors import UserError
from ticketlab.runs import get_experiment
from ticketlab.runs.seeds import Stat, aggregate, display, parse_seeds, run_seeds


def test_aggregate_gives_mean_sample_std_min_max_n_and_the_values_of_each_numeric_leaf():
    agg = aggregate([{"acc": 1.0, "deep": {"n": 2}}, {"acc": 3.0, "deep": {"n": 2}}, {"acc": 5.0, "deep": {"n": 2}}])
    assert agg["acc"] == {"mean": 3.0, "std": 2.0, "min": 1.0, "max": 5.0, "n": 3, "values": [1.0, 3.0, 5.0]}
    assert agg["deep"]["n"] == {"mean": 2.0, "std": 0.0, "min": 2, "max": 2, "n": 3, "values": [2, 2, 2]}


def test_a_constant_has_exactly_zero_std_and_its_own_mean():
    agg = aggregate([0.1, 0.1, 0.1])  # fsum(0.1 * 3) / 3 would not give 0.1 back exactly
    assert agg["mean"] == 0.1 and agg["std"] == 0.0


def test_one_seed_has_zero_std():
    assert aggregate([0.7])["std"] == 0.0


def test_aggregate_goes_into_lists_and_keeps_what_does_not_vary():
    agg = aggregate(
        [
            {"rows": [{"k": 1, "acc": 0.5}], "name": "rigl", "seed": 0},
            {"rows": [{"k": 1, "acc": 0.7}], "name": "rigl", "seed": 1},
        ]
    )
    assert agg["name"] == "rigl"
    assert math.isclose(agg["rows"][0]["acc"]["mean"], 0.6)
    assert agg["seed"]["values"] == [0, 1]


def test_leaves_of_different_structure_or_text_are_listed_not_averaged():
    assert aggregate([[1, 2], [1, 2, 3]]) == {"values": [[1, 2], [1, 2, 3]]}
    assert aggregate(["a", "b"]) == {"values": ["a", "b"]}
    assert aggregate([True, False]) == {"values": [True, False]}  # booleans are not numbers here


def test_stat_formats_as_mean_plus_minus_std_with_the_spec_of_the_number():
    s = Stat(0.5, 0.25, 3)
    assert f"{s:.3f}" == "0.500 ± 0.250"
    assert f"{s:>16.2f}" == "     0.50 ± 0.25"
    assert f"{Stat(12.5, 1.5, 2):,d}" == "12.5 ± 1.5"  # an integer metric whose mean is fractional
    assert f"{Stat(2e9, 1e8, 2):.2e}" == "2.00e+09 ± 1.00e+08"
    assert f"{Stat(4466.666666666667, 472.58156262526086, 3)}" == "4467 ± 472.6"  # no spec: 4 significant digits


def test_scaling_a_stat_scales_its_std_and_shifting_does_not():
    s = Stat(0.5, 0.25, 3)
    assert (100 * s).std == 25.0 and float(100 * s) == 50.0
    assert (s / 2).std == 0.125
    assert (s + 1).std == 0.25 and float(s + 1) == 1.5
    assert not isinstance(s / Stat(2.0, 0.1, 3), Stat)  # a ratio of two means is only the ratio of the means


def test_display_shows_a_constant_as_its_value_and_a_varying_number_as_a_stat():
    d = display(aggregate([{"n": 3, "acc": 0.5, "tag": "x"}, {"n": 3, "acc": 0.7, "tag": "y"}]))
    assert d["n"] == 3 and isinstance(d["n"], int)
    assert isinstance(d["acc"], Stat) and math.isclose(d["acc"], 0.6) and d["acc"].values == [0.5, 0.7]
    assert d["tag"] == "x"


@pytest.mark.parametrize(
    "seed, seeds, expected",
    [
        (None, None, [0]),
        (None, 3, [0, 1, 2]),
        ([5], 2, [5, 6]),
        (7, None, [7]),
        ([2, 0], None, [2, 0]),
    ],
)
def test_seed_lists(seed, seeds, expected):
    assert parse_seeds(seed, seeds) == expected


@pytest.mark.parametrize(
    "seed, seeds, msg",
    [
        (None, 0, "--seeds must be >= 1"),
        ([1, 2], 3, "not both"),
        ([1, 1], None, "twice"),
    ],
)
def test_bad_seed_lists_are_refused(seed, seeds, msg):
    with pytest.raises(UserError, match=msg):
        parse_seeds(seed, seeds)


FAST = [
    "prune-init",
    "--dataset",
    "digits",
    "--model",
    "mlp1d",
    "--iterations",
    "20",
    "--method",
    "magnitude",
    "--density",
    "0.3",
    "--quiet",
]


def test_each_seed_of_a_group_is_the_ordinary_run_of_that_seed_bitwise(tmp_path):
    assert main([*FAST, "--seeds", "2", "--out", str(tmp_path / "g")]) == 0
    assert main([*FAST, "--seed", "1", "--out", str(tmp_path / "one")]) == 0
    read = lambda p: json.loads(p.read_text())  # noqa: E731
    assert read(tmp_path / "g" / "seed_1" / "summary.json") == read(tmp_path / "one" / "summary.json")
    g = read(tmp_path / "g" / "summary.json")
    assert g["seeds"] == [0, 1] and g["kind"] == "seeds" and g["experiment"] == "prune-init"
    accs = [read(tmp_path / "g" / f"seed_{s}" / "summary.json")["test_acc"] for s in (0, 1)]
    assert g["aggregate"]["test_acc"]["values"] == accs
    assert g["headline"]["test_acc"]["values"] == accs


def test_a_group_grows_with_more_seeds_and_keeps_the_ones_it_has(tmp_path, capsys):
    g = tmp_path / "g"
    assert main([*FAST, "--seeds", "2", "--out", str(g)]) == 0
    before = (g / "seed_0" / "summary.json").stat().st_mtime_ns
    assert main([*FAST, "--seed", "5", "--seeds", "1", "--out", str(g)]) == 0
    assert json.loads((g / "summary.json").read_text())["seeds"] == [0, 1, 5]
    assert (g / "seed_0" / "summary.json").stat().st_mtime_ns == before
    capsys.readouterr()
    assert main(["show", str(g)]) == 0
    out = capsys.readouterr().out
    assert "3 seed(s) 0, 1, 5" in out and " ± " in out


def test_a_group_folder_holding_a_different_config_is_refused_and_kept(tmp_path, capsys):
    g = tmp_path / "g"
    assert main([*FAST, "--seeds", "1", "--out", str(g)]) == 0
    before = (g / "summary.json").read_bytes()
    code = main([*FAST[:-1], "--density", "0.5", "--seeds", "1", "--quiet", "--out", str(g)])
    one_line_exit_2(code, capsys.readouterr().err, "different config")
    assert (g / "summary.json").read_bytes() == before


def test_a_group_is_checked_whole_before_its_first_training(tmp_path, monkeypatch, capsys):
    from ticketlab.runs import training

    monkeypatch.setattr(training, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    code = main(
        [
            "structured",
            "--dataset",
            "digits",
            "--model",
            "lenet300",
            "--method",
            "slimming",
            "--iterations",
            "5",
            "--seeds",
            "2",
            "--quiet",
            "--out",
            str(tmp_path / "g"),
        ]
    )
    one_line_exit_2(code, capsys.readouterr().err, "bn-scale needs BatchNorm")
    assert not (tmp_path / "g").exists()


def test_an_imp_group_plots_its_mean_with_a_std_band(tmp_path):
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "mlp1d",
                "--iterations",
                "10",
                "--rounds",
                "1",
                "--seeds",
                "2",
                "--quiet",
                "--out",
                str(tmp_path / "g"),
            ]
        )
        == 0
    )
    assert (tmp_path / "g" / "accuracy_vs_density.png").stat().st_size > 0


def test_run_seeds_from_python_returns_the_group(tmp_path):
    exp = get_experiment("prune-init")
    cfg = exp.config(dataset="digits", model="mlp1d", method="random", density=0.5)
    cfg.train.iterations = 10
    r = run_seeds(exp, cfg, [0, 1], tmp_path / "g", quiet=True)
    assert r["seeds"] == [0, 1] and r["dir"] == str(tmp_path / "g")
    assert r["aggregate"]["density"]["std"] == 0.0


def test_baselines_on_a_seed_group_run_for_every_seed_and_print_mean_and_std(tmp_path, capsys):
    g = tmp_path / "g"
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
                "--seeds",
                "2",
                "--quiet",
                "--out",
                str(g),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["baselines", str(g), "--only", "shuffle", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 seed(s) (seed_0, seed_1)") and " ± " in out
    assert all(list((g / f"seed_{s}").glob("baselines-*")) for s in (0, 1))


def test_group_runs_are_the_seeds_of_a_group_and_the_run_itself_otherwise(tmp_path):
    from ticketlab.runs.seeds import group_runs

    single, group = tmp_path / "one", tmp_path / "grp"
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "mlp1d",
                "--iterations",
                "5",
                "--rounds",
                "1",
                "--quiet",
                "--out",
                str(single),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "mlp1d",
                "--iterations",
                "5",
                "--rounds",
                "1",
                "--quiet",
                "--seeds",
                "2",
                "--out",
                str(group),
            ]
        )
        == 0
    )
    assert group_runs(single) == [single]  # its own summary.json is not a group's
    assert group_runs(group) == [group / "seed_0", group / "seed_1"]
