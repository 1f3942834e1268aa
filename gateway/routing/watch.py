"""Watch the routing file's folder and call back on every change, plus once a second regardless.

The folder, not the file, is watched: an editor's save-by-rename replaces the file, and a
Kubernetes ConfigMap swaps the `..data` symlink beside it; both are events in the folder. The
callback re-reads the file and compares its hash, so extra calls cost a read. The once-a-second
call covers filesystems that send no events (some network and overlay mounts).

A file written in place (`echo > routing.yaml`, an editor that truncates and writes, a script)
is empty or half-written between its writer's calls; under load those calls can be far apart.
So a file modified less than SETTLE_S ago is left to settle before the callback reads it: a
pause of the writer shorter than that is never read as a rejected (or, worse, a valid but
partial) policy. A file still changing after SETTLE_BOUND_S is not read then: the writer's next
write, or the next poll, looks again, so the last edit is read SETTLE_S after its writer stops.
A modification time in the future (another machine's clock) cannot say when the file settles:
it is read after the bound.
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


async def settled(path: Path, quiet_s: float = SETTLE_S, bound_s: float = SETTLE_BOUND_S) -> bool:
    """True once `path` has not been modified for `quiet_s` (at once if it cannot be read: the
    callback says why); False when it was still being modified after `bound_s`. A modification
    time in the future counts as settled after `bound_s`."""
    give_up = time.monotonic() + bound_s
    last = None
    while True:
        try:
            mtime = (await asyncio.to_thread(path.stat)).st_mtime_ns
        except OSError:
            return True
        age = time.time() - mtime / 1e9
        if age >= quiet_s:
            return True
        if time.monotonic() >= give_up:
            return age < 0 and mtime == last  # future and unchanged: nothing better to wait for
        last = mtime
        await asyncio.sleep(min(quiet_s - age if age >= 0 else quiet_s,
                                max(give_up - time.monotonic(), 0.0) + 0.001))


async def watch_folder_of(path: Path, on_change: Callable[[], Awaitable[object]],
                          stop: asyncio.Event) -> None:
    """Call `on_change` after changes in `path`'s folder and at least once a second."""
    while not stop.is_set():
        try:
            async for _changes in watchfiles.awatch(
                    path.parent, watch_filter=None, debounce=DEBOUNCE_MS, step=25,
                    stop_event=stop, rust_timeout=POLL_MS, yield_on_timeout=True,
                    recursive=False):
                if await settled(path):
                    await on_change()
        except Exception:  # the folder vanished or the watcher failed: poll until it is back
            logger.exception("watching %s failed; polling it instead", path.parent)
            await on_change()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_MS / 1000)
