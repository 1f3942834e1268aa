"""The group a worker process belongs to: its folder, its index, and its peers' published state.

`gateway serve` with `server.workers` above 1 starts each worker with the variables below; a
process without them is no worker (`current_group()` is None) and nothing here runs, so the
single-process gateway pays nothing for it.

Window state (drift windows, feedback windows, inflight requests) lives in each worker's memory.
Each worker publishes what the group's reports need of it, as sums of counts, in one small JSON
file of the group folder, `state-w<index>.json`, written whole (a temporary file renamed over
it) every `PUBLISH_INTERVAL_S` and at exit. A report or gauge adds its own live counts to its
peers' files. Counts are what is published, never statistics: histogram counts and window sums
add up exactly, and the statistics are computed once, from the group's counts. A worker that
dies takes its window with it: the supervisor removes its file when it starts the worker again.
Each worker keeps `window_share` of a window's rows (`drift.window_rows` / N, rounded up), the
most recent of what it served, so the group's window holds as many rows as one process's only
when every worker served at least its share. It is not the group's most recent
`drift.window_rows` rows: with skewed traffic (a gRPC channel is one connection, one worker) it
holds fewer, and a worker that served little keeps rows older than its peers' (docs/metrics.md,
"Workers", says so). Exact would need every worker to keep a whole window with a group-wide
order of rows; not done.

Counters that the observability code keeps as plain numbers (drift rows, feedback rows, labels
per class) are mirrored into prometheus-client's multiprocess files instead (`CounterMirror`),
so a dead worker's counts stay in the group's sums, as every other counter's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger("gateway.workers")

GROUP_VARIABLE = "GATEWAY_WORKER_GROUP"
"""The group folder (also PROMETHEUS_MULTIPROC_DIR's parent)."""
WORKER_VARIABLE = "GATEWAY_WORKER"
"""This worker's index, 0 to N - 1 (a restarted worker keeps its index)."""
SIZE_VARIABLE = "GATEWAY_WORKERS"
"""How many workers the group has."""
SUPERVISOR_VARIABLE = "GATEWAY_SUPERVISOR_PID"
"""The supervisor's pid: its start is the group's (`process_start_time_seconds`)."""
STATE_PREFIX = "state-w"
PUBLISH_INTERVAL_S = 0.5

Source = Callable[[], Awaitable[Any]]
"""A publisher of one part of the state: awaited on the worker's event loop."""


STARTED_PREFIX = "started-w"
"""A worker touches `started-w<index>` in the group folder once it serves."""
CONNECTIONS_FILE = "connections"
"""Open HTTP connections per worker, one int64 each (gateway.workers.accept)."""


NOT_ACCEPTING = 2**63 - 1
"""A worker's count while it does not accept (starting, draining, dead)."""


def make_connection_counts(folder: Path, workers: int) -> None:
    """The shared file of open connections per worker, every worker not accepting yet (the
    supervisor makes it)."""
    (folder / CONNECTIONS_FILE).write_bytes(NOT_ACCEPTING.to_bytes(8, sys.byteorder) * workers)


def mark_not_accepting(folder: Path, worker: int) -> None:
    """A dead worker's slot: its peers must not wait for it to take connections."""
    with open(folder / CONNECTIONS_FILE, "r+b") as file:
        file.seek(8 * worker)
        file.write(NOT_ACCEPTING.to_bytes(8, sys.byteorder))


def state_file(folder: Path, worker: int) -> Path:
    return folder / f"{STATE_PREFIX}{worker}.json"


class Group:
    def __init__(self, folder: Path, worker: int, supervisor_pid: int, size: int = 1) -> None:
        self.folder = folder
        self.worker = worker
        self.supervisor_pid = supervisor_pid
        self.size = size
        self._sources: dict[str, Source] = {}
        self._syncs: list[Callable[[], None]] = []
        self._peers: dict[str, tuple[int, dict[str, Any]]] = {}
        """File name -> (mtime_ns, parsed state): a peer's file is parsed once per write."""
        self._lock = threading.Lock()
        """Reports read peers on the event loop and on the drift thread."""

    @property
    def suffix(self) -> str:
        """A name part that tells this worker's files from its peers' (`-w1`)."""
        return f"-w{self.worker}"

    def window_share(self, window_rows: int) -> int:
        """The rows of a window this worker keeps: its share of the group's `window_rows`."""
        return max(1, -(-window_rows // self.size))

    def add_source(self, name: str, source: Source) -> None:
        self._sources[name] = source

    def add_counter_sync(self, sync: Callable[[], None]) -> None:
        """`sync` brings counter mirrors up to date: before every scrape and publish."""
        self._syncs.append(sync)

    def sync_counters(self) -> None:
        for sync in self._syncs:
            sync()

    async def publish(self) -> None:
        """Write this worker's state, whole (renamed into place)."""
        self.sync_counters()
        state = {name: await source() for name, source in self._sources.items()}
        target = state_file(self.folder, self.worker)
        partial = target.with_name(target.name + ".tmp")
        try:
            partial.write_bytes(json.dumps(state).encode())
            os.replace(partial, target)
        except OSError as exc:  # the group folder went away: the supervisor is ending
            logger.warning("worker %d: cannot publish its state (%s)", self.worker, exc)

    async def run(self) -> None:
        """Publish every PUBLISH_INTERVAL_S until cancelled, and once more then."""
        try:
            while True:
                await self.publish()
                await asyncio.sleep(PUBLISH_INTERVAL_S)
        finally:
            with contextlib.suppress(Exception):
                await self.publish()

    def peers(self, name: str) -> list[Any]:
        """The part `name` of every peer's last published state (this worker's excluded)."""
        with self._lock:
            return self._read_peers(name)

    def _read_peers(self, name: str) -> list[Any]:
        found = []
        mine = state_file(self.folder, self.worker).name
        try:
            entries = [e for e in os.scandir(self.folder)
                       if e.name.startswith(STATE_PREFIX) and e.name.endswith(".json")
                       and e.name != mine]
        except OSError:
            return []
        seen = set()
        for entry in entries:
            seen.add(entry.name)
            try:
                stamp = entry.stat().st_mtime_ns
                cached = self._peers.get(entry.name)
                if cached is None or cached[0] != stamp:
                    cached = self._peers[entry.name] = (
                        stamp, json.loads(Path(entry.path).read_bytes()))
            except (OSError, ValueError):  # removed since the listing: a worker just died
                continue
            part = cached[1].get(name)
            if part is not None:
                found.append(part)
        for gone in set(self._peers) - seen:
            del self._peers[gone]
        return found


_current: list[Group | None] = []


def current_group() -> Group | None:
    """This process's group, when `gateway serve` started it as a worker; else None. Made once
    per process, from the variables the supervisor set (a worker is a process: its group is)."""
    if not _current:
        folder = os.environ.get(GROUP_VARIABLE)
        worker = os.environ.get(WORKER_VARIABLE)
        _current.append(Group(Path(folder), int(worker),
                              int(os.environ.get(SUPERVISOR_VARIABLE) or os.getppid()),
                              int(os.environ.get(SIZE_VARIABLE) or 1))
                        if folder and worker is not None else None)
    return _current[0]
