"""What the report reads out of run files, on hand-written summaries and folders (the figure functions
replaced by recorders, so each plot's data is checked, not its pixels): numbers and statistics, accuracy and
distance against density, heatmaps, FLOPs, calibration, training curves over seeds, masks, result rows."""

import json
import math
import statistics

import numpy as np
import pytest
import torch

from ticketlab.io import save_tensors
from ticketlab.report import collect
from ticketlab.report.collect import (
    _panel,
    _points,
    _row_metrics,
    density_series,
    distance_series,
    histories,
    text,
    value,
)
from ticketlab.report.figures import Series


def stat(*v):
    return {
        "mean": sum(v) / len(v),
        "std": statistics.stdev(v) if len(v) > 1 else 0.0,
        "min": min(v),
        "max": max(v),
        "n": len(v),
        "values": list(v),
    }


@pytest.fixture
def drawn(monkeypatch):
    """Calls to each figure function: {name: [args]}; each returns a marker string."""
    calls = {}
    for name in ("heatmap", "categories", "training_curves", "mask_image", "accuracy_vs_density"):

        def rec(*a, _n=name, **k):
            calls.setdefault(_n, []).append((a, k))
            return f"<{_n}>"

        monkeypatch.setattr(collect.figures, name, rec)
    return calls


def test_value_reads_numbers_and_statistics_and_nothing_else():
    assert value(0.5) == (0.5, None) and value(3) == (3.0, None)
    assert value(stat(1.0, 3.0)) == (2.0, math.sqrt(2))
    for bad in (float("nan"), float("inf"), True, "0.5", None, {"mean": 1}):
        assert value(bad) == (None, None)


def test_text_shows_four_significant_digits_and_the_seed_spread():
    assert text(0.123456) == "0.1235" and text("rigl") == "rigl" and text(None) == "None"
    assert text(stat(0.5, 0.7)) == f"0.6 ± {statistics.stdev([0.5, 0.7]):.2g} (n=2)" == "0.6 ± 0.14 (n=2)"


def test_points_take_density_and_accuracy_and_average_per_segment_lists_with_sample_std():
    xs, ys, es = _points([{"density": 1.0, "test_acc": 0.9}, {"density": stat(0.5), "test_acc": stat(0.8, 0.6)}])
    assert xs == [1.0, 0.5] and ys == [0.9, pytest.approx(0.7)] and es == [0.0, pytest.approx(math.sqrt(0.02))]
    _, ys, es = _points([{"density": 0.2, "test_acc": [0.5, 0.7, 0.9]}])
    assert ys == [pytest.approx(0.7)] and es == [pytest.approx(0.2)]  # n - 1: 0.2, not 0.163
    _, _, es = _points([{"density": 0.2, "test_acc": [0.5]}])
    assert es == [0.0]
    _, _, es = _points([{"density": 0.2, "test_acc": [0.5, 0.7]}])
    assert es == [pytest.approx(statistics.stdev([0.5, 0.7]))]  # two segments: n - 1 = 1
    assert _points([{"density": 0.2, "robust": 0.4}], "robust") == ([0.2], [0.4], [0.0])
    for bad in (
        [],
        [{"density": 1.0}],
        [{"test_acc": 0.5}],
        [1, 2],
        {"density": 1},
        None,
        [{"density": 1.0, "test_acc": [0.5, "x"]}],
    ):
        assert _points(bad) is None


IMP = {
    "rounds": [
        {"density": 1.0, "test_acc": 0.90, "learning_distance": 3.0, "controls": {"reinit": {"test_acc": 0.90}}},
        {
            "density": 0.5,
            "test_acc": 0.92,
            "learning_distance": 2.0,
            "controls": {"reinit": {"test_acc": 0.85}, "random-mask": {"test_acc": 0.80, "density": 0.49}},
        },
        {"density": 0.25, "test_acc": 0.91, "learning_distance": 1.0, "controls": {}},
    ],
    "config": {"rounds": 2},
}


def by_label(series):
    return {s.label: s for s in series}


def test_imp_rounds_give_the_ticket_and_each_control_dashed_at_its_own_density():
    s = by_label(density_series(IMP))
    assert list(s) == ["ticket", "random-mask", "reinit"]  # controls in name order
    assert s["ticket"].x == [1.0, 0.5, 0.25] and s["ticket"].y == [0.90, 0.92, 0.91] and not s["ticket"].dashed
    assert s["reinit"].x == [1.0, 0.5] and s["reinit"].y == [0.90, 0.85] and s["reinit"].dashed
    assert s["random-mask"].x == [0.49] and s["random-mask"].dashed
    assert [x.label for x in density_series(IMP, "run A")] == ["run A: ticket", "run A: random-mask", "run A: reinit"]


