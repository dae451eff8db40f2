"""Seed groups, pinned on an experiment that trains nothing (its summary is a known function of its config
and seed): the group's layout and summary, the order and progress of its seeds, what an interrupted or
grown group holds, its corrupt-file refusals, its plot and table."""

import json
import math
import statistics
from dataclasses import asdict, dataclass

import pytest

from ticketlab.errors import UserError
from ticketlab.io import write_json
from ticketlab.runs.experiment import Experiment
from ticketlab.runs.rundir import config_hash, open_run_dir
from ticketlab.runs.seeds import (
    Stat,
    aggregate,
    finished_seeds,
    format_group,
    group_config,
    group_runs,
    mean_std,
    open_group,
    run_seeds,
    write_group_summary,
)


@dataclass
class Cfg:
    x: float = 1.0
    seed: int = 0

    def to_dict(self):
        return asdict(self)

    def validate(self):
        if self.x < 0:
            raise UserError(f"x must be >= 0, got {self.x}")


def make_exp(calls=None, fail_at=None, plot=None, fmt=None):
    def run(cfg, out, **runtime):
        if calls is not None:
            calls.append((cfg.seed, out.name, runtime))
        if cfg.seed == fail_at:
            raise RuntimeError(f"seed {cfg.seed} failed")
        out = open_run_dir(out, "fake", cfg.to_dict())
        summary = {"acc": cfg.x * (cfg.seed + 1), "tag": "fake", "rows": [{"d": 1.0, "v": cfg.seed}]}
        write_json(out / "summary.json", summary)
        return summary

    return Experiment(
        name="fake",
        config=Cfg,
        run=run,
        format=fmt or (lambda s: f"acc {s['acc']}"),
        headline=lambda s: {"acc": s["acc"]},
        plot_group=plot,
    )


def read(p):
    return json.loads(p.read_text())


def test_a_group_runs_its_seeds_in_order_each_in_its_own_folder_and_aggregates_them(tmp_path, capsys):
    calls = []
    r = run_seeds(make_exp(calls), Cfg(x=2.0), [3, 0, 1], tmp_path / "g", device="cpu")
    assert [c[:2] for c in calls] == [(3, "seed_3"), (0, "seed_0"), (1, "seed_1")]
    assert all(c[2] == {"device": "cpu"} for c in calls)  # the runtime settings reach every seed
    g = read(tmp_path / "g" / "summary.json")
    assert g["seeds"] == [0, 1, 3] and g["runs"] == {"0": "seed_0", "1": "seed_1", "3": "seed_3"}
    assert g["kind"] == "seeds" and g["experiment"] == "fake" and g["config"] == {"x": 2.0}
    accs = [2.0, 4.0, 8.0]
    want = {"mean": 14 / 3, "std": statistics.stdev(accs), "min": 2.0, "max": 8.0, "n": 3, "values": accs}
    assert g["headline"]["acc"] == want and g["aggregate"]["acc"] == want
    assert g["aggregate"]["tag"] == "fake" and g["aggregate"]["rows"][0]["d"]["std"] == 0.0
    assert r["dir"] == str(tmp_path / "g") and r["seeds"] == [0, 1, 3]
    assert read(tmp_path / "g" / "config.json") == {"kind": "seeds", "config": group_config(make_exp(), Cfg(x=2.0))}
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"seed 3 (1/3): {tmp_path / 'g' / 'seed_3'}",
        f"seed 0 (2/3): {tmp_path / 'g' / 'seed_0'}",
        f"seed 1 (3/3): {tmp_path / 'g' / 'seed_1'}",
    ]


def test_a_quiet_group_prints_nothing(tmp_path, capsys):
    run_seeds(make_exp(), Cfg(), [0, 1], tmp_path / "g", quiet=True)
    assert capsys.readouterr().err == ""


