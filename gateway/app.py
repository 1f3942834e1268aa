"""create_app(settings) -> Starlette: wiring only; every object is made here and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from gateway.deployments import Deployments, needed_versions
from gateway.errors import GatewayError
from gateway.http.endpoints import Endpoints
from gateway.http.middleware import RequestIdMiddleware
from gateway.http.responses import on_gateway_error, on_http_exception, on_unexpected_error
from gateway.routing.policy import Policy, PolicyError, parse_policy
from gateway.runtime.repository import Repository, scan_repository
from gateway.settings import Settings

logger = logging.getLogger("gateway")


@dataclass
class Gateway:
    """Everything one gateway instance owns; two can live in one process."""

    settings: Settings
    repository: Repository
    policy: Policy
    deployments: Deployments


def read_policy(settings: Settings, repository: Repository) -> Policy:
    """The routing policy from its file; ConfigError (PolicyError) when missing or invalid."""
    try:
        text = settings.routing.read_text()
    except OSError as exc:
        raise PolicyError(f"{settings.routing}: cannot read the routing policy "
                          f"({exc.strerror})") from exc
    return parse_policy(text, repository)


def build_gateway(settings: Settings) -> Gateway:
    """Scan the repository and read the policy; models load at start-up (see `create_app`)."""
    repository = scan_repository(settings.model_repository)
    policy = read_policy(settings, repository)
    return Gateway(settings, repository, policy, Deployments(settings, repository))


def create_app(settings: Settings) -> Starlette:
    gateway = build_gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(gateway.deployments.load,
                                needed_versions(gateway.policy, gateway.repository))
        gateway.deployments.start_batchers()
        for problem in gateway.deployments.problems():
            logger.error("not serving %s", problem)
        try:
            yield
        finally:
            await gateway.deployments.stop()

    app = Starlette(
        routes=Endpoints(gateway.deployments).routes(),
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={GatewayError: on_gateway_error, HTTPException: on_http_exception,
                            Exception: on_unexpected_error},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
