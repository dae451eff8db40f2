"""The run store on run folders written by hand (config.json, summary.json, sweep.json): each state, kind and
key setting an entry can have, what a folder of runs lists, how --where matches, and the table's layout."""

import json

import pytest

from ticketlab.errors import UserError
from ticketlab.runs.store import describe, format_runs, list_runs, matches, metric_value


def put(path, name, obj):
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(json.dumps(obj))


def run(path, kind, config, summary=None):
    put(path, "config.json", {"kind": kind, "config": config})
    if summary is not None:
        put(path, "summary.json", summary)
    return path


DST = {
    "model": "mlp1d",
    "dataset": "digits",
    "method": "rigl",
    "density": 0.1,
    "seed": 0,
    "train": {"lr": 0.1, "iterations": 50},
}


def test_a_finished_run_is_done_with_its_headline_and_key_settings(tmp_path):
    r = run(tmp_path / "r", "prune-init", DST, {"test_acc": 0.9, "density": 0.1, "early_stop_test_acc": 0.8})
    e = describe(r, tmp_path)
    assert e["path"] == "r" and e["kind"] == "prune-init" and e["state"] == "done"
    assert e["settings"] == {"model": "mlp1d", "dataset": "digits", "method": "rigl", "density": 0.1}
    assert e["metrics"] == {"test_acc": 0.9, "density": 0.1, "early_stop_test_acc": 0.8}
    assert e["config"]["train.lr"] == 0.1 and e["config"]["seed"] == 0  # the config flattened


def test_a_run_is_its_own_root_as_dot(tmp_path):
    r = run(tmp_path / "r", "dst", DST, {"test_acc": 0.9})
    assert describe(r, r)["path"] == "."


def test_an_imp_run_without_its_plot_is_partial(tmp_path):
    r = run(tmp_path / "imp", "imp", {"model": "mlp1d", "rounds": 3}, {"rounds": []})
    assert describe(r, tmp_path)["state"] == "partial"
    (r / "accuracy_vs_density.png").write_bytes(b"png")
    assert describe(r, tmp_path)["state"] == "done"


def test_without_a_summary_a_run_is_partial_once_it_has_a_checkpoint_or_a_subfolder_else_empty(tmp_path):
    r = run(tmp_path / "r", "dst", DST)
    assert describe(r, tmp_path)["state"] == "empty"
    (r / "train_0").mkdir()
    assert describe(r, tmp_path)["state"] == "partial"
    r2 = run(tmp_path / "r2", "dst", DST)
    (r2 / "checkpoint.safetensors").write_bytes(b"x")
    assert describe(r2, tmp_path)["state"] == "partial"


FLOPS = {"training": 1, "training_dense": 2}


@pytest.mark.parametrize(
    "kind, summary",
    [
        ("prune-init", {"density": 0.1}),  # KeyError
        ("dst", {"ensemble": 5, "flops": FLOPS, "density": 0.1, "test_acc": 0.5}),  # TypeError
        ("dst", {"ensemble": {}, "flops": FLOPS, "density": 0.1, "test_acc": 0.5, "members": []}),  # IndexError
        (
            "dst",
            {
                "ensemble": {"size": 1},
                "flops": {"training": 1, "training_dense": 0},
                "density": 0.1,
                "test_acc": 0.5,
                "members": [{"nll": 1, "ece": 0}],
            },
        ),  # ZeroDivisionError
    ],
)
def test_a_summary_the_headline_cannot_read_is_done_with_no_metrics(tmp_path, kind, summary):
    e = describe(run(tmp_path / "r", kind, DST, summary), tmp_path)
    assert e["state"] == "done" and e["metrics"] == {}


def test_an_unknown_kind_is_listed_without_metrics(tmp_path):
    e = describe(run(tmp_path / "r", "someone-elses", {"model": "x"}, {"test_acc": 1.0}), tmp_path)
    assert e["kind"] == "someone-elses" and e["state"] == "done" and e["metrics"] == {}