def test_rounds_without_test_acc_use_their_first_accuracy_column_but_never_early_stopping():
    rounds = [
        {"density": 1.0, "early_stop_test_acc": 0.9, "pgd_test_acc": 0.3},
        {"density": 0.5, "early_stop_test_acc": 0.8, "pgd_test_acc": 0.4},
    ]
    (s,) = density_series({"rounds": rounds})
    assert s.y == [0.3, 0.4]
    both = [
        {"density": 1.0, "pgd_test_acc": 0.3, "test_acc": 0.9},
        {"density": 0.5, "pgd_test_acc": 0.4, "test_acc": 0.8},
    ]
    assert density_series({"rounds": both})[0].y == [0.9, 0.8]  # test_acc wherever it stands


def test_a_single_round_and_no_rounds_are_read_without_error():
    (s,) = density_series({"rounds": [{"density": 1.0, "test_acc": 0.9}]})
    assert s.x == [1.0] and s.y == [0.9]
    assert density_series({"rounds": [], "density": 0.5, "test_acc": 0.7})[0].label == "run"
    assert density_series({"rounds": ["x"]}) == []


def test_other_lists_and_results_beside_the_rounds_become_their_own_lines_sorted_densest_first():
    summary = {
        "imp": [{"density": 0.3, "test_acc": 0.8}, {"density": 1.0, "test_acc": 0.7}],
        "oneshot": [{"density": 0.3}],  # no accuracy: no line
        "final": {"test_acc": 0.75},
        "density": 0.3,
        "config": {"test_acc": 1.0},
        "notes": {"test_acc": "n/a"},
    }
    s = by_label(density_series(summary))
    assert list(s) == ["imp", "final"]
    assert s["imp"].x == [1.0, 0.3] and s["imp"].y == [0.7, 0.8]
    assert s["final"].x == [0.3] and s["final"].y == [0.75]


def test_a_run_with_no_rows_is_its_own_point_with_its_spread():
    (s,) = density_series({"density": 0.1, "test_acc": stat(0.5, 0.7)})
    assert (s.label, s.x, s.y) == ("run", [0.1], [pytest.approx(0.6)]) and s.err == [pytest.approx(0.1414, 1e-3)]
    (s,) = density_series({"density": 0.1, "test_acc": 0.5}, "mine")
    assert s.label == "mine" and s.err == [0.0]
    assert density_series({"test_acc": 0.5}) == [] and density_series({}) == []


def test_distance_series_plots_learning_distance_of_every_list_that_has_it():
    s = by_label(distance_series(IMP | {"other": [{"density": 1.0, "learning_distance": 4.0}]}))
    assert list(s) == ["ticket", "other"] and s["ticket"].y == [3.0, 2.0, 1.0]


def test_layer_heatmap_rows_are_rounds_with_their_densities(drawn):
    rounds = [
        {"density": 1.0, "layer_densities": {"a": 1.0, "b": 1.0}},
        {"density": 0.512, "layer_densities": {"b": stat(0.5, 0.7), "a": 0.8, "c": 0.1}},
        {"layer_densities": {"a": 0.2}},
    ]
    assert collect.layer_heatmap({"rounds": rounds}, "T") == "<heatmap>"
    ((args, _),) = drawn["heatmap"]
    assert args[0] == ["round 0 (100%)", "round 1 (51.2%)", "round 2 (0%)"] and args[1] == ["a", "b"]
    assert args[2] == [[1.0, 1.0], [0.8, pytest.approx(0.6)], [0.2, 0.0]] and args[3:] == ("T", "density")
    for bad in ({}, {"rounds": []}, {"rounds": [{"density": 1.0}]}, {"rounds": "x"}):
        assert collect.layer_heatmap(bad, "T") is None


def test_flops_figure_bars_training_flops_per_round_and_forward_flops_when_every_round_has_them(drawn):
    rounds = [
        {"density": 1.0, "flops": {"training": 100, "forward": 10}},
        {"flops": {"training": stat(40, 60), "forward": 5}},
    ]
    assert collect.flops_figure({"rounds": rounds}, "T") == "<categories><categories>"
    (train_args, _), (fwd_args, _) = drawn["categories"]
    sd = statistics.stdev([40, 60])
    assert train_args == (
        ["100%", "0%"],
        [Series("training (whole round)", [], [100.0, 50.0], [0, sd])],
        "training FLOPs",
        "T: training FLOPs per round, by density",
    )
    assert fwd_args == (
        ["100%", "0%"],
        [Series("forward", [], [10.0, 5.0])],
        "FLOPs per example",
        "T: inference FLOPs per example",
    )
    drawn.clear()
    rounds[1]["flops"].pop("forward")
    assert collect.flops_figure({"rounds": rounds}, "T") == "<categories>"
    assert collect.flops_figure({"rounds": [{"density": 1.0, "flops": {"forward": 1}}]}, "T") is None
    assert collect.flops_figure({"rounds": []}, "T") is None


