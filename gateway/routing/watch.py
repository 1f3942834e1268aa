"""Watch the routing file's folder and call back on every change, plus once a second regardless.

The folder, not the file, is watched: an editor's save-by-rename replaces the file, and a
Kubernetes ConfigMap swaps the `..data` symlink beside it; both are events in the folder. The
callback re-reads the file and compares its hash, so extra calls cost a read. The once-a-second
call covers filesystems that send no events (some network and overlay mounts).

A file written in place (`echo > routing.yaml`, an editor that truncates and writes, a script)
is empty or half-written between its writer's calls; under load those calls can be far apart.
So a file modified less than SETTLE_S ago is left to settle before the callback reads it: a
pause of the writer shorter than that is never read as a rejected (or, worse, a valid but
partial) policy. A writer still busy after the settling bound is read as it is then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import watchfiles

logger = logging.getLogger("gateway.routing")

POLL_MS = 1000
DEBOUNCE_MS = 50
SETTLE_S = 0.25
SETTLE_BOUND_S = 0.75  # with the poll's 1 s, an edit is still read within 2 s


async def settled(path: Path, quiet_s: float = SETTLE_S, bound_s: float = SETTLE_BOUND_S) -> None:
    """Return once `path` has not been modified for `quiet_s` (or after `bound_s`, or at once if
    it cannot be read: the callback says why)."""
    give_up = time.monotonic() + bound_s
    while True:
        try:
            age = time.time() - (await asyncio.to_thread(path.stat)).st_mtime
        except OSError:
            return
        wait = min(quiet_s - age, quiet_s)  # a time in the future: at most the bound
        if wait <= 0 or time.monotonic() + wait > give_up:
            return
        await asyncio.sleep(wait)


async def watch_folder_of(path: Path, on_change: Callable[[], Awaitable[object]],
                          stop: asyncio.Event) -> None:
    """Call `on_change` after changes in `path`'s folder and at least once a second."""
    while not stop.is_set():
        try:
            async for _changes in watchfiles.awatch(
                    path.parent, watch_filter=None, debounce=DEBOUNCE_MS, step=25,
                    stop_event=stop, rust_timeout=POLL_MS, yield_on_timeout=True,
                    recursive=False):
                await settled(path)
                await on_change()
        except Exception:  # the folder vanished or the watcher failed: poll until it is back
            logger.exception("watching %s failed; polling it instead", path.parent)
            await on_change()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_MS / 1000)
