import pytest
import torch

from ticketlab.errors import UserError
from ticketlab.io import load_tensors, read_json, save_tensors, write_json


def test_tensors_round_trip_including_bool(tmp_path):
    t = {"w": torch.randn(3, 4), "m": torch.rand(3, 4) > 0.5}
    save_tensors(tmp_path / "a.safetensors", t)
    back = load_tensors(tmp_path / "a.safetensors")
    assert torch.equal(back["w"], t["w"]) and torch.equal(back["m"], t["m"]) and back["m"].dtype == torch.bool


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    write_json(tmp_path / "x.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "x.json", {"a": object()})
    assert read_json(tmp_path / "x.json") == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_safetensors_is_a_user_error(tmp_path, content):
    (tmp_path / "bad.safetensors").write_bytes(content)
    with pytest.raises(UserError, match="corrupt"):
        load_tensors(tmp_path / "bad.safetensors")


def test_corrupt_json_is_a_user_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        read_json(tmp_path / "bad.json")


def _disk_full(monkeypatch, after: int = 0):
    """os.fsync fails with ENOSPC from its ``after``-th call on (a disk that fills up)."""
    import errno
    import os

    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("write", ["json", "tensors"])
def test_a_full_disk_is_one_line_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, write):
    path = tmp_path / ("a.json" if write == "json" else "a.safetensors")
    old = {"a": 1} if write == "json" else {"a": torch.ones(3)}
    (write_json if write == "json" else save_tensors)(path, old)
    before = path.read_bytes()
    _disk_full(monkeypatch)
    with pytest.raises(UserError, match=r"^cannot write .*a\.\w+ \(No space left on device\); free some space"):
        (write_json if write == "json" else save_tensors)(path, {"b": 2} if write == "json" else {"b": torch.ones(2)})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_disk_that_fills_during_a_run_exits_2_in_one_line_and_the_rerun_finishes_it(tmp_path, monkeypatch, capsys):
    from ticketlab.cli import main

    argv = ["imp", "--dataset", "digits", "--model", "lenet300", "--iterations", "20", "--quiet", "--rounds", "1"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as m:
        _disk_full(m, after=3)
        code = main([*argv, "--out", str(tmp_path / "full")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "No space left on device" in err, err
    assert not [p for p in (tmp_path / "full").rglob("*.tmp")]
    assert main([*argv, "--out", str(tmp_path / "full")]) == 0
    whole, full = read_json(tmp_path / "whole/summary.json"), read_json(tmp_path / "full/summary.json")
    assert whole["rounds"] == full["rounds"]


def test_a_plot_replaces_the_old_one_whole_through_a_temporary_file(tmp_path, monkeypatch):
    import os

    from ticketlab.plotting import plt, save_figure

    (tmp_path / "p.png").write_bytes(b"old plot")
    renamed = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: renamed.append(os.path.basename(a)) or real(a, b))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(renamed) == 1 and renamed[0].startswith(".p.png.") and renamed[0].endswith(".tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_a_writes_temporary_is_known_as_that_files_and_no_others(tmp_path, monkeypatch):
    """What a process killed mid-write leaves beside ``name`` is recognised as its (a new run's folder may hold
    config.json's): the name the write really used, not a rule written twice."""
    import os
    import tempfile

    from ticketlab import io

    made = []
    real = tempfile.mkstemp

    def mkstemp(**kw):
        fd, name = real(**kw)
        made.append(os.path.basename(name))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    io.write_json(tmp_path / "config.json", {})
    assert io.is_temporary_of(made[0], "config.json") and not io.is_temporary_of(made[0], "summary.json")
    assert not io.is_temporary_of("config.json", "config.json")