def test_calibration_shows_each_member_and_the_ensemble_of_several(drawn):
    s = {"members": [{"ece": 0.1}, {"ece": stat(0.2, 0.4)}], "ensemble": {"ece": 0.05}}
    assert collect.calibration_figure(s, "T") == "<categories>"
    ((args, _),) = drawn["categories"]
    assert args == (
        ["member 0", "member 1", "ensemble"],
        [Series("ECE", [], [0.1, pytest.approx(0.3), 0.05], [0, pytest.approx(statistics.stdev([0.2, 0.4])), 0])],
        "expected calibration error",
        "T: calibration (15 bins)",
    )
    drawn.clear()
    collect.calibration_figure({"members": [{"ece": 0.1}], "ensemble": {"ece": 0.1}}, "T")
    assert drawn["categories"][0][0][0] == ["member 0"]  # an ensemble of one is its member
    assert collect.calibration_figure({"members": [{"nll": 1}]}, "T") is None
    assert collect.calibration_figure({"members": []}, "T") is None


def write_history(path, accs, iters=None):
    path.mkdir(parents=True, exist_ok=True)
    iters = iters or list(range(0, 10 * len(accs), 10))
    (path / "metrics.json").write_text(
        json.dumps({"history": [{"iter": i, "test_acc": a} for i, a in zip(iters, accs)]})
    )


def test_histories_are_found_in_the_run_but_not_in_runs_nested_inside_it(tmp_path):
    run = tmp_path / "r"
    write_history(run / "round_00", [0.1, 0.2])
    write_history(run / "round_01" / "reinit", [0.3])
    write_history(run, [0.5])
    (run / "empty").mkdir()
    (run / "empty" / "metrics.json").write_text(json.dumps({"history": []}))
    (run / "junk").mkdir()
    (run / "junk" / "metrics.json").write_text("not json")
    write_history(run / "robustness-abc", [0.9])
    (run / "robustness-abc" / "config.json").write_text("{}")  # another run's folder
    assert list(histories(run)) == [".", "round_00", "round_01/reinit"]
    assert histories(run)["round_00"] == [{"iter": 0, "test_acc": 0.1}, {"iter": 10, "test_acc": 0.2}]


@pytest.mark.parametrize(
    "rel, panel",
    [
        (".", "training"),
        ("round_03", "ticket, per round"),
        ("train_1", "training runs"),
        ("round_02/reinit", "reinit"),
        ("seed_12", "seed"),
        ("cell_3x", "cell_3x"),
        ("42", "42"),
        ("round_01/seed_2/train_0", "training runs"),  # the last folder of a deeper path
    ],
)
def test_each_training_lands_in_the_panel_of_its_folder_name(rel, panel):
    assert _panel(rel) == panel


def test_training_curves_over_seeds_are_the_mean_with_the_sample_std(tmp_path, drawn):
    a, b = tmp_path / "s0", tmp_path / "s1"
    write_history(a / "round_00", [0.1, 0.5])
    write_history(b / "round_00", [0.3, 0.9])
    write_history(a / "round_01", [0.2])  # only in one seed: not drawn
    assert collect.curves_figure([a, b], "T") == "<training_curves>"
    (panels, title), _ = drawn["training_curves"][0]
    (line,) = panels["ticket, per round"]
    assert line.label == "round_00" and line.x == [0, 10] and line.y == pytest.approx([0.2, 0.7])
    assert line.err == pytest.approx([statistics.stdev([0.1, 0.3]), statistics.stdev([0.5, 0.9])])
    drawn.clear()
    collect.curves_figure([a], "T")
    assert drawn["training_curves"][0][0][0]["ticket, per round"][0].err is None


def test_seeds_evaluated_at_other_iterations_are_drawn_from_the_first_seed(tmp_path, drawn):
    a, b = tmp_path / "s0", tmp_path / "s1"
    write_history(a / "t", [0.1, 0.5], [0, 10])
    write_history(b / "t", [0.3, 0.9], [0, 20])
    collect.curves_figure([a, b], "T")
    line = drawn["training_curves"][0][0][0]["t"][0]
    assert line.y == [0.1, 0.5] and line.err is None


