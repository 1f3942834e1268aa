"""The routing folder's watcher in-process: a change in the folder calls back soon, nothing
calls back at least once a second, and a folder that vanishes and returns stops nothing."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

from gateway.routing.watch import POLL_MS, settled, watch_folder_of


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


def test_a_file_written_in_place_by_a_slow_writer_is_read_whole(tmp_path: Path) -> None:
    """An in-place writer truncates, then writes; a pause between the two (a loaded machine, a
    script) showed the callback an empty file, which a gateway rejects and counts as a failed
    reload (a fresh clone's CI run saw one worker log a third rejection this way)."""
    folder = tmp_path / "config"
    folder.mkdir()
    routing = folder / "routing.yaml"
    routing.write_text("models: {}\n")
    seen: list[str] = []

    async def on_change() -> None:
        seen.append(routing.read_text())

    async def scenario() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_folder_of(routing, on_change, stop))
        try:
            await asyncio.sleep(0.3)
            for text in ("models: {a: 1}\n", "models: {b: 2}\n"):
                with routing.open("w") as file:  # truncated: the folder sees a change
                    file.flush()
                    await asyncio.sleep(0.1)  # the writer paused, as a loaded machine pauses it
                    file.write(text)
                await _until(lambda t=text: t in seen, POLL_MS / 1000 * 2)
        finally:
            stop.set()
            await asyncio.wait_for(watcher, 5)
        assert "" not in seen, seen

    asyncio.run(scenario())


def test_a_file_that_keeps_changing_is_not_read_until_it_settles(tmp_path: Path) -> None:
    """A writer still writing after the bound: not settled (before, it was read as it then
    was: a half file applied or rejected); a clock ahead of this one, or a file settled long
    ago: settled."""
    routing = tmp_path / "routing.yaml"
    routing.write_text("models: {}\n")

    async def busy_writer_and_settled() -> bool:
        stop = asyncio.Event()

        async def write() -> None:
            while not stop.is_set():
                routing.write_text("models: {}\n")
                await asyncio.sleep(0.02)
        writer = asyncio.create_task(write())
        try:
            return await settled(routing, quiet_s=0.1, bound_s=0.3)
        finally:
            stop.set()
            await writer

    assert asyncio.run(busy_writer_and_settled()) is False
    future = time.time() + 3600
    os.utime(routing, (future, future))
    assert asyncio.run(settled(routing, quiet_s=0.1, bound_s=0.2)) is True
    os.utime(routing, (time.time() - 10, time.time() - 10))
    assert asyncio.run(settled(routing)) is True
    assert asyncio.run(settled(tmp_path / "gone.yaml")) is True  # the callback says why


def test_a_writer_that_never_pauses_long_has_only_its_last_edit_read(tmp_path: Path) -> None:
    """Edits every 60 ms, each truncating, pausing 40 ms and writing: no half file is read,
    and the last edit is read once the writer stops."""
    folder = tmp_path / "config"
    folder.mkdir()
    routing = folder / "routing.yaml"
    routing.write_text("models: {}\n")
    seen: list[str] = []

    async def on_change() -> None:
        seen.append(routing.read_text())

    async def scenario() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_folder_of(routing, on_change, stop))
        try:
            await asyncio.sleep(0.3)
            for edit in range(30):
                with routing.open("w") as file:
                    file.flush()
                    await asyncio.sleep(0.04)
                    file.write(f"models: {{edit: {edit}}}\n")
                await asyncio.sleep(0.02)
            await _until(lambda: "models: {edit: 29}\n" in seen, POLL_MS / 1000 * 3)
        finally:
            stop.set()
            await asyncio.wait_for(watcher, 5)
        assert "" not in seen, seen
        assert all(text.startswith("models: {") and text.endswith("}\n") for text in seen)

    asyncio.run(scenario())
