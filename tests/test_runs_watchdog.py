import os
import signal
import subprocess
import sys
import time

import pytest

from ticketlab.runs import watchdog

DRIVER = r"""
import subprocess, sys, time
from ticketlab.runs import watchdog
folder = watchdog.make_folder()
dog = watchdog.start(folder)
sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
named = subprocess.Popen(sleeper + [str(folder)])  # names the folder (as Ray's raylet does)
tracked = subprocess.Popen(sleeper)  # does not; told to the watchdog
dog.track(watchdog.children())
print(folder, named.pid, tracked.pid, flush=True)
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie (not yet reaped by init) is gone too
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def _wait(cond, timeout=20.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_a_killed_driver_takes_its_helper_processes_and_temp_folder_with_it(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=env)
    folder, named, tracked = driver.stdout.readline().split()
    assert os.path.isdir(folder) and not _gone(int(named)) and not _gone(int(tracked))
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert _wait(lambda: _gone(int(named)) and _gone(int(tracked)) and not os.path.exists(folder))


def test_a_normal_stop_leaves_the_callers_processes_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(watchdog.tempfile, "tempdir", None)
    folder = watchdog.make_folder()
    dog = watchdog.start(folder)
    keep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dog.track([keep.pid])
    dog.stop()
    assert dog.proc.returncode == 0 and keep.poll() is None
    keep.kill()
    keep.wait()


def test_stale_folders_of_dead_owners_are_removed_on_the_next_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale, live, foreign = (tmp_path / f"tl-ray-{n}" for n in ("a", "b", "c"))
    for d in (stale, live, foreign):
        d.mkdir()
    (stale / watchdog.OWNER).write_text(dead.stdout)
    (live / watchdog.OWNER).write_text(f"{os.getpid()}\n")
    assert watchdog.sweep_stale(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and foreign.exists()


@pytest.mark.slow
def test_killing_a_ray_sweeps_driver_kills_its_local_ray_and_removes_its_folder(tmp_path):
    """The real thing (ray 2.60): kill -9 the driver mid-sweep; within seconds no process names the Ray folder,
    no Ray worker is left and the folder is gone."""
    import shutil
    import tempfile
    from pathlib import Path

    pytest.importorskip("ray")
    short = Path(tempfile.mkdtemp(prefix="tlw", dir="/tmp"))  # Ray's socket paths must fit 107 bytes
    try:
        _ray_driver_killed(tmp_path, short)
    finally:
        shutil.rmtree(short, ignore_errors=True)


def _ray_driver_killed(tmp_path, short):
    env = dict(os.environ, TMPDIR=str(short))
    argv = [sys.executable, "-m", "ticketlab", "sweep", "imp", "--vary", "rate=0.2,0.3", "--dataset", "digits"]
    argv += ["--model", "lenet300", "--iterations", "200000", "--rounds", "1", "--backend", "ray", "--jobs", "2"]
    driver = subprocess.Popen([*argv, "--quiet", "--out", str(tmp_path / "sw")], env=env, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: any(short.glob("tl-ray-*/session_*")), timeout=120)
        (folder,) = short.glob("tl-ray-*")
        time.sleep(5)  # the tasks are running in Ray's workers
        ray_pids = [
            int(p) for p in subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True).stdout.split()
        ]
        assert ray_pids
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    assert _wait(lambda: all(_gone(p) for p in ray_pids) and not folder.exists(), timeout=30)
