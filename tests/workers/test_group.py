"""A worker's group (gateway.workers.group): published state read back by peers from real files,
a peer whose file is removed (a dead worker) no longer counted, and no group outside a worker."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.workers import group as group_module
from gateway.workers.group import Group, current_group, state_file


def test_each_worker_reads_its_peers_state_and_not_its_own(tmp_path: Path) -> None:
    workers = [Group(tmp_path, i, os.getpid()) for i in range(3)]
    for i, worker in enumerate(workers):
        async def inflight(i: int = i) -> dict[str, int]:
            return {"m": i + 1}
        worker.add_source("inflight", inflight)
        asyncio.run(worker.publish())
    assert sorted(p["m"] for p in workers[0].peers("inflight")) == [2, 3]
    assert workers[0].peers("drift") == []
    state_file(tmp_path, 2).unlink()  # the supervisor forgets a dead worker's window
    assert [p["m"] for p in workers[0].peers("inflight")] == [2]


def test_a_publish_syncs_the_counter_mirrors_first(tmp_path: Path) -> None:
    group = Group(tmp_path, 0, os.getpid())
    synced: list[bool] = []
    group.add_counter_sync(lambda: synced.append(True))
    asyncio.run(group.publish())
    assert synced == [True]
    assert state_file(tmp_path, 0).exists()
    assert not list(tmp_path.glob("*.tmp"))  # written whole, then renamed


def test_a_process_the_supervisor_did_not_start_has_no_group(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(group_module.GROUP_VARIABLE, raising=False)
    monkeypatch.setattr(group_module, "_current", [])
    assert current_group() is None


def test_a_worker_keeps_its_share_of_a_window(tmp_path: Path) -> None:
    assert Group(tmp_path, 0, os.getpid(), size=2).window_share(5000) == 2500
    assert Group(tmp_path, 0, os.getpid(), size=3).window_share(5000) == 1667
    assert Group(tmp_path, 0, os.getpid(), size=8).window_share(3) == 1
