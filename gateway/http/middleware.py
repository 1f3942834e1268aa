"""Plain ASGI middleware (no per-request objects beyond what the job needs)."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID = b"x-request-id"
access_logger = logging.getLogger("gateway.access")


class RequestMiddleware:
    """Echo the caller's `x-request-id` (or a new one) on every response and, with `access_log`,
    write one line per request: client, request line, status, milliseconds, request id and the
    trace id (`-` when the request was not traced)."""

    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = next((value[:128] for name, value in scope["headers"]
                           if name == _REQUEST_ID), None) or uuid.uuid4().hex.encode()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode("latin-1")
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (_REQUEST_ID, request_id)]
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