def test_a_panel_shows_at_most_24_curves_the_last_always_and_at_most_4_panels(tmp_path, drawn):
    for i in range(30):
        write_history(tmp_path / "r" / f"round_{i:02d}", [i / 100])
    for name in ("a_1", "b_1", "c_1", "d_1"):
        write_history(tmp_path / "r" / name, [0.5])
    collect.curves_figure([tmp_path / "r"], "T")
    panels = drawn["training_curves"][0][0][0]
    assert list(panels) == ["a", "b", "c", "d"]  # folders in name order: the rounds' panel is the fifth, left out
    drawn.clear()
    for name in ("a_1", "b_1", "c_1", "d_1"):
        (tmp_path / "r" / name / "metrics.json").unlink()
    collect.curves_figure([tmp_path / "r"], "T")
    lines = drawn["training_curves"][0][0][0]["ticket, per round (24 of 30 shown)"]  # the title says so
    step = 30 / 24
    assert [s.label for s in lines] == [f"round_{int(i * step):02d}" for i in range(23)] + ["round_29"]
    (tmp_path / "nothing-here").mkdir()
    assert collect.curves_figure([tmp_path / "nothing-here"], "T") is None


def test_imp_curves_are_labelled_by_density_and_controls_keep_their_round(tmp_path, drawn):
    for i in range(3):
        write_history(tmp_path / "r" / f"round_{i:02d}", [0.5])
        write_history(tmp_path / "r" / f"round_{i:02d}" / "reinit", [0.4])
    summary = {"rounds": [{"round": 0, "density": 1.0}, {"round": 1, "density": 0.8}, {"round": 2, "density": 0.64}]}
    collect.curves_figure([tmp_path / "r"], "T", summary)
    panels = drawn["training_curves"][0][0][0]
    assert [s.label for s in panels["ticket, per round"]] == ["100% (round 0)", "80% (round 1)", "64% (round 2)"]
    assert [s.label for s in panels["reinit"]] == ["100% (round 0)", "80% (round 1)", "64% (round 2)"]
    drawn.clear()
    collect.curves_figure([tmp_path / "r"], "T")  # no summary (a run in progress): the folder names
    assert [s.label for s in drawn["training_curves"][0][0][0]["ticket, per round"]] == [
        "round_00",
        "round_01",
        "round_02",
    ]


def test_the_mask_figure_shows_the_smallest_2d_layer_of_the_last_round(tmp_path, drawn):
    run = tmp_path / "imp"
    small = torch.tensor([[True, False, True], [False, True, True]])
    for r in ("round_00", "round_01", "round_02"):
        save_tensors(
            run / r / "mask.safetensors",
            {
                "big": torch.ones(8, 8, dtype=torch.bool),
                "small": small if r == "round_02" else torch.ones(2, 3).bool(),
                "vector": torch.ones(3, dtype=torch.bool),
                "one_row": torch.ones(1, 4, dtype=torch.bool),
            },
        )
    assert collect.mask_figure(run, "imp", "T") == "<mask_image>"
    (name, mask, title), _ = drawn["mask_image"][0]
    assert name == "small" and np.array_equal(mask, small.float().numpy()) and title == "T"
    assert collect.mask_figure(run, "dst", "T") is None  # only IMP has rounds; nothing else here
    save_tensors(run / "train_0" / "mask.safetensors", {"w": torch.ones(3, 3, dtype=torch.bool)})
    drawn.clear()
    collect.mask_figure(run, "dst", "T")
    assert drawn["mask_image"][0][0][0] == "w"
    (run / "mask.safetensors").write_bytes(b"corrupt")
    assert collect.mask_figure(run, "dst", "T") is None  # the run's own mask first; unreadable: no figure


def test_a_mask_of_only_huge_or_one_dimensional_layers_gets_no_figure(tmp_path, monkeypatch, drawn):
    monkeypatch.setattr(collect, "MAX_MASK_ENTRIES", 10)
    save_tensors(
        tmp_path / "mask.safetensors", {"w": torch.ones(4, 4, dtype=torch.bool), "b": torch.ones(5, dtype=torch.bool)}
    )
    assert collect.mask_figure(tmp_path, "dst", "T") is None


