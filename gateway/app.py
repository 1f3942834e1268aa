"""create_app(settings) -> Starlette: wiring only; every object is made here and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from gateway.batching.batcher import RunFunction
from gateway.deployments import Deployments, needed_versions
from gateway.errors import GatewayError
from gateway.http.admin import Admin
from gateway.http.endpoints import Endpoints
from gateway.http.middleware import RequestMiddleware
from gateway.http.openapi import openapi_document
from gateway.http.responses import (
    on_gateway_error,
    on_http_exception,
    on_unexpected_error,
    openapi_route,
)
from gateway.inference import InferencePipeline
from gateway.observability.drift.service import DriftService
from gateway.observability.feedback import FeedbackService
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.shadow import ShadowRunner, ShadowTarget
from gateway.observability.tracing import Tracing
from gateway.routing.live import LivePolicy, read_policy_file
from gateway.routing.policy import Policy, parse_policy
from gateway.routing.watch import watch_folder_of
from gateway.runtime.repository import Repository, scan_repository
from gateway.settings import Settings
from gateway.tensors import Tensors

logger = logging.getLogger("gateway")
ADMIN_TOKEN_VARIABLE = "GATEWAY_ADMIN_TOKEN"


@dataclass
class Gateway:
    """Everything one gateway instance owns; two can live in one process."""

    settings: Settings
    repository: Repository
    policy: Policy
    deployments: Deployments
    skipped: list[str]
    """Folders of the repository that are neither a model nor a version, and why."""


def build_gateway(settings: Settings, metrics: GatewayMetrics | None = None) -> Gateway:
    """Scan the repository and read the policy; models load at start-up (see `create_app`)."""
    skipped: list[str] = []
    repository = scan_repository(settings.model_repository, skipped)
    for note in skipped:
        logger.warning("model repository %s: %s", settings.model_repository, note)
    policy = parse_policy(read_policy_file(settings.routing), repository)
    deployments = Deployments(settings, repository,
                              metrics.batch_observer if metrics is not None else None)
    return Gateway(settings, repository, policy, deployments, skipped)


def _shadow_target(deployments: Deployments) -> ShadowTarget:
    def target(model: str, version: int) -> tuple[RunFunction, str | None] | None:
        found = deployments.versions_of(model).get(version)
        if found is None:
            return None  # unloaded since it was queued: the policy no longer names it
        if found.session is None:
            error = found.error or "not loaded"

            def failed(inputs: Tensors) -> Tensors:
                raise RuntimeError(error)
            return failed, None
        return found.session.run, found.label_output
    return target


def create_app(settings: Settings, admin_token: str | None = None) -> Starlette:
    """The ASGI app; `admin_token` defaults to env GATEWAY_ADMIN_TOKEN (no token: no admin)."""
    metrics = GatewayMetrics()
    gateway = build_gateway(settings, metrics)
    deployments = gateway.deployments
    metrics.count_inflight(deployments.inflight_by_model)
    tracing = Tracing(settings.tracing.service_name)
    shadow = ShadowRunner(_shadow_target(deployments), metrics.count_shadow,
                          tracer=tracing.tracer)
    drift = DriftService(settings.drift)
    metrics.registry.register(drift.collector())
    feedback = FeedbackService(settings.drift.window_rows)
    metrics.registry.register(feedback.collector(drift.threshold))

    def track_served_versions() -> None:
        drift.sync({(d.entry.model, d.entry.version): (d.entry.reference_file, d.session.inputs)
                    for d in deployments.all() if d.session is not None})
        feedback.sync(deployments.repository)

    live = LivePolicy(settings.routing, settings.model_repository, gateway.policy, deployments,
                      metrics, on_applied=track_served_versions)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(deployments.load,
                                needed_versions(gateway.policy, gateway.repository))
        deployments.start_batchers()
        for problem in deployments.problems():
            logger.error("not serving %s", problem)
        live.publish()
        shadow.start()
        drift.start()
        # What start-up made (sessions, modules, tables) lives as long as the process: freezing
        # it keeps the collector's full passes from walking it again and again under load.
        gc.freeze()
        stop = asyncio.Event()
        watcher = asyncio.create_task(
            watch_folder_of(settings.routing, live.reload, stop), name="watch")
        try:
            yield
        finally:
            stop.set()
            await watcher
            await shadow.stop()
            await drift.stop()
            await live.stop()
            await deployments.stop()
            await asyncio.to_thread(tracing.shutdown)

    pipeline = InferencePipeline(deployments, live, drift, shadow)
    routes: list[BaseRoute] = list(Endpoints(deployments, live, pipeline, metrics, drift,
                                             tracing, feedback).routes())
    token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_VARIABLE)
    if token:
        routes += Admin(live, token).routes()
    routes.append(openapi_route(openapi_document(admin=bool(token))))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestMiddleware, access_log=settings.server.access_log)],
        exception_handlers={GatewayError: on_gateway_error, HTTPException: on_http_exception,
                            Exception: on_unexpected_error},
        lifespan=lifespan,
    )
    return app
