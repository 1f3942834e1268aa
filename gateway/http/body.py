"""Read a request body under a size limit; refuse early when Content-Length says too much.

A client that hangs up mid-body is no error of the gateway: ClientClosed (code 499), logged at
DEBUG. A body the protocol timed out (gateway.http.server) is RequestTimeout (408), one it
could not parse is BadRequest (400)."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from gateway.errors import BadRequest, ClientClosed, PayloadTooLarge, RequestTimeout
from gateway.http.server import REFUSED


def _too_large(size: int | str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body of {size} bytes is over the {limit}-byte limit "
                           "(limits.max_body_bytes); send fewer rows per request")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length must be a number of bytes")
        if int(declared) > limit:
            raise _too_large(declared, limit)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        raise BadRequest(f"Content-Encoding {encoding[:20]!r} is not supported; send the body "
                         "uncompressed")
    chunks: list[bytes] = []
    size = 0
    receive = request.receive  # the ASGI messages themselves: Request.stream()'s generator
    try:  # cost more than the read for a body that comes in one message
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(f"more than {limit}", limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except ClientDisconnect:
        refused = request.scope["state"].get(REFUSED)
        if refused == 408:
            raise RequestTimeout("the request body did not arrive in time "
                                 "(limits.read_timeout_s)") from None
        if refused == 400:
            raise BadRequest("the request body is not valid HTTP/1.1 chunked data") from None
        raise ClientClosed(f"the client closed the connection after {size} bytes of the "
                           "request body") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
