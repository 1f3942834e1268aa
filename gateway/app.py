"""create_app(settings) -> Starlette: wiring only; every object is made here and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
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
    executor: ThreadPoolExecutor


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
    executor = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1),
                                  thread_name_prefix="gateway-infer")
    return Gateway(settings, repository, policy, Deployments(settings, repository, executor),
                   executor)


def create_app(settings: Settings) -> Starlette:
    gateway = build_gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(gateway.executor, gateway.deployments.load,
                                   needed_versions(gateway.policy, gateway.repository))
        gateway.deployments.start_batchers()
        for problem in gateway.deployments.problems():
            logger.error("not serving %s", problem)
        try:
            yield
        finally:
            await gateway.deployments.stop()
            gateway.executor.shutdown(wait=True)

    app = Starlette(
        routes=Endpoints(gateway.deployments).routes(),
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={GatewayError: on_gateway_error, HTTPException: on_http_exception,
                            Exception: on_unexpected_error},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
