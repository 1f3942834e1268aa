"""Plain ASGI middleware (no per-request objects beyond what the job needs)."""

from __future__ import annotations

import itertools
import logging
import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = b"x-request-id"
access_logger = logging.getLogger("gateway.access")


class RequestIds:
    """New request ids: 32 hex digits, as a UUID's, made of a random per-process prefix and a
    counter. Unique within the process and, by the 64 random bits, across replicas; made with
    one format instead of a uuid4 (a system call and an object per request)."""

    def __init__(self) -> None:
        self._prefix = int.from_bytes(os.urandom(8), "big")
        self._counter = itertools.count()

    def next(self) -> bytes:
        return b"%016x%016x" % (self._prefix, next(self._counter) & 0xFFFF_FFFF_FFFF_FFFF)


class RequestMiddleware:
    """Echo the caller's `x-request-id` (or a new one) on every response and, with `access_log`,
    write one line per request: client, request line, status, milliseconds, request id and the
    trace id (`-` when the request was not traced)."""

    def __init__(self, app: ASGIApp, access_log: bool = False,
                 ids: RequestIds | None = None) -> None:
        self.app = app
        self.access_log = access_log
        self._ids = ids or RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = next((value[:128] for name, value in scope["headers"]
                           if name == REQUEST_ID), None) or self._ids.next()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode("latin-1")
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID, request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log:
                client = scope.get("client")
                access_logger.info(
                    '%s "%s %s HTTP/%s" %d %.2fms request_id=%s trace_id=%s',
                    f"{client[0]}:{client[1]}" if client else "-", scope["method"],
                    scope["path"], scope["http_version"], status[0],
                    (time.perf_counter() - start) * 1e3, state["request_id"],
                    state.get("trace_id", "-"))