@pytest.mark.parametrize("record", [None, {"config": {}}, [1]])
def test_a_folder_without_a_ticketlab_run_record_is_not_a_run(tmp_path, record):
    d = tmp_path / "d"
    d.mkdir()
    if record is not None:
        (d / "config.json").write_text(json.dumps(record))
    assert describe(d, tmp_path) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"kind": "imp"', "config.json is not JSON"),
        ('{"kind": "imp"}', "config.json is not a ticketlab run config"),
        ('{"kind": "imp", "config": [1]}', "config.json is not a ticketlab run config"),
    ],
)
def test_a_run_whose_config_cannot_be_read_is_listed_as_damaged_with_the_reason(tmp_path, text, reason):
    d = tmp_path / "runs" / "r"
    d.mkdir(parents=True)
    (d / "config.json").write_text(text)
    (entry,) = list_runs(tmp_path / "runs")
    assert (entry["path"], entry["state"], entry["reason"]) == ("r", "damaged", reason)
    assert format_runs([entry]).splitlines()[1].split(None, 3) == ["r", "?", "damaged", reason]


def test_a_run_whose_summary_is_not_an_object_is_damaged_under_its_own_kind(tmp_path):
    d = run(tmp_path / "r", "dst", DST)
    (d / "summary.json").write_text("[1,")
    e = describe(d, tmp_path)
    assert (e["kind"], e["state"], e["reason"]) == ("dst", "damaged", "summary.json is not a JSON object")


def test_a_seed_group_lists_its_seed_count_and_the_mean_headline(tmp_path):
    g = run(tmp_path / "g", "seeds", {"experiment": "dst", "config": DST})
    e = describe(g, tmp_path)
    assert e["kind"] == "dst (seeds)" and e["state"] == "empty" and e["settings"]["model"] == "mlp1d"
    put(g, "summary.json", {"seeds": [0, 1], "headline": {"test_acc": {"mean": 0.5}}})
    e = describe(g, tmp_path)
    assert e["state"] == "done" and e["settings"]["seeds"] == 2 and e["metrics"] == {"test_acc": {"mean": 0.5}}
    put(g, "summary.json", {"seeds": []})
    assert describe(g, tmp_path)["state"] == "empty"


def sweep(path, states, failed=None):
    run(path, "sweep", {"experiment": "dst", "fixed": DST, "axes": [["method", ["set", "rigl"]], ["lr", [0.1]]]})
    put(path, "sweep.json", {"points": [{"state": s} for s in states], **({"failed": failed} if failed else {})})
    return path


@pytest.mark.parametrize(
    "states, failed, want",
    [
        (["done", "done"], None, "done"),
        (["done", "running"], None, "partial"),
        ([], None, "partial"),
        (["done", "done"], ["p"], "failed"),
    ],
)
def test_a_sweeps_state_comes_from_its_points(tmp_path, states, failed, want):
    e = describe(sweep(tmp_path / "s", states, failed), tmp_path)
    assert e["kind"] == "dst (sweep)" and e["state"] == want and e["settings"]["points"] == len(states)


def test_a_sweeps_axes_are_listed_and_are_not_fixed_settings(tmp_path):
    e = describe(sweep(tmp_path / "s", ["done"]), tmp_path)
    assert e["settings"]["axes"] == "method,lr" and "method" not in e["settings"]
    assert e["settings"]["model"] == "mlp1d"
    without = run(tmp_path / "s2", "sweep", {"experiment": "dst", "fixed": DST, "axes": []})
    assert describe(without, tmp_path)["state"] == "empty"


def test_a_folder_of_runs_lists_each_and_recursive_goes_deeper(tmp_path):
    run(tmp_path / "a", "dst", DST, {"test_acc": 0.5})
    run(tmp_path / "b", "dst", DST)
    g = run(tmp_path / "g", "seeds", {"experiment": "dst", "config": DST})
    run(g / "seed_0", "dst", DST, {"test_acc": 0.7})
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "file.txt").write_text("x")
    assert [e["path"] for e in list_runs(tmp_path)] == ["a", "b", "g"]
    assert [e["path"] for e in list_runs(tmp_path, recursive=True)] == ["a", "b", "g", "g/seed_0"]


