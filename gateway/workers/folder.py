"""The group folder: where a group keeps what its workers share, and how it is cleaned up.

The supervisor makes it in the system's temporary folder (`tempfile.gettempdir()`, TMPDIR) and
removes it at exit. It holds prometheus-client's multiprocess files (about 0.5 MB for a few
workers), the workers' published state, the shared connection counts, and the settings the
supervisor loaded (`settings.pickle`), which every worker starts from: a worker restarted after
gateway.yaml was edited on disk serves the group's settings, never the edited file's, so a group
never runs two configs. (The routing file is not in it: it stays live, every worker watches it.)

A supervisor killed with SIGKILL cannot remove its folder. So the folder is named with the
supervisor's pid (`gateway-workers-<pid>-<random>`) and holds `lock`, which the supervisor keeps
locked (flock) for as long as it runs; the kernel drops the lock when it dies, however it dies.
Every supervisor, at its start, removes the folders of this prefix, of its own user, whose lock
is free: their supervisors no longer run. The lock, not the pid, says so (a pid is reused, and
a temporary folder shared across pid namespaces sees other namespaces' pids); the pid is the
fallback for a folder caught between its making and its locking, and names the folder for
whoever looks. A live group's folder is never touched: its supervisor holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import IO

from gateway.settings import Settings

logger = logging.getLogger("gateway.workers")

FOLDER_PREFIX = "gateway-workers-"
LOCK_FILE = "lock"
SETTINGS_FILE = "settings.pickle"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def _abandoned(folder: Path) -> bool:
    """No supervisor holds `folder`'s lock (or, when it has no lock yet, the pid in its name
    runs no more)."""
    try:
        with open(folder / LOCK_FILE, "rb") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
    except FileNotFoundError:
        pid, named, _ = folder.name.removeprefix(FOLDER_PREFIX).partition("-")
        return bool(named) and pid.isdigit() and not _running(int(pid))
    except OSError:  # not ours to read: not ours to remove
        return False


def remove_abandoned_folders(parent: Path) -> list[Path]:
    """Remove the group folders in `parent` that this user's supervisors left behind (killed
    with SIGKILL, or the machine stopped); the removed ones."""
    removed = []
    uid = os.getuid()
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if not entry.name.startswith(FOLDER_PREFIX):
                continue
            try:
                if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != uid:
                    continue
            except OSError:
                continue
            folder = Path(entry.path)
            if _abandoned(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    for folder in removed:
        logger.info("removed %s: its supervisor no longer runs", folder)
    return removed


def make_group_folder(parent: Path | None = None) -> tuple[Path, IO[bytes]]:
    """A new group folder, named with this process's pid, and its lock, held until the
    returned file is closed (or this process ends). Folders left by supervisors that no longer
    run are removed first."""
    parent = Path(parent or tempfile.gettempdir())
    remove_abandoned_folders(parent)
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=parent))
    lock = open(folder / LOCK_FILE, "wb")  # noqa: SIM115 - held open for the group's life
    fcntl.flock(lock, fcntl.LOCK_EX)
    return folder, lock


def write_settings(folder: Path, settings: Settings) -> None:
    """The settings every worker of the group starts from (frozen dataclasses, pickled: the
    folder is this user's alone, mode 0700)."""
    (folder / SETTINGS_FILE).write_bytes(pickle.dumps(settings))


def read_settings(folder: Path) -> Settings:
    settings = pickle.loads((folder / SETTINGS_FILE).read_bytes())  # our own file, mode 0700
    if not isinstance(settings, Settings):
        raise TypeError(f"{folder / SETTINGS_FILE}: not the group's settings")
    return settings
