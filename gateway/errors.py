"""One exception type per HTTP status the gateway answers with, each carrying a message for humans.

Errors are raised where the problem is found and rendered once, at the HTTP edge, in the V2 shape
`{"error": "<what was wrong and how to fix it>"}`.
"""

from __future__ import annotations

SHOWN_CHARS = 64
"""Most characters of a caller's own value an error message repeats."""


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A caller's value for an error message, quoted and cut to `limit` characters: a name
    sent by a caller can be megabytes long, and the message must not grow with it."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        return repr(text[:limit]) + "…"
    return repr(text)


class GatewayError(Exception):
    """Base of every error that becomes an HTTP answer."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(GatewayError):
    status = 400


class Unauthorized(GatewayError):
    status = 401

    def headers(self) -> dict[str, str]:
        return {"www-authenticate": "Bearer"}


class NotFound(GatewayError):
    status = 404


class PayloadTooLarge(GatewayError):
    status = 413


class Unavailable(GatewayError):
    """Not ready, or overloaded: the caller may retry after `retry_after_s` seconds."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)}


class QueueTimeout(GatewayError):
    """The request's deadline passed while it waited in the queue."""

    status = 504


class InferenceFailed(GatewayError):
    """onnxruntime raised on inputs that passed validation: the model's fault, not the caller's."""

    status = 500


class ClientClosed(GatewayError):
    """The client hung up before its request was read whole: not an error of the gateway.

    Counted under code 499 (nginx's "client closed request"), never 500; nobody reads the
    answer."""

    status = 499


class RequestTimeout(GatewayError):
    """The request's body did not arrive within `limits.body_timeout_s`."""

    status = 408


class ConfigError(Exception):
    """A config file or a model repository entry is invalid; the message says where and why."""


class PortTaken(OSError):
    """A port the server must listen on is another process's: `gateway serve` says so in one
    line and exits 3, as uvicorn does for a taken HTTP port."""