def test_a_group_or_sweep_folder_lists_itself_then_its_runs(tmp_path):
    g = run(tmp_path / "g", "seeds", {"experiment": "dst", "config": DST})
    run(g / "seed_1", "dst", DST, {"test_acc": 0.7})
    run(g / "seed_0", "dst", DST, {"test_acc": 0.6})
    (g / "other").mkdir()
    run(g / "extra", "dst", DST)  # not a seed folder
    assert [e["path"] for e in list_runs(g)] == [".", "seed_0", "seed_1"]
    s = sweep(tmp_path / "s", ["done"])
    run(s / "method=set", "seeds", {"experiment": "dst", "config": DST})
    (s / "junk").mkdir()
    assert [e["path"] for e in list_runs(s)] == [".", "method=set"]
    single = run(tmp_path / "one", "dst", DST, {"test_acc": 0.1})
    (single / "train_0").mkdir()
    assert [e["path"] for e in list_runs(single)] == ["."]  # a plain run's subfolders are not runs
    assert [e["path"] for e in list_runs(g, recursive=True)] == [".", "extra", "seed_0", "seed_1"]


def test_listing_a_missing_folder_says_what_to_give(tmp_path):
    with pytest.raises(UserError, match=r"is not a directory; give a folder of runs \(default: runs/\)"):
        list_runs(tmp_path / "missing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is not a directory"):
        list_runs(tmp_path / "f")


def entry(**cfg):
    return {"config": cfg, "settings": {}, "metrics": {}}


def test_where_matches_a_key_or_a_nested_keys_last_part_by_text_or_number():
    e = entry(**{"method": "rigl", "train.lr": 0.1, "density": 0.3, "rounds": 5})
    assert matches(e, ["method=rigl"]) and not matches(e, ["method=set"])
    assert matches(e, ["lr=0.1"]) and matches(e, ["train.lr=0.1"]) and matches(e, ["lr=0.10"])
    assert not matches(e, ["rain.lr=0.1"]) and not matches(e, ["r=0.1"])  # a dotted part is matched whole
    assert matches(e, ["density=0.3", "method=rigl"]) and not matches(e, ["density=0.3", "method=set"])
    assert matches(e, ["rounds=5"]) and not matches(e, ["rounds=5.0"])  # an int compares as text
    assert not matches(e, ["missing=1"]) and not matches(e, ["lr=fast"])
    assert matches(e, [])


def test_where_also_matches_the_listed_settings():
    e = {"config": {}, "settings": {"axes": "method,lr", "seeds": 3}, "metrics": {}}
    assert matches(e, ["axes=method,lr"]) and matches(e, ["seeds=3"]) and not matches(e, ["seeds=4"])


@pytest.mark.parametrize("bad", ["model", "=x", ""])
def test_a_where_without_key_and_value_is_refused(bad):
    with pytest.raises(UserError, match=f"--where expects KEY=VALUE, got {bad!r}"):
        matches(entry(model="x"), [bad])


def test_metric_value_reads_a_number_or_a_statistics_mean():
    e = {
        "metrics": {
            "acc": 0.5,
            "g": {"mean": 0.25, "std": 0.1, "min": 0.1, "max": 0.4, "n": 2, "values": [1]},
            "text": "x",
            "partial": {"mean": 0.3},
        }
    }
    assert metric_value(e, "acc") == 0.5 and metric_value(e, "g") == 0.25
    assert metric_value(e, "text") is None and metric_value(e, "partial") is None and metric_value(e, "nope") is None


