"""Admin endpoints: the effective routing policy and a forced reload (docs/endpoints.md).

They work only when GATEWAY_ADMIN_TOKEN is set and need `Authorization: Bearer <token>`, compared
in constant time. Without a token they answer 404, as unknown paths do, but say how to turn them
on: a person following an example should not have to guess why it is not found.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import BadRequest, NotFound, Unauthorized
from gateway.http.responses import json_response
from gateway.routing.live import LivePolicy
from gateway.routing.policy import describe_policy

TOKEN_VARIABLE = "GATEWAY_ADMIN_TOKEN"

OFF = (f"admin endpoints are off: set {TOKEN_VARIABLE} to a secret in the gateway's environment "
       f"before starting it (e.g. {TOKEN_VARIABLE}=$(openssl rand -hex 16) make serve), then send "
       "it as 'Authorization: Bearer <the secret>'")


class Admin:
    def __init__(self, live: LivePolicy, token: str | None) -> None:
        """No token (None or empty): the endpoints are off and answer 404 with how to enable
        them."""
        self.live = live
        self._token = (token or "").encode()

    def routes(self) -> list[Route]:
        if not self._token:
            return [Route("/admin/routing", self.off, methods=["GET"]),
                    Route("/admin/reload", self.off, methods=["POST"])]
        return [Route("/admin/routing", self.routing, methods=["GET"]),
                Route("/admin/reload", self.reload, methods=["POST"])]

    async def off(self, request: Request) -> Response:
        raise NotFound(f"no endpoint at {request.url.path}: {OFF}")

    def _authorize(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 self._token):
            raise Unauthorized("admin endpoints need 'Authorization: Bearer <token>' with the "
                               f"token in {TOKEN_VARIABLE}")

    def _state(self) -> dict[str, object]:
        policy = self.live.policy
        return {"source": str(self.live.path), "source_sha256": policy.source_sha256,
                "policy": describe_policy(policy),
                "last_reload": self.live.last_reload.to_json()}

    async def routing(self, request: Request) -> Response:
        self._authorize(request)
        return json_response(self._state())

    async def reload(self, request: Request) -> Response:
        self._authorize(request)
        result = await self.live.reload(force=True)
        if result.result == "error":
            raise BadRequest(f"routing policy rejected, the previous one keeps serving: "
                             f"{result.message}")
        return json_response(self._state())
