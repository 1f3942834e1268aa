"""Big records' text made in a child process, off this process's GIL.

A one-row record's line costs about 4 µs of Python to make, less than shipping it to another
process, so it is made here (gateway.capture.columns). A 32-row record of 30 features holds a
thousand numbers: its text costs about 35 µs, every one of them taken from the event loop by the
GIL, while shipping the arrays and reading the lines back costs this process 14 to 18 µs a
record in runs of 64, plus about 200 µs a run. So runs of at least `MIN_RUN` alike records of
at least `MIN_VALUES` numbers each (no text) are encoded by `alike_lines` in one child process
(spawned, not forked: this process has onnxruntime's and the event loop's threads), on a core
this process is not using, in chunks of at most `CHUNK` records (the memory of a chunk's
arguments and lines, not a whole queue's), and written by the writer thread in order with the
rest.

Nothing depends on the child: it is started at the first such run, and if it cannot start, dies
(killed, out of memory), stalls past its deadline (`DEADLINE_BASE_S` plus `DEADLINE_PER_RECORD_S`
a record) or fails a run, that run is encoded here as before, the reason is logged once, and the
child is tried again after `RETRY_S`. The writer thread waits for the child's answer (waiting
holds no GIL), so the files and their order stay the writer's alone.

The child never outlives the gateway: Linux kills it when the thread that started it (the
writer) ends, whether the gateway stopped or was killed (kill -9, the OOM killer); it ignores
SIGINT and SIGTERM sent to the whole process group (Ctrl-C, systemd's stop), which the gateway
drains first; and stopping it kills it, stopped (SIGSTOP) or not, once the writer is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

from gateway.capture.columns import Alike, alike_lines

logger = logging.getLogger("gateway.capture")

MIN_VALUES = 256
"""Numbers in a record (its inputs' and outputs' elements) from which the child encodes it."""
MIN_RUN = 16
"""Records in a run from which shipping it beats encoding it here (a run's fixed cost)."""
CHUNK = 1024
"""Most records shipped at once."""
RETRY_S = 60.0
"""After the child failed, records are encoded here for this long before it is tried again."""
DEADLINE_BASE_S = 2.0
DEADLINE_PER_RECORD_S = 0.0005
"""A chunk's answer is awaited this long (a 32-row record takes the child about 40 µs): past it
the child is taken for stuck, killed and replaced, and the chunk is encoded here."""
_PR_SET_PDEATHSIG = 1


def values_in(item: Alike) -> int:
    """The numbers one record holds; 0 when it holds text (never shipped: not alike)."""
    arrays = [*item[3].values(), *item[4].values()]
    if any(array.dtype.kind in "OUSV" for array in arrays):
        return 0
    return sum(array.size for array in arrays)


def _child_start(parent_pid: int) -> None:
    """In the child: die with the thread that started it; let the gateway end it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it ended before the request took effect
        os._exit(0)


class ChildEncoder:
    """`alike_lines` in a child process, for runs worth shipping; None: encode them here."""

    def __init__(self, min_values: int = MIN_VALUES, min_run: int = MIN_RUN,
                 retry_s: float = RETRY_S) -> None:
        self.min_values = min_values
        self.min_run = min_run
        self.retry_s = retry_s
        self._pool: ProcessPoolExecutor | None = None
        self._retry_at = 0.0

    def lines(self, model: str, version: int, route: str, datatypes: Mapping[str, str],
              group: Sequence[Alike]) -> list[bytes] | None:
        """The run's lines made by the child, or None when they should be made here (small
        records or runs, the child unavailable, or records `alike_lines` finds not alike)."""
        if (len(group) < self.min_run or values_in(group[0]) < self.min_values
                or time.monotonic() < self._retry_at):
            return None
        lines: list[bytes] = []
        try:
            for at in range(0, len(group), CHUNK):
                chunk = list(group[at:at + CHUNK])
                done = self._start().submit(alike_lines, model, version, route,
                                            dict(datatypes), chunk).result(
                    timeout=DEADLINE_BASE_S + DEADLINE_PER_RECORD_S * len(chunk))
                if done is None:
                    return None
                lines += done
        except Exception as exc:  # BrokenProcessPool, a deadline, an error of the run itself
            logger.warning("capture: the encoding process failed (%s); encoding here for "
                           "%g s", exc.__class__.__name__ + (f": {exc}" if str(exc) else ""),
                           self.retry_s)
            self._retry_at = time.monotonic() + self.retry_s
            self._drop_pool()
            return None
        return lines

    def stop(self) -> None:
        """End the child (once the writer is done with it: nothing is in flight)."""
        self._drop_pool()

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_start, initargs=(os.getpid(),))
        return self._pool

    def _drop_pool(self) -> None:
        """Kill the child (stuck, stopped or idle: its work is done or given up) and let the
        pool's threads end."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
