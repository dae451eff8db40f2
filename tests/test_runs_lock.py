import os
import signal
import subprocess
import sys

import pytest

from ticketlab.errors import UserError
from ticketlab.runs import lock, open_run_dir

HOLD = (
    "import sys, time; from ticketlab.runs.lock import acquire; acquire(sys.argv[1]); print('held', flush=True); "
    "time.sleep(120)"
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/run."""
    (tmp_path / "run").mkdir()
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    yield p
    if p.poll() is None:
        p.kill()
    p.wait()
    lock.release_all()


def test_a_second_process_is_refused_naming_the_owner_pid(holder, tmp_path):
    with pytest.raises(UserError, match=rf"run is in use by another ticketlab process \(pid {holder.pid}\); wait"):
        lock.acquire(tmp_path / "run")


def test_a_lock_left_by_a_killed_process_is_taken_over(holder, tmp_path):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock.acquire(tmp_path / "run")
    assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())


def test_open_run_dir_refuses_a_folder_another_process_trains_in(holder, tmp_path):
    with pytest.raises(UserError, match=rf"in use by another ticketlab process \(pid {holder.pid}\)"):
        open_run_dir(tmp_path / "run", "demo", {"a": 1})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]


def test_one_process_reopens_its_own_folder_and_releases_it_at_the_end(tmp_path):
    open_run_dir(tmp_path / "run", "demo", {"a": 1})
    open_run_dir(tmp_path / "run", "demo", {"a": 1})
    assert lock.held() == [(tmp_path / "run").resolve()]
    lock.release_all()
    assert lock.held() == []
    p = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", "pass"), str(tmp_path / "run")])
    assert p.returncode == 0


def test_the_cli_releases_its_folders_when_the_command_ends(tmp_path, capsys):
    from ticketlab.cli import main

    argv = ["imp", "--dataset", "digits", "--model", "lenet300", "--iterations", "5", "--quiet", "--rounds", "1"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    assert lock.held() == []
    p = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", "pass"), str(tmp_path / "r")])
    assert p.returncode == 0
