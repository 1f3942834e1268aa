"""Big records' text made in a child process, off this process's GIL.

A one-row record's line costs about 4 µs of Python to make and about as much to ship to another
process, so it is made here (gateway.capture.columns). A 32-row record of 30 features holds a
thousand numbers: its text costs about 39 µs, every one of them taken from the event loop by the
GIL, while shipping the arrays (pickled, protocol 5) costs about 5 µs and reading the lines back
less than 1. So runs of alike records of at least `MIN_VALUES` numbers each are encoded by
`alike_lines` in one child process (spawned, not forked: this process has onnxruntime's and the
event loop's threads), on a core this process is not using, and written by the writer thread in
order with the rest.

Nothing depends on the child: it is started at the first big run, and if it cannot start, dies
(killed, out of memory) or fails a run, that run is encoded here as before, the reason is logged
once, and the child is tried again after `RETRY_S`. The writer thread waits for the child's
answer (waiting holds no GIL), so the files and their order stay the writer's alone.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

from gateway.capture.columns import Alike, alike_lines

logger = logging.getLogger("gateway.capture")

MIN_VALUES = 256
"""Numbers in a record (its inputs' and outputs' elements) from which the child encodes it."""
RETRY_S = 60.0
"""After the child failed, records are encoded here for this long before it is tried again."""
TIMEOUT_S = 30.0
"""Longest wait for one run's lines: past it the child is taken for stuck and replaced."""


def values_in(item: Alike) -> int:
    """The numbers one record holds."""
    return (sum(array.size for array in item[3].values())
            + sum(array.size for array in item[4].values()))


class ChildEncoder:
    """`alike_lines` in a child process, for runs worth shipping; None: encode them here."""

    def __init__(self, min_values: int = MIN_VALUES, retry_s: float = RETRY_S) -> None:
        self.min_values = min_values
        self.retry_s = retry_s
        self._pool: ProcessPoolExecutor | None = None
        self._retry_at = 0.0

    def lines(self, model: str, version: int, route: str, datatypes: Mapping[str, str],
              group: Sequence[Alike]) -> list[bytes] | None:
        """The run's lines made by the child, or None when they should be made here (small
        records, the child unavailable, or records `alike_lines` finds not alike after all)."""
        if values_in(group[0]) < self.min_values or time.monotonic() < self._retry_at:
            return None
        try:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(  # Ctrl-C reaches the child too: the
                    1, mp_context=multiprocessing.get_context("spawn"),  # gateway ends it
                    initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
            return self._pool.submit(alike_lines, model, version, route, dict(datatypes),
                                     list(group)).result(timeout=TIMEOUT_S)
        except Exception as exc:  # BrokenProcessPool, a timeout, an error of the run itself
            logger.warning("capture: the encoding process failed (%s); encoding here for "
                           "%g s", exc.__class__.__name__ + (f": {exc}" if str(exc) else ""),
                           self.retry_s)
            self._retry_at = time.monotonic() + self.retry_s
            self._drop_pool()
            return None

    def stop(self) -> None:
        """End the child (after the writer's last run)."""
        self._drop_pool(wait=True)

    def _drop_pool(self, wait: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not wait:  # a stuck child would outlive shutdown(): end it (the pool's own table)
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        pool.shutdown(wait=wait, cancel_futures=True)
