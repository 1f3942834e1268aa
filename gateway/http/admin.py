"""Admin endpoints: the effective routing policy and a forced reload (SPEC section 3).

They exist only when GATEWAY_ADMIN_TOKEN is set (else every path answers 404, as unknown paths
do) and need `Authorization: Bearer <token>`, compared in constant time.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import BadRequest, Unauthorized
from gateway.http.responses import json_response
from gateway.routing.live import LivePolicy
from gateway.routing.policy import describe_policy


class Admin:
    def __init__(self, live: LivePolicy, token: str) -> None:
        self.live = live
        self._token = token.encode()

    def routes(self) -> list[Route]:
        return [Route("/admin/routing", self.routing, methods=["GET"]),
                Route("/admin/reload", self.reload, methods=["POST"])]

    def _authorize(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 self._token):
            raise Unauthorized("admin endpoints need 'Authorization: Bearer <token>' with the "
                               "token in GATEWAY_ADMIN_TOKEN")

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
