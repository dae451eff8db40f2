"""Run directories: named by the config's hash, created with their config.json, reopened only by the same
kind and config (after the stored config is brought to today's schema), refused with a line naming what
differs otherwise."""

import hashlib
import json
import os

import pytest

from ticketlab.errors import UserError
from ticketlab.runs.rundir import CONFIG_FILE, config_hash, default_run_dir, open_run_dir


def test_the_hash_is_the_first_12_hex_digits_of_sha256_of_the_sorted_json():
    cfg = {"b": 1, "a": {"y": [1, 2], "x": 0.5}}
    want = hashlib.sha256(b'{"a": {"x": 0.5, "y": [1, 2]}, "b": 1}').hexdigest()[:12]
    assert config_hash(cfg) == want == config_hash({"a": {"x": 0.5, "y": [1, 2]}, "b": 1})
    # golden: the folder name of a stored run never changes
    assert config_hash({"model": "mlp1d"}) == "fa5e57d2506e"
    assert config_hash({"model": "mlp1d", "seed": 0}) != config_hash({"model": "mlp1d", "seed": 1})


def test_the_default_folder_is_kind_dash_hash_under_the_root(tmp_path):
    cfg = {"model": "mlp1d"}
    assert default_run_dir("imp", cfg, tmp_path) == tmp_path / f"imp-{config_hash(cfg)}"
    assert default_run_dir("imp", cfg) == default_run_dir("imp", cfg, "runs")
    assert str(default_run_dir("imp", cfg)) == f"runs/imp-{config_hash(cfg)}"


def test_a_legacy_kinds_folder_is_taken_only_when_it_holds_a_run(tmp_path):
    cfg = {"model": "mlp1d"}
    old = tmp_path / f"old-{config_hash(cfg)}"
    old.mkdir()  # a folder without config.json: not a run, so the new name is used
    assert default_run_dir("new", cfg, tmp_path, ("old",)) == tmp_path / f"new-{config_hash(cfg)}"
    (old / CONFIG_FILE).write_text("{}")
    assert default_run_dir("new", cfg, tmp_path, ("older", "old")) == old
    older = tmp_path / f"older-{config_hash(cfg)}"
    older.mkdir()
    (older / CONFIG_FILE).write_text("{}")
    assert default_run_dir("new", cfg, tmp_path, ("older", "old")) == older  # the first listed wins


def test_a_new_folder_gets_its_kind_and_config_and_nothing_else(tmp_path):
    path = open_run_dir(tmp_path / "a" / "b", "imp", {"lr": 0.1})
    assert path == tmp_path / "a" / "b"
    assert json.loads((path / CONFIG_FILE).read_text()) == {"kind": "imp", "config": {"lr": 0.1}}
    assert sorted(os.listdir(path)) == [".lock", CONFIG_FILE]  # the write test leaves nothing behind


def test_an_existing_empty_folder_is_taken(tmp_path):
    (tmp_path / "empty").mkdir()
    assert open_run_dir(tmp_path / "empty", "imp", {"lr": 0.1}) == tmp_path / "empty"
    assert (tmp_path / "empty" / CONFIG_FILE).is_file()


def test_the_same_kind_and_config_reopen_without_rewriting(tmp_path):
    path = open_run_dir(tmp_path / "r", "imp", {"lr": 0.1})
    (path / CONFIG_FILE).write_text(json.dumps({"kind": "imp", "config": {"lr": 0.1}, "note": "mine"}))
    assert open_run_dir(path, "imp", {"lr": 0.1}) == path
    assert json.loads((path / CONFIG_FILE).read_text())["note"] == "mine"


def test_a_different_config_is_refused_naming_every_differing_key(tmp_path):
    path = open_run_dir(tmp_path / "r", "imp", {"lr": 0.1, "train": {"steps": 5, "bs": 2}, "same": 1})
    before = (path / CONFIG_FILE).read_bytes()
    with pytest.raises(UserError, match=r"differs in: extra, lr, train\.steps\); use another --out, or repeat"):
        open_run_dir(path, "imp", {"lr": 0.2, "train": {"steps": 6, "bs": 2}, "same": 1, "extra": True})
    assert (path / CONFIG_FILE).read_bytes() == before


def test_a_nested_setting_replaced_by_a_plain_value_is_named_as_the_setting(tmp_path):
    path = open_run_dir(tmp_path / "r", "imp", {"train": {"steps": 5}})
    with pytest.raises(UserError, match=r"differs in: train\)"):
        open_run_dir(path, "imp", {"train": 5})


def test_another_kinds_folder_or_a_foreign_config_file_is_refused(tmp_path):
    path = open_run_dir(tmp_path / "r", "imp", {"lr": 0.1})
    with pytest.raises(UserError, match=r"holds something other than a ticketlab dst run; choose another --out"):
        open_run_dir(path, "dst", {"lr": 0.1})
    for foreign in ([1, 2], {"kind": "imp"}, {"config": {"lr": 0.1}}):
        (path / CONFIG_FILE).write_text(json.dumps(foreign))
        with pytest.raises(UserError, match="holds something other than a ticketlab imp run"):
            open_run_dir(path, "imp", {"lr": 0.1})


