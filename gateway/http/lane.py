"""The inference lane: POST /v2/models/{m}[/versions/{v}]/infer from uvicorn straight to the
inference endpoint, past every layer another request goes through.

Another request goes through uvicorn's proxy-headers middleware, Starlette's error middleware
(which wraps `send` in a closure of its own), the request-id middleware (another closure), its
exception middleware and router. An inference request needs none of them: it is answered here
with the same answers (a GatewayError or HTTPException as its V2 error, anything else as the
last resort's 500, logged), the same `x-request-id` and the same access-log line. The proxy
headers only ever changed the client an access-log line names, so the lane reads them only when
the access log is on. Together these layers cost about a tenth of a one-row request's CPU.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.errors import GatewayError
from gateway.http.middleware import REQUEST_ID, RequestIds, access_logger
from gateway.http.paths import infer_path_params
from gateway.http.responses import error_response, on_gateway_error, on_http_exception

logger = logging.getLogger("gateway.http")

Infer = Callable[[Request], Awaitable[Response]]


def trusted_proxies() -> str:
    """The proxies whose X-Forwarded-For is believed: uvicorn's own default."""
    return os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


class InferLane:
    """One inference request, answered whole; `scope["path_params"]` is set by the caller."""

    def __init__(self, infer: Infer, access_log: bool, ids: RequestIds) -> None:
        self._infer = infer
        self._access_log = access_log
        self._ids = ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        request_id = next((value[:128] for name, value in scope["headers"]
                           if name == REQUEST_ID), None) or self._ids.next()
        # uvicorn's own state dict: the protocol may have marked the request refused already
        # (a bad chunk in the packet its headers came in), and the body reader looks there.
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode("latin-1")
        request = Request(scope, receive)
        status = 500  # what a request cancelled at shutdown is logged as, as uvicorn answers it
        try:
            try:
                response = await self._infer(request)
            except GatewayError as exc:
                response = await on_gateway_error(request, exc)
            except HTTPException as exc:
                response = await on_http_exception(request, exc)
            except Exception:
                logger.exception("unexpected error on %s %s (request id %s)", scope["method"],
                                 scope["path"], state["request_id"])
                response = error_response(500, "internal error in the gateway; see its log")
            status = response.status_code
            await send({"type": "http.response.start", "status": status,
                        "headers": [*response.raw_headers, (REQUEST_ID, request_id)]})
            await send({"type": "http.response.body", "body": response.body})
        finally:
            if self._access_log:
                client = scope.get("client")
                access_logger.info(
                    '%s "%s %s HTTP/%s" %d %.2fms request_id=%s trace_id=%s',
                    f"{client[0]}:{client[1]}" if client else "-", scope["method"],
                    scope["path"], scope["http_version"], status,
                    (time.perf_counter() - start) * 1e3, state["request_id"],
                    state.get("trace_id", "-"))


class GatewayApp(Starlette):
    """Starlette, with inference requests taken off at the door to `lane`. uvicorn runs it
    without its proxy-headers middleware: `proxy_headers()` goes in the middleware list instead,
    and the lane reads them itself when it logs."""

    lane: ASGIApp | None = None

    def use_lane(self, infer: Infer, access_log: bool, ids: RequestIds) -> None:
        lane: ASGIApp = InferLane(infer, access_log, ids)
        if access_log:  # the client a line names, as uvicorn would have rewritten it
            lane = ProxyHeadersMiddleware(  # type: ignore[assignment]  # uvicorn's ASGI types
                lane,  # type: ignore[arg-type]
                trusted_hosts=trusted_proxies())
        self.lane = lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.lane is not None:
            params = infer_path_params(scope["path"])
            if params is not None:
                scope["path_params"] = params
                await self.lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def proxy_headers() -> Middleware:
    """uvicorn's proxy-headers middleware with uvicorn's default trust, for every other request."""
    return Middleware(ProxyHeadersMiddleware, trusted_hosts=trusted_proxies())
