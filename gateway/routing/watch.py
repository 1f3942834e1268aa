"""Watch the routing file's folder and call back on every change, plus once a second regardless.

The folder, not the file, is watched: an editor's save-by-rename replaces the file, and a
Kubernetes ConfigMap swaps the `..data` symlink beside it; both are events in the folder. The
callback re-reads the file and compares its hash, so extra calls cost a read. The once-a-second
call covers filesystems that send no events (some network and overlay mounts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import watchfiles

logger = logging.getLogger("gateway.routing")

POLL_MS = 1000
DEBOUNCE_MS = 50


async def watch_folder_of(path: Path, on_change: Callable[[], Awaitable[object]],
                          stop: asyncio.Event) -> None:
    """Call `on_change` after changes in `path`'s folder and at least once a second."""
    while not stop.is_set():
        try:
            async for _changes in watchfiles.awatch(
                    path.parent, watch_filter=None, debounce=DEBOUNCE_MS, step=25,
                    stop_event=stop, rust_timeout=POLL_MS, yield_on_timeout=True,
                    recursive=False):
                await on_change()
        except Exception:  # the folder vanished or the watcher failed: poll until it is back
            logger.exception("watching %s failed; polling it instead", path.parent)
            await on_change()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_MS / 1000)
