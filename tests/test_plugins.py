"""Plugins: a package's ``ticketlab.commands`` entry points add commands that ticketlab's own machinery runs
end to end - flags, --seeds, sweep, runs, show, report - with no code outside the plugin's one file (the
example in examples/plugin, installed here as a dist-info on sys.path)."""

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import one_line_exit_2

from ticketlab import commands
from ticketlab.cli import main, top_help
from ticketlab.runs import EXPERIMENTS

EXAMPLE = Path(__file__).parent.parent / "examples" / "plugin"
FAST = ["--model", "mlp1d", "--iterations", "30", "--eval-every", "10", "--batch-size", "32", "--quiet"]


def install(site: Path, name: str, entry_points: str, package: Path | None = None) -> None:
    """A distribution as pip leaves it: the package and a dist-info with METADATA and entry_points.txt."""
    if package is not None:
        shutil.copytree(package, site / package.name)
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[ticketlab.commands]\n{entry_points}\n")


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install(
        site,
        "ticketlab-random-ticket",
        "random-ticket = ticketlab_random_ticket:EXPERIMENT\nnonzeros = ticketlab_random_ticket:NONZEROS",
        EXAMPLE / "ticketlab_random_ticket",
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.chdir(tmp_path)
    yield site
    EXPERIMENTS._items.pop("random-ticket", None)
    commands._ADDED.pop("random-ticket", None)
    sys.modules.pop("ticketlab_random_ticket", None)


def test_a_plugins_commands_are_listed_with_their_help_and_distribution(plugin, capsys):
    text = top_help()
    assert "random-ticket" in text and "the random-ticket baseline" in text
    assert "[plugin: ticketlab-random-ticket]" in text
    training = text.split("analysis:")[0]
    assert "random-ticket" in training and "nonzeros" not in training  # grouped by what it is
    assert main(["list"]) == 0 and "random-ticket (ticketlab-random-ticket)" in capsys.readouterr().out


def test_a_plugin_training_runs_with_its_flags_seeds_show_runs_and_report(plugin, capsys):
    assert main(["random-ticket", *FAST, "--density", "0.25", "--out", "r"]) == 0
    s = json.loads(Path("r/summary.json").read_text())
    assert s["density"] == 0.25 and s["config"]["density"] == 0.25
    assert json.loads(Path("r/config.json").read_text())["kind"] == "random-ticket"
    assert main(["random-ticket", *FAST, "--density", "0.25", "--seeds", "2", "--out", "g"]) == 0
    assert sorted(p.name for p in Path("g").glob("seed_*")) == ["seed_0", "seed_1"]
    capsys.readouterr()
    assert main(["show", "r"]) == 0 and "density 0.2500" in capsys.readouterr().out
    assert main(["runs", ".", "--json"]) == 0
    kinds = {e["path"]: e["kind"] for e in json.loads(capsys.readouterr().out)}
    assert kinds["r"] == "random-ticket" and kinds["g"] == "random-ticket (seeds)"
    assert main(["report", "r", "g", "--out", "page.html"]) == 0 and "random-ticket" in Path("page.html").read_text()
    assert main(["nonzeros", "r"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "kept" in line]
    assert rows and all(int(kept) == round(0.25 * int(total)) for _, kept, _, total, _ in rows)


def test_a_plugin_training_is_swept(plugin, capsys):
    assert main(["sweep", "random-ticket", *FAST, "--vary", "density=0.25,0.5", "--out", "s"]) == 0
    done = json.loads(Path("s/sweep.json").read_text())["points"]
    assert [p["state"] for p in done] == ["done", "done"]
    assert json.loads(Path("s/density=0.5/seed_0/summary.json").read_text())["density"] == 0.5


def test_a_plugin_taking_a_built_in_name_is_refused_naming_both(tmp_path, monkeypatch, capsys):
    install(tmp_path, "bad-plugin", "imp = os:path")
    monkeypatch.syspath_prepend(str(tmp_path))
    one_line_exit_2(main(["imp", "--help"]), capsys.readouterr().err, "'imp' of the plugin bad-plugin is already")


def test_a_plugin_entry_point_to_something_else_or_nothing_is_one_line(tmp_path, monkeypatch, capsys):
    install(tmp_path, "odd-plugin", "odd = os:path\nmissing = no_such_module_here:X")
    monkeypatch.syspath_prepend(str(tmp_path))
    one_line_exit_2(main(["odd"]), capsys.readouterr().err, "not an Experiment or a Command named 'odd'")
    one_line_exit_2(main(["missing"]), capsys.readouterr().err, "cannot be loaded")
    assert "(cannot be loaded" in top_help()  # the listing still works


def test_a_command_registered_in_this_process_is_a_command(monkeypatch, capsys):
    from ticketlab.commands import Command

    seen = []
    cmd = Command(
        "hello-there",
        lambda p: p.add_argument("--who", default="you"),
        lambda ns: seen.append(ns.who) or 0,
        help="says hello",
        group="tools",
    )
    monkeypatch.setitem(commands._ADDED, "hello-there", cmd)
    assert main(["hello-there", "--who", "me"]) == 0 and seen == ["me"]
    assert "hello-there" in top_help()


def test_an_unknown_command_is_one_line_naming_the_choices(capsys):
    one_line_exit_2(main(["nope"]), capsys.readouterr().err, "unknown command 'nope'; choose one of: imp,")


def test_the_extending_page_shows_the_example_plugin_file_as_it_is():
    page = (EXAMPLE.parent.parent / "docs" / "extending.md").read_text()
    for f in ("pyproject.toml", "ticketlab_random_ticket/__init__.py"):
        assert (EXAMPLE / f).read_text().rstrip() in page
