"""The routing folder's watcher in-process: a change in the folder calls back soon, nothing
calls back at least once a second, and a folder that vanishes and returns stops nothing."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from gateway.routing.watch import POLL_MS, watch_folder_of


def test_changes_and_the_poll_call_back_and_a_vanished_folder_is_survived(
        tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    routing = folder / "routing.yaml"
    routing.write_text("models: {}\n")
    calls: list[float] = []

    async def on_change() -> None:
        calls.append(time.monotonic())

    async def scenario() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_folder_of(routing, on_change, stop))
        try:
            await asyncio.sleep(0.3)
            before = len(calls)
            routing.write_text("models: {a: 1}\n")  # an edit: called back well before the poll
            await _until(lambda: len(calls) > before, POLL_MS / 1000 * 0.8)
            before = len(calls)
            await _until(lambda: len(calls) > before, POLL_MS / 1000 * 2.5)  # quiet: the poll
            shutil.rmtree(folder)
            await asyncio.sleep(POLL_MS / 1000 * 1.5)
            assert not watcher.done()  # still watching (polling) the vanished folder
            folder.mkdir()
            routing.write_text("models: {}\n")
            before = len(calls)
            await _until(lambda: len(calls) > before, POLL_MS / 1000 * 3)
        finally:
            stop.set()
            await asyncio.wait_for(watcher, 5)

    asyncio.run(scenario())


async def _until(condition: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"no call back within {timeout_s:.1f} s"
        await asyncio.sleep(0.01)
