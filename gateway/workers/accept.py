"""Accepting from the group's shared HTTP socket: the worker with the fewest connections takes
the next one.

Every worker watches the one listening socket; the kernel wakes them all when connections wait.
uvloop (libuv) accepts in a loop until none is left, so the first worker awake took every
connection of a burst: wrk's 8 connections, opened together, went 8 to 0 about one run in four,
and the group served at one worker's pace (5,439 req/s with 8 to 0 against 8,467 with 4 to 4,
measured by hand on 2 cores). Taking one connection per wake-up was not enough (7 to 1: the
first worker awake loops faster than the second wakes). So each worker keeps its count of open
connections in its slot of a small shared file (`connections`, one int64 per worker), and
accepts only while it has no more than the fewest of its peers; otherwise it looks again 1 ms
later (its peers, woken by the same readable socket, take the connection). A connection is
placed once; the requests on it cost nothing more.

A worker that does not accept must never hold connections back: its slot reads `NOT_ACCEPTING`
(the largest int64) while it starts (models loading), once it stops accepting (draining), and
after it dies (the supervisor writes it); and a connection left waiting `MAX_WAIT_S` (a peer
whose event loop is stuck) is taken by whoever looks next, whatever the counts.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

from gateway.workers.group import CONNECTIONS_FILE, NOT_ACCEPTING

logger = logging.getLogger("gateway.workers")


RETRY_S = 0.001
MAX_WAIT_S = 0.05


class ConnectionCounts:
    """This worker's slot and its peers' in the shared file."""

    def __init__(self, folder: Path, worker: int) -> None:
        with open(folder / CONNECTIONS_FILE, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), 0)
        self._counts = np.frombuffer(self._map, dtype=np.int64)
        self._worker = worker
        self.mine = 0
        self.accepting(False)  # until it serves: a restarted worker's old count is no more

    def accepting(self, accepting: bool) -> None:
        self._counts[self._worker] = self.mine if accepting else NOT_ACCEPTING
        self._accepting = accepting

    def change(self, by: int) -> None:
        self.mine += by
        if self._accepting:
            self._counts[self._worker] = self.mine

    def my_turn(self) -> bool:
        """No peer has fewer connections than this worker."""
        return self.mine <= int(self._counts.min())


class TurnTakingServer:
    """What uvicorn needs of an asyncio server (`close`, `wait_closed`, `sockets`) over a
    listening socket shared with other processes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Callable[[], asyncio.Protocol],
                 counts: ConnectionCounts | None) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = protocol_factory
        self._counts = counts
        self._pending: set[asyncio.Task[Any]] = set()
        self._waiting_since: float | None = None
        """When this worker first left a waiting connection to a peer."""
        sock.setblocking(False)
        self._serving = True
        if counts is not None:
            counts.accepting(True)
        self._watch()

    def _watch(self) -> None:
        if self._serving:
            self._loop.add_reader(self._sock.fileno(), self._accept_one)

    def _counted(self) -> asyncio.Protocol:
        """The app's protocol, its connection counted until it is lost."""
        protocol = self._factory()
        counts = self._counts
        if counts is not None:
            counts.change(+1)
            lost = protocol.connection_lost

            def connection_lost(exc: Exception | None) -> None:
                counts.change(-1)
                lost(exc)
            protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    def _accept_one(self) -> None:
        if self._counts is not None and not self._counts.my_turn():
            now = self._loop.time()
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since < MAX_WAIT_S:
                self._loop.remove_reader(self._sock.fileno())  # a peer's turn: look again
                self._loop.call_later(RETRY_S, self._watch)
                return
        self._waiting_since = None
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):  # a peer was faster: its connection
            return
        except OSError as exc:  # out of file descriptors, say: the peers take the connection
            logger.warning("accepting a connection failed: %s", exc)
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._counted, conn))
        self._pending.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("a new connection failed: %s", task.exception())

    def close(self) -> None:
        if self._serving:
            self._serving = False
            self._loop.remove_reader(self._sock.fileno())
            if self._counts is not None:
                self._counts.accepting(False)

    async def wait_closed(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class WorkerLoop(uvloop.Loop):
    """uvloop, serving a shared listening socket with a TurnTakingServer (`counts`: set by
    the worker before serving)."""

    counts: ConnectionCounts | None = None

    async def create_server(  # type: ignore[override]
            self, protocol_factory: Callable[[], asyncio.Protocol], *args: Any,
            sock: socket.socket | None = None, **kwargs: Any) -> Any:
        if sock is None or args:
            return await super().create_server(protocol_factory, *args, sock=sock, **kwargs)
        return TurnTakingServer(self, sock, protocol_factory, self.counts)
