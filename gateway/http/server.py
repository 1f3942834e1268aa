"""uvicorn's httptools protocol with the two bounds it lacks: header size and read time.

uvicorn with httptools accepts headers of any size (a 32 MiB header cost 64 MB of memory) and
waits forever for a body that stalls (20 connections each stalled after 7 MiB held 113 MB for
as long as they liked). Both are decided here, in the protocol, because by the time the ASGI app
sees a request its headers are already in memory. The bounds cost the usual request nothing: a
request that arrives whole in one read arms no timer, and counting header bytes is an addition
per read.

- Header bytes are counted per read while a request's headers are incomplete; past
  `limits.max_header_bytes` the answer is 431 and the connection is closed. Memory is bounded by
  the limit plus one read (uvloop reads at most 256 KiB).
- A request still incomplete after a read gets a deadline, `limits.read_timeout_s` from then;
  one sweep per event loop, once a second while any request is incomplete, answers those past
  their deadline with 408 and closes their connections (so a deadline holds to within a second).
  A timer per request cost 16 µs of server CPU on a 32-row JSON request that arrives in several
  reads (wrk, 8 connections, medians of five alternating runs). The app, if it was reading the
  body, sees the client go and counts the request under code 408 (`READ_TIMED_OUT` in the
  request's state).
- A connection that sends nothing at all is closed after uvicorn's keep-alive timeout, as a
  kept-alive connection idle between requests is (uvicorn arms that timer only after a response:
  3,000 silent sockets were held for as long as they liked, each a file descriptor).
- A request that is not valid HTTP/1.1 gets its 400 in the V2 error shape, not uvicorn's plain
  text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import LimitSettings

logger = logging.getLogger("gateway.http")

REFUSED = "refused_by_protocol"
"""Key in the ASGI scope's `state`: the status the protocol answered mid-body (400 or 408)."""

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_SWEEP_S = 1.0


class _Deadlines:
    """The read deadlines of one event loop's incomplete requests, swept once a second."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: dict[BoundedHttpToolsProtocol, float] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None

    def add(self, protocol: BoundedHttpToolsProtocol, timeout_s: float) -> None:
        self._pending[protocol] = self.loop.time() + timeout_s
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(_SWEEP_S, self._sweep)

    def discard(self, protocol: BoundedHttpToolsProtocol) -> None:
        self._pending.pop(protocol, None)

    def _sweep(self) -> None:
        now = self.loop.time()
        late = [p for p, deadline in self._pending.items() if deadline <= now]
        for protocol in late:
            del self._pending[protocol]
            try:
                protocol.read_timed_out()
            except Exception:  # one connection's failure must not end the sweep for all
                logger.exception("refusing a request past its read deadline failed")
        self._sweep_handle = (self.loop.call_later(_SWEEP_S, self._sweep) if self._pending
                              else None)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = LimitSettings.max_header_bytes
    read_timeout_s = LimitSettings.read_timeout_s
    deadlines: _Deadlines | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_headers = True
        self._header_bytes = 0
        self._incomplete = False
        """Between a request's first byte and its last (headers and body)."""
        self._waiting = False
        """A read deadline is set for the current request."""
        cls = type(self)
        if cls.deadlines is None or cls.deadlines.loop is not self.loop:
            cls.deadlines = _Deadlines(self.loop)  # one per server (its class) and loop
        self._deadlines = cls.deadlines

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            self._header_bytes += len(data)
        self._incomplete = True
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._reading_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(431, f"the request's headers are over the {self.max_header_bytes}-byte "
                              "limit (limits.max_header_bytes)")
        elif self._incomplete and not self._waiting:
            self._waiting = True
            self._deadlines.add(self, self.read_timeout_s)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._incomplete = True

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._header_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_headers = True
        self._incomplete = False
        if self._waiting:
            self._waiting = False
            self._deadlines.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiting:
            self._waiting = False
            self._deadlines.discard(self)
        super().connection_lost(exc)

    def read_timed_out(self) -> None:
        """Past the read deadline (called by the loop's sweep)."""
        self._waiting = False
        if self.transport.is_closing() or not self._incomplete:
            return
        self._refuse(408, f"the request did not arrive whole within {self.read_timeout_s:g} s "
                          "(limits.read_timeout_s); send it again")

    def send_400_response(self, msg: str) -> None:
        """httptools could not parse the request (uvicorn has logged it)."""
        self._refuse(400, "the request is not valid HTTP/1.1 (its request line, a header or a "
                          "chunk of the body could not be parsed)")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` in the V2 error shape and close the connection."""
        logger.info("%s from %s: %s", status, self.client, message)
        if not self._reading_headers and self.scope is not None:
            self.scope["state"][REFUSED] = status
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            body = orjson.dumps({"error": message})
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body))
        if cycle is not None and not cycle.response_complete:
            # At once, not at connection_lost: the app's own answer must not follow ours, and
            # its read of the body ends now.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def bounded_protocol(limits: LimitSettings) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with these limits."""
    return type("GatewayHttpProtocol", (BoundedHttpToolsProtocol,),
                {"max_header_bytes": limits.max_header_bytes,
                 "read_timeout_s": limits.read_timeout_s})