def test_row_metrics_pick_every_accuracy_like_number():
    r = {
        "density": 0.5,
        "test_acc": 0.9,
        "clean_acc": 0.8,
        "pgd_acc": float("nan"),
        "loss": 0.1,
        "robust_acc": {"0.1": 0.5, "0.2": None},
        "verified": {"crown": 0.3},
        "corruption_acc": {"fog": 0.4},
        "method": {"test_acc": 0.7},
        "baselines": {"shuffle": {"test_acc": 0.6}, "bad": {"test_acc": "x"}},
    }
    assert _row_metrics(r) == {
        "test_acc": 0.9,
        "clean_acc": 0.8,
        "robust_acc 0.1": 0.5,
        "verified crown": 0.3,
        "corruption_acc fog": 0.4,
        "method": 0.7,
        "baselines shuffle": 0.6,
    }
    assert "corruption_acc fog" not in _row_metrics(r | {"mean_corruption_acc": 0.4})


def test_result_rows_become_lines_per_group_and_metric_with_controls_dashed(drawn):
    rows = [
        {"group": "ticket", "density": 0.5, "clean_acc": 0.9},
        {"group": "ticket", "density": 1.0, "clean_acc": 0.8},
        {"group": "reinit", "density": 0.5, "clean_acc": 0.7},
        {"density": 0.2, "clean_acc": 0.1},
    ]
    assert collect.rows_figure({"rows": rows}, "T") == "<accuracy_vs_density>"
    (series, title), kw = drawn["accuracy_vs_density"][0]
    s = by_label(series)
    assert list(s) == ["ticket: clean_acc", "reinit: clean_acc", ": clean_acc"] and kw == {"ylabel": "accuracy"}
    assert title == "T" and s[": clean_acc"].dashed  # a row without a group is the group ""
    assert s["ticket: clean_acc"].x == [1.0, 0.5] and s["ticket: clean_acc"].y == [0.8, 0.9]  # densest first
    assert not s["ticket: clean_acc"].dashed and s["reinit: clean_acc"].dashed
    drawn.clear()
    collect.rows_figure({"rows": [{"density": 0.5, "a_acc": 0.1}]}, "T")
    assert drawn["accuracy_vs_density"][0][0][0][0].label == "a_acc"  # one group: no prefix
    many = [{"density": 0.5} | {f"m{i}_acc": 0.1 for i in range(25)}]
    drawn.clear()
    collect.rows_figure({"rows": many}, "T")
    assert len(drawn["accuracy_vs_density"][0][0][0]) == 20
    for bad in (
        {},
        {"rows": []},
        {"rows": [{"clean_acc": 0.1}]},
        {"rows": [{"density": 0.5, "loss": 1}]},
        {"rows": [{"density": 0.5, "a_acc": 0.1}, 5]},
        {"rows": "x"},
        {"rows": 5},  # a damaged file's number, not a list
    ):
        assert collect.rows_figure(bad, "T") is None
    drawn.clear()
    two = [{"group": "ticket", "density": 0.5, "a_acc": 0.1}, {"group": "reinit", "density": 0.5, "a_acc": 0.2}]
    collect.rows_figure({"rows": two}, "T")
    assert [x.label for x in drawn["accuracy_vs_density"][0][0][0]] == ["ticket: a_acc", "reinit: a_acc"]


def test_a_round_the_summary_does_not_list_keeps_its_folder_name():
    from ticketlab.report.collect import curve_label

    summary = {"rounds": [{"round": 0, "density": 1.0}, "not a row"]}
    assert curve_label("round_07", summary) == "round_07" and curve_label("round_00", summary) == "100% (round 0)"


def test_no_runs_or_exactly_24_trainings_in_a_panel(tmp_path, drawn):
    assert collect.curves_figure([], "T") is None
    for i in range(24):
        write_history(tmp_path / "r" / f"round_{i:02d}", [i / 100])
    collect.curves_figure([tmp_path / "r"], "Title")
    (panels, title), _ = drawn["training_curves"][0]
    assert title == "Title" and list(panels) == ["ticket, per round"] and len(panels["ticket, per round"]) == 24


def test_a_mask_layer_of_rows_of_two_or_of_exactly_the_size_limit_is_drawn(tmp_path, monkeypatch, drawn):
    save_tensors(tmp_path / "a" / "mask.safetensors", {"w": torch.ones(3, 2, dtype=torch.bool)})
    assert collect.mask_figure(tmp_path / "a", "dst", "T") == "<mask_image>"
    monkeypatch.setattr(collect, "MAX_MASK_ENTRIES", 16)
    save_tensors(tmp_path / "b" / "mask.safetensors", {"w": torch.ones(4, 4, dtype=torch.bool)})
    assert collect.mask_figure(tmp_path / "b", "dst", "T") == "<mask_image>"
