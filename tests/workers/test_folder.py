"""The group folder (gateway.workers.folder): named with its supervisor's pid and locked for as
long as the supervisor runs, so the next supervisor removes the folders of those killed with
SIGKILL (before, each left its folder, about 0.5 MB, in the temporary folder) and never a live
group's; and the settings every worker starts from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gateway.settings import parse_settings
from gateway.workers.folder import (
    FOLDER_PREFIX,
    LOCK_FILE,
    make_group_folder,
    read_settings,
    remove_abandoned_folders,
    write_settings,
)


def dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_killed_supervisors_folder_goes_and_a_live_ones_stays(tmp_path: Path) -> None:
    live, lock = make_group_folder(tmp_path)
    assert live.name.startswith(f"{FOLDER_PREFIX}{os.getpid()}-")
    killed = tmp_path / f"{FOLDER_PREFIX}{os.getpid()}-killed"  # a reused pid: the lock tells
    killed.mkdir()
    (killed / LOCK_FILE).touch()  # nobody holds it: its supervisor died
    (killed / "counter_123.db").write_bytes(b"\0" * 4096)
    unlocked = tmp_path / f"{FOLDER_PREFIX}{dead_pid()}-starting"  # no lock file yet: the pid
    unlocked.mkdir()
    starting = tmp_path / f"{FOLDER_PREFIX}{os.getpid()}-starting"
    starting.mkdir()
    other = tmp_path / "someone-elses"
    other.mkdir()
    assert sorted(remove_abandoned_folders(tmp_path)) == sorted([killed, unlocked])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, starting.name, other.name])
    again, again_lock = make_group_folder(tmp_path)  # a second group beside the first
    assert live.exists() and again != live
    lock.close()  # the first supervisor ends (here without removing its folder)
    assert remove_abandoned_folders(tmp_path) == [live]
    again_lock.close()


def test_every_worker_starts_from_the_settings_the_supervisor_loaded(tmp_path: Path) -> None:
    settings = parse_settings({"limits": {"max_batch_rows": 7}, "server": {"workers": 2}},
                              tmp_path)
    write_settings(tmp_path, settings)
    assert read_settings(tmp_path) == settings