def test_every_seeds_config_is_checked_before_anything_is_written(tmp_path):
    with pytest.raises(UserError, match="x must be >= 0"):
        run_seeds(make_exp(), Cfg(x=-1.0), [0, 1], tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_an_interrupted_group_holds_the_seeds_that_finished_and_grows_on_the_next_call(tmp_path):
    with pytest.raises(RuntimeError, match="seed 2 failed"):
        run_seeds(make_exp(fail_at=2), Cfg(), [0, 1, 2], tmp_path / "g", quiet=True)
    assert read(tmp_path / "g" / "summary.json")["seeds"] == [0, 1]  # written after each seed
    calls = []
    r = run_seeds(make_exp(calls), Cfg(), [2, 4], tmp_path / "g", quiet=True)
    assert [c[0] for c in calls] == [2, 4] and r["seeds"] == [0, 1, 2, 4]
    assert r["aggregate"]["acc"]["values"] == [1.0, 2.0, 3.0, 5.0]


def test_a_group_with_a_different_config_is_refused(tmp_path):
    run_seeds(make_exp(), Cfg(x=1.0), [0], tmp_path / "g", quiet=True)
    with pytest.raises(UserError, match=r"differs in: config\.x"):
        run_seeds(make_exp(), Cfg(x=2.0), [0], tmp_path / "g", quiet=True)


def test_the_default_group_folder_is_named_by_the_config_without_its_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g = open_group(make_exp(), Cfg(x=3.0, seed=7), None)
    assert g == tmp_path.joinpath(
        "runs", f"fake-seeds-{config_hash({'experiment': 'fake', 'config': {'x': 3.0}})}"
    ).relative_to(tmp_path)
    assert open_group(make_exp(), Cfg(x=3.0, seed=1), None) == g  # the seed is no part of a group's config
    assert group_config(make_exp(), Cfg(x=3.0, seed=7)) == {"experiment": "fake", "config": {"x": 3.0}}


def test_the_group_plot_gets_the_displayed_means_and_the_folder(tmp_path):
    seen = []
    run_seeds(
        make_exp(plot=lambda summary, folder: seen.append((summary, folder))), Cfg(), [0, 1], tmp_path / "g", quiet=True
    )
    ((summary, folder),) = seen
    assert folder == tmp_path / "g" and isinstance(summary["acc"], Stat) and math.isclose(summary["acc"], 1.5)
    assert summary["tag"] == "fake" and summary["rows"][0]["d"] == 1.0


@pytest.mark.parametrize("error", [KeyError, TypeError, ValueError, IndexError])
def test_a_group_whose_seeds_cannot_share_a_plot_still_returns(tmp_path, error):
    def plot(summary, folder):
        raise error("no common plot")

    assert run_seeds(make_exp(plot=plot), Cfg(), [0, 1], tmp_path / "g", quiet=True)["seeds"] == [0, 1]


def test_any_other_plot_error_is_not_hidden(tmp_path):
    def plot(summary, folder):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_seeds(make_exp(plot=plot), Cfg(), [0], tmp_path / "g", quiet=True)


def test_seeds_in_lockstep_run_together_and_give_the_same_group(tmp_path, capsys):
    calls = []
    r = run_seeds(make_exp(calls), Cfg(x=2.0), [0, 1], tmp_path / "v", replicates="vectorized")
    assert sorted(c[0] for c in calls) == [0, 1] and r["seeds"] == [0, 1]
    assert capsys.readouterr().err.splitlines() == [f"seeds 0, 1 together (vectorized replicates) in {tmp_path / 'v'}"]
    s = run_seeds(make_exp(), Cfg(x=2.0), [0, 1], tmp_path / "s", quiet=True)
    assert r["aggregate"] == s["aggregate"] and r["headline"] == s["headline"]
    one = run_seeds(make_exp(calls), Cfg(x=2.0), [5], tmp_path / "one", replicates="vectorized")
    assert one["seeds"] == [5] and "seed 5 (1/1)" in capsys.readouterr().err  # one seed: nothing to pack


def test_a_summary_listing_a_seed_without_its_run_is_corrupt(tmp_path):
    run_seeds(make_exp(), Cfg(), [0], tmp_path / "g", quiet=True)
    assert finished_seeds(tmp_path / "g") == [0]
    for bad in ({"seeds": [0, 1]}, {"seeds": "0"}, [0], {"seeds": [0.0]}, {}):
        (tmp_path / "g" / "summary.json").write_text(json.dumps(bad))
        with pytest.raises(UserError, match=r"summary.json is corrupt; delete it and repeat the command"):
            finished_seeds(tmp_path / "g")
    (tmp_path / "g" / "summary.json").unlink()
    assert finished_seeds(tmp_path / "g") == []


def test_group_runs_lists_finished_seeds_or_the_folder_itself(tmp_path):
    run_seeds(make_exp(), Cfg(), [2, 0], tmp_path / "g", quiet=True)
    assert group_runs(tmp_path / "g") == [tmp_path / "g" / "seed_0", tmp_path / "g" / "seed_2"]
    (tmp_path / "g" / "summary.json").unlink()  # no seed finished yet
    assert group_runs(tmp_path / "g") == [tmp_path / "g"]
    assert group_runs(tmp_path / "g" / "seed_0") == [tmp_path / "g" / "seed_0"]
    assert group_runs(tmp_path / "nothing") == [tmp_path / "nothing"]


def test_the_group_summary_covers_exactly_the_given_seeds_in_order(tmp_path):
    run_seeds(make_exp(), Cfg(), [0, 1, 2], tmp_path / "g", quiet=True)
    s = write_group_summary(make_exp(), tmp_path / "g", [2, 0])
    assert s["seeds"] == [0, 2] and s["headline"]["acc"]["values"] == [1.0, 3.0]
    assert read(tmp_path / "g" / "summary.json") == s
    empty = write_group_summary(make_exp(), tmp_path / "g", [])
    assert empty["headline"] == {} and empty["aggregate"] == {}


def test_the_group_table_is_the_experiments_table_on_the_means_then_the_headline_statistics(tmp_path):
    r = run_seeds(make_exp(fmt=lambda s: f"acc {s['acc']:.2f}"), Cfg(), [0, 1], tmp_path / "g", quiet=True)
    lines = format_group(make_exp(fmt=lambda s: f"acc {s['acc']:.2f}"), r).splitlines()
    assert lines[0] == "fake: 2 seed(s) 0, 1; mean ± std (sample std over seeds)"
    assert lines[1] == f"acc 1.50 ± {statistics.stdev([1.0, 2.0]):.2f}"
    assert lines[2] == ""
    assert lines[3].split() == ["metric", "mean", "std", "min", "max", "n"]
    assert lines[4].split() == ["acc", "1.5", "0.707", "1", "2", "2"]
    assert lines[4] == f"{'acc':<24} {1.5:>11.5g} {0.7071:>10.3g} {1.0:>11.5g} {2.0:>11.5g} {2:>3}"


def test_a_group_table_whose_formatter_fails_keeps_the_headline():
    def broken(s):
        raise KeyError("rows")

    r = {"seeds": [0], "aggregate": {"acc": 1.0}, "headline": {"acc": aggregate([1.0]), "tag": "x"}}
    lines = format_group(make_exp(fmt=broken), r).splitlines()
    assert lines[0].startswith("fake: 1 seed(s) 0;") and lines[1] == "" and lines[3].split()[0] == "acc"
    assert len(lines) == 4  # a headline entry that is not a statistic gets no row
    assert (
        format_group(make_exp(), {"seeds": [0], "aggregate": {"acc": 1.0}, "headline": {}})
        == "fake: 1 seed(s) 0; mean ± std (sample std over seeds)\nacc 1.0"
    )


def test_mean_std_is_the_value_alone_or_the_mean_and_sample_std():
    assert mean_std([0.5]) == "0.5000" and mean_std([float("inf")]) == "inf"
    assert mean_std([1.0, 2.0, 6.0], ".2f") == f"3.00 ± {statistics.stdev([1.0, 2.0, 6.0]):.2f}" == "3.00 ± 2.65"


def test_stat_arithmetic_keeps_the_spread_only_where_it_means_something():
    s = Stat(2.0, 0.5, 4, [1.5, 2.5])
    assert (s * 3).std == 1.5 and (3 * s).std == 1.5 and float(3 * s) == 6.0 and (s * -2).std == 1.0
    assert (s / -4).std == 0.125 and float(s / -4) == -0.5 and (s / -4).n == 4
    assert (1 + s).std == 0.5 and float(1 + s) == 3.0 and float(s - 0.5) == 1.5 and (s - 0.5).std == 0.5
    assert float(-s) == -2.0 and (-s).std == 0.5 and (-s).n == 4 and (s * 3).n == 4 and (s + 1).n == 4
    other = Stat(4.0, 0.1, 4)
    for r in (s + other, s - other, s / other):
        assert type(r) is float
    assert s + other == 6.0 and s - other == -2.0 and s / other == 0.5
    assert s.__mul__("x") is NotImplemented


def test_stat_formats_align_and_fall_back_for_specs_it_does_not_parse():
    s = Stat(0.5, 0.25, 3)
    assert f"{s:<14.2f}|" == "0.50 ± 0.25   |" and f"{s:^13.1f}|" == "  0.5 ± 0.2  |"
    assert f"{s:.1%}" == "50.0% ± 25.0%"
    assert format(s, "=+8.2f") == format(0.5, "=+8.2f")  # not "mean ± std": a plain float spec
    assert str(s) == "0.5 ± 0.25" and repr(s) == "0.5 ± 0.25"
    assert f"{Stat(3.0, 1.0, 2):d}" == "3.0 ± 1.0"


def test_stat_formats_every_type_letter_and_keeps_the_specs_case_and_default_precision():
    s = Stat(0.5, 0.1, 2)
    assert f"{s:.2E}" == "5.00E-01 ± 1.00E-01" and f"{s:.3G}" == "0.5 ± 0.1"
    assert f"{s:f}" == "0.500000 ± 0.100000"  # no precision given: the type's own
    assert str(Stat(1.23e-5, 2e-6, 3)) == "1.23e-05 ± 2e-06"  # the default .4g, lower-case exponent
    nan = float("nan")
    assert f"{Stat(nan, nan, 2):d}" == "nan ± nan"  # an integer metric's mean shown with one decimal, as f
    assert (Stat(2.0, 0.5, 4) - 1).n == 4


def test_seeds_in_lockstep_print_nothing_when_quiet(tmp_path, capsys):
    """Real trainings packed into one vectorised loop: quiet reaches the pack's progress bar too."""
    from ticketlab.cli import main

    fast = ["--dataset", "digits", "--model", "mlp1d", "--iterations", "10", "--batch-size", "32"]
    argv = ["dst", "--method", "set", "--density", "0.5", *fast, "--seeds", "2", "--replicates", "vectorized"]
    assert main([*argv, "--quiet", "--out", str(tmp_path / "q")]) == 0
    assert capsys.readouterr().err == ""
    assert main([*argv, "--out", str(tmp_path / "loud")]) == 0
    assert "trainings (x2)" in capsys.readouterr().err  # the pack's own progress bar, when not quiet


def test_a_group_whose_aggregate_is_empty_is_not_plotted(tmp_path):
    seen = []

    def run(cfg, out, **runtime):
        out = open_run_dir(out, "fake", cfg.to_dict())
        write_json(out / "summary.json", {})
        return {}

    exp = Experiment(
        name="fake",
        config=Cfg,
        run=run,
        format=lambda s: "",
        headline=lambda s: {},
        plot_group=lambda summary, folder: seen.append(summary),
    )
    r = run_seeds(exp, Cfg(), [0, 1], tmp_path / "g", quiet=True)
    assert r["aggregate"] == {} and seen == []


def test_seeds_and_a_seed_list_together_are_refused_with_the_whole_message():
    from ticketlab.runs.seeds import parse_seeds

    with pytest.raises(UserError) as e:
        parse_seeds([1, 2], 3)
    assert str(e.value) == "give either --seeds N or a list --seed A,B,C, not both"
