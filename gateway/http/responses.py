"""Responses in the shapes V2 clients expect: JSON bodies and `{"error": ...}` errors."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import ClientClosed, GatewayError

logger = logging.getLogger("gateway.http")

JSON = "application/json"


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, headers=headers, media_type=JSON)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    if exc.status == ClientClosed.status:
        logger.debug("%s %s: %s", request.method, request.url.path, exc.message)
    elif exc.status >= 500:
        logger.warning("%s %s: %s", request.method, request.url.path, exc.message)
    return error_response(exc.status, exc.message, exc.headers())


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such route) and 405 (wrong method), in the V2 error shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (f"no endpoint at {request.url.path[:200]}; see GET /v2 and "
                   "/v2/models/{model}/infer")
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path[:200]}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    """The last resort. Starlette runs it outside every middleware, so the request id the
    middleware gave the request is added here: a 500 is the answer most in need of one."""
    request_id = request.scope.get("state", {}).get("request_id")
    logger.exception("unexpected error on %s %s (request id %s)", request.method,
                     request.url.path, request_id)
    return error_response(500, "internal error in the gateway; see its log",
                          {"x-request-id": request_id} if request_id else None)


def openapi_route(document: dict[str, Any]) -> Route:
    """GET /openapi.json: the document, encoded once."""
    body = orjson.dumps(document)

    async def openapi(request: Request) -> Response:
        return Response(body, media_type=JSON)

    return Route("/openapi.json", openapi, methods=["GET"])