def test_the_table_has_aligned_columns_and_four_decimals():
    entries = [
        {
            "path": "a-long-name",
            "kind": "dst",
            "state": "done",
            "metrics": {"test_acc": 0.91234},
            "settings": {"model": "mlp1d", "density": 0.1},
        },
        {"path": "b", "kind": "imp (seeds)", "state": "partial", "metrics": {}, "settings": {}},
    ]
    lines = format_runs(entries).splitlines()
    assert lines[0] == "run          kind         state    test_acc  settings"
    assert lines[1] == "a-long-name  dst          done     0.9123    model=mlp1d density=0.1"
    assert lines[2] == "b            imp (seeds)  partial"
    assert format_runs([]) == "no runs found"
    other = format_runs(entries, metric="val_acc").splitlines()
    assert other[0].split()[3] == "val_acc" and other[1].split()[3] == "model=mlp1d"


def test_a_where_value_may_hold_an_equals_sign():
    entry = {"config": {"source": "runs/s/method=rigl/seed_0"}, "settings": {}}
    assert matches(entry, ["source=runs/s/method=rigl/seed_0"])
    assert not matches(entry, ["source=runs/s/method=set/seed_0"])


def test_a_sweep_whose_files_have_the_wrong_shape_is_damaged_not_a_traceback(tmp_path):
    d = run(tmp_path / "s", "sweep", {"experiment": "dst", "fixed": DST, "axes": [["method", ["set"]]]})
    put(d, "sweep.json", {"points": 7})
    e = describe(d, tmp_path)
    assert (e["kind"], e["state"]) == ("sweep", "damaged") and "not of its kind's shape" in e["reason"]


def test_a_damaged_entry_has_every_field_a_listing_reads_and_nothing_of_the_run(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "config.json").write_text("{")
    assert describe(d, tmp_path) == {
        "path": "r",
        "kind": "?",
        "settings": {},
        "state": "damaged",
        "metrics": {},
        "config": {},
        "reason": "config.json is not JSON",
    }
    s = run(tmp_path / "s", "sweep", {"experiment": "dst", "fixed": DST, "axes": [["method", ["set"]]]})
    put(s, "sweep.json", {"points": [1]})  # a point that is not an object
    assert describe(s, s) == {
        "path": ".",
        "kind": "sweep",
        "settings": {},
        "state": "damaged",
        "metrics": {},
        "config": {},
        "reason": "config.json, summary.json or sweep.json is not of its kind's shape",
    }


def test_records_missing_their_optional_parts_are_listed_not_damaged(tmp_path):
    """A seed group without its inner config or headline, a sweep without fixed settings, axes or points:
    each is listed with what it has (no settings, no metrics, no points), not as damaged."""
    g = run(tmp_path / "g", "seeds", {"experiment": "dst"}, {"seeds": [0, 1]})
    e = describe(g, tmp_path)
    assert (e["kind"], e["state"], e["settings"], e["metrics"], e["config"]) == (
        "dst (seeds)",
        "done",
        {"seeds": 2},
        {},
        {},
    )
    assert format_runs([e]).splitlines()[1].split() == ["g", "dst", "(seeds)", "done", "seeds=2"]
    g2 = run(tmp_path / "g2", "seeds", {"experiment": "dst", "config": [1]})
    assert describe(g2, tmp_path)["state"] == "empty"
    s = run(tmp_path / "s", "sweep", {"experiment": "dst"})
    put(s, "sweep.json", {})
    e = describe(s, tmp_path)
    assert (e["state"], e["settings"], e["config"]) == ("partial", {"axes": "", "points": 0}, {})


def test_a_sweeps_axes_skip_entries_that_are_not_a_named_axis(tmp_path):
    s = run(tmp_path / "s", "sweep", {"experiment": "dst", "fixed": DST, "axes": ["lr", [], ["method", ["set"]]]})
    e = describe(s, tmp_path)
    assert e["settings"]["axes"] == "method" and "method" not in e["settings"]


def test_a_metric_that_is_not_a_number_shows_as_nan_in_the_table():
    e = {"path": "r", "kind": "dst", "state": "done", "metrics": {"test_acc": float("nan")}, "settings": {}}
    assert format_runs([e]).splitlines()[1].split() == ["r", "dst", "done", "nan"]