def test_a_folder_stored_under_a_legacy_kind_reopens(tmp_path):
    path = open_run_dir(tmp_path / "r", "sweep", {"lr": 0.1})
    assert open_run_dir(path, "double-descent", {"lr": 0.1}, legacy_kinds=("sweep",)) == path
    assert json.loads((path / CONFIG_FILE).read_text())["kind"] == "sweep"  # left as it is
    with pytest.raises(UserError, match="other than a ticketlab double-descent run"):
        open_run_dir(path, "double-descent", {"lr": 0.1}, legacy_kinds=("imp",))


def test_a_stored_config_is_normalized_before_the_comparison(tmp_path):
    path = open_run_dir(tmp_path / "r", "dst", {"lr": 0.1})
    add_default = lambda c: {**c, "new": "default"}  # noqa: E731
    assert open_run_dir(path, "dst", {"lr": 0.1, "new": "default"}, normalize=add_default) == path
    with pytest.raises(UserError, match=r"differs in: new\)"):
        open_run_dir(path, "dst", {"lr": 0.1, "new": "other"}, normalize=add_default)


@pytest.mark.parametrize("error", [UserError, TypeError, ValueError])
def test_a_stored_config_the_normalizer_rejects_is_compared_as_stored(tmp_path, error):
    path = open_run_dir(tmp_path / "r", "dst", {"lr": 0.1})

    def reject(c):
        raise error("old")

    assert open_run_dir(path, "dst", {"lr": 0.1}, normalize=reject) == path
    with pytest.raises(UserError, match=r"differs in: lr\)"):
        open_run_dir(path, "dst", {"lr": 0.2}, normalize=reject)


def test_a_stored_config_that_is_not_a_dict_is_a_mismatch_with_no_key_to_name(tmp_path):
    path = tmp_path / "r"
    path.mkdir()
    (path / CONFIG_FILE).write_text(json.dumps({"kind": "imp", "config": [1]}))
    calls = []
    with pytest.raises(UserError, match=r"differs in: lr\)"):  # compared as an empty config
        open_run_dir(path, "imp", {"lr": 0.1}, normalize=lambda c: calls.append(c) or c)
    with pytest.raises(UserError, match=r"differs in: \?\)"):
        open_run_dir(path, "imp", {}, normalize=lambda c: calls.append(c) or c)
    assert calls == []  # the normalizer only sees dicts


def test_a_file_or_a_non_empty_foreign_folder_is_refused_untouched(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(UserError, match=r"is a file, not a directory; choose another --out"):
        open_run_dir(tmp_path / "f", "imp", {})
    assert (tmp_path / "f").read_text() == "mine"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"is not empty and is not a ticketlab run directory"):
        open_run_dir(tmp_path / "d", "imp", {})
    assert os.listdir(tmp_path / "d") == ["notes.txt"]


def test_a_folder_left_by_a_run_killed_while_creating_it_is_opened_as_a_new_run(tmp_path):
    # a sweep worker terminated with its pool can stop between the lock, the write probe and config.json's
    # rename: the folder then holds only those, and the next try must start the run there, not refuse it
    d = tmp_path / "d"
    d.mkdir()
    for name in (".lock", ".write-test-4242", ".config.json.k2j_x1.tmp"):
        (d / name).write_text("")
    assert open_run_dir(d, "imp", {"lr": 0.1}) == d
    assert json.loads((d / "config.json").read_text()) == {"kind": "imp", "config": {"lr": 0.1}}
    for name in (".notes.tmp", ".config.json", "config.json.tmp", ".write-test"):  # none of them ours
        e = tmp_path / name.strip(".")
        e.mkdir()
        (e / name).write_text("mine")
        with pytest.raises(UserError, match=r"is not empty and is not a ticketlab run directory"):
            open_run_dir(e, "imp", {})
        assert os.listdir(e) == [name]


def test_a_folder_that_cannot_be_written_is_one_line_and_holds_no_config(tmp_path, monkeypatch):
    from pathlib import Path

    real = Path.write_text

    def refuse(self, *a, **kw):
        if self.name.startswith(".write-test-"):
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(UserError, match=r"cannot write to --out .* \(Permission denied\); choose a writable"):
        open_run_dir(tmp_path / "run", "imp", {})
    assert not (tmp_path / "run" / CONFIG_FILE).exists()


def test_a_reopened_folder_is_checked_whole_by_default_and_left_as_it_was(tmp_path):
    """Reopening runs runs.check first (check=False skips it, for a caller that has just checked it)."""
    d = tmp_path / "d"
    open_run_dir(d, "imp", {"lr": 0.1})
    (d / "metrics.json").write_text("[1, 2")  # torn
    with pytest.raises(UserError, match=r"metrics.json"):
        open_run_dir(d, "imp", {"lr": 0.1})
    assert (d / "metrics.json").read_text() == "[1, 2"
    assert open_run_dir(d, "imp", {"lr": 0.1}, check=False) == d
