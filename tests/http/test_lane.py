"""The inference lane in process: what Starlette's error middleware and the request-id
middleware did for an inference request, it does itself (tests/integration runs it in the
gateway's process: every inference test goes through it)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import NotFound
from gateway.http.lane import InferLane
from gateway.http.middleware import RequestIds


def _scope(request_id: bytes | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1")]
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    path = "/v2/models/m/infer"
    return {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000), "path_params": {"model": "m"}}


def _call(lane: InferLane, request_id: bytes | None) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(lane(_scope(request_id), receive, send))
    start, body = sent
    headers = start["headers"]
    assert len({name for name, _ in headers}) == len(headers), headers  # each header once
    return start["status"], dict(headers), body["body"]


def test_a_bug_in_inference_is_a_logged_500_in_the_v2_shape_with_the_request_id(
        caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    async def infer(request: Request) -> Response:
        calls.append(request.scope["state"]["request_id"])
        if len(calls) == 1:
            raise KeyError("a bug")
        if len(calls) == 2:
            raise NotFound("model 'm' is not in the repository")
        return Response(b'{"ok":1}', headers={"x-model-version": "1"})

    lane = InferLane(infer, access_log=True, ids=RequestIds())
    with caplog.at_level(logging.INFO):
        status, headers, body = _call(lane, b"trace-me")
        assert (status, headers[b"x-request-id"], body) == (
            500, b"trace-me", b'{"error":"internal error in the gateway; see its log"}')
        bug = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(bug) == 1 and "request id trace-me" in bug[0].getMessage()
        assert bug[0].exc_info is not None and bug[0].exc_info[0] is KeyError
        status, headers, body = _call(lane, None)  # the next request is served as ever
        assert status == 404 and len(headers[b"x-request-id"]) == 32
        assert body == b'{"error":"model \'m\' is not in the repository"}'
        status, headers, body = _call(lane, b"x" * 500)  # an id is kept to 128 bytes
        assert (status, headers[b"x-request-id"], headers[b"x-model-version"]) == (
            200, b"x" * 128, b"1")
    access = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert [line.split('" ')[1].split(" ")[0] for line in access] == ["500", "404", "200"]
    assert access[0].startswith('127.0.0.1:50000 "POST /v2/models/m/infer HTTP/1.1" 500 ')
    assert "request_id=trace-me trace_id=-" in access[0]


def test_a_request_cancelled_at_shutdown_still_has_its_access_line(
        caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn cancels what is still running past the shutdown grace: the line is written as
    the request-id middleware wrote it before the lane (status 500, what uvicorn answers)."""
    async def infer(request: Request) -> Response:
        raise asyncio.CancelledError

    lane = InferLane(infer, access_log=True, ids=RequestIds())
    with caplog.at_level(logging.INFO), pytest.raises(asyncio.CancelledError):
        _call(lane, b"stalled-1")
    access = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert len(access) == 1 and '"POST /v2/models/m/infer HTTP/1.1" 500 ' in access[0]
    assert "request_id=stalled-1" in access[0]
