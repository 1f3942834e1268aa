"""create_app(settings) -> Starlette: wiring only; every object is made here and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from gateway.capture.service import make_capture
from gateway.errors import GatewayError
from gateway.http.admin import Admin
from gateway.http.endpoints import Endpoints
from gateway.http.lane import GatewayApp, proxy_headers
from gateway.http.middleware import RequestIds, RequestMiddleware
from gateway.http.openapi import openapi_document
from gateway.http.responses import (
    on_gateway_error,
    on_http_exception,
    on_unexpected_error,
    openapi_route,
)
from gateway.inference import InferencePipeline
from gateway.lifecycle import Lifecycle
from gateway.observability.drift.service import DriftService
from gateway.observability.feedback import FeedbackService
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.shadow import ShadowRunner, ShadowTarget, ShadowVersion
from gateway.observability.tracing import Tracing
from gateway.routing.live import LivePolicy, read_policy_file
from gateway.routing.policy import needed_versions, parse_policy
from gateway.routing.watch import watch_folder_of
from gateway.runtime.registry import Registry
from gateway.runtime.repository import scan_repository
from gateway.settings import Settings
from gateway.tensors import Tensors

logger = logging.getLogger("gateway")
ADMIN_TOKEN_VARIABLE = "GATEWAY_ADMIN_TOKEN"


def _shadow_target(registry: Registry) -> ShadowTarget:
    def target(model: str, version: int) -> ShadowVersion | None:
        found = registry.versions_of(model).get(version)
        if found is None:
            return None  # unloaded since it was queued: the policy no longer names it
        if found.session is None:
            error = found.error or "not loaded"

            def failed(inputs: Tensors) -> Tensors:
                raise RuntimeError(error)
            return ShadowVersion(failed, None, batchable=False)
        return ShadowVersion(found.session.run, found.label_output, found.session.batchable)
    return target


class Gateway:
    """Everything one gateway instance owns, made here and run by `start` / `stop` (read as
    uvicorn's startup, main loop and shutdown); two can live in one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.skipped: list[str] = []
        """Folders of the repository that are neither a model nor a version, and why."""
        repository = scan_repository(settings.model_repository, self.skipped)
        for note in self.skipped:
            logger.warning("model repository %s: %s", settings.model_repository, note)
        policy = parse_policy(read_policy_file(settings.routing), repository)
        self.metrics = metrics = GatewayMetrics()
        self.registry = registry = Registry(repository)
        self.lifecycle = Lifecycle(settings, registry, metrics.batch_observer)
        metrics.count_inflight(registry.inflight_by_model)
        self.tracing = Tracing(settings.tracing.service_name)
        self.drift = DriftService(settings.drift)
        self.shadow = ShadowRunner(_shadow_target(registry), metrics.count_shadow,
                                   tracer=self.tracing.tracer, observe=self.drift.observe,
                                   count_rows=metrics.count_shadow_rows)
        metrics.registry.register(self.drift.collector())
        self.feedback = FeedbackService(settings.drift.window_rows)
        metrics.registry.register(self.feedback.collector(self.drift.rule))
        self.live = LivePolicy(settings.routing, settings.model_repository, policy, self.lifecycle,
                               metrics, on_applied=self._track_served_versions)
        self.capture = make_capture(settings.capture, metrics.registry)
        for model in sorted(set(settings.capture.redact) - set(repository)):
            logger.warning("capture.redact names model %r, which the repository does not have",
                           model)
        self.pipeline = InferencePipeline(registry, settings, self.live, self.drift, self.shadow,
                                          metrics, self.capture)
        self._stop_watching = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Load every version the policy in force needs (blocking: off the event loop)."""
        self.lifecycle.load(needed_versions(self.live.policy, self.registry.repository))

    async def start(self) -> None:
        """Load, start the batchers and the background workers, and watch the routing file."""
        await asyncio.to_thread(self.load)
        self.lifecycle.start_batchers()
        for problem in self.registry.problems():
            logger.error("not serving %s", problem)
        self.live.publish()
        self.shadow.start()
        self.drift.start()
        self.capture.start()
        # What start-up made (sessions, modules, tables) lives as long as the process: freezing
        # it keeps the collector's full passes from walking it again and again under load.
        gc.freeze()
        self._watcher = asyncio.create_task(
            watch_folder_of(self.settings.routing, self.live.reload, self._stop_watching),
            name="watch")

    async def stop(self) -> None:
        """In order: stop watching, end the workers, unload, finish queued requests, flush spans."""
        self._stop_watching.set()
        if self._watcher is not None:
            await self._watcher
        await self.shadow.stop()
        await self.drift.stop()
        await self.live.stop()
        await self.lifecycle.stop()
        await asyncio.to_thread(self.capture.stop)  # after the last answer: it is kept too
        await asyncio.to_thread(self.tracing.shutdown)

    def _track_served_versions(self) -> None:
        self.drift.sync({(d.entry.model, d.entry.version): (d.entry.reference_file,
                                                            d.session.inputs)
                         for d in self.registry.all() if d.session is not None})
        self.feedback.sync(self.registry.repository)


def create_app(settings: Settings, admin_token: str | None = None, grpc_host: str = "",
               grpc_port: int = 0) -> Starlette:
    """The ASGI app; `admin_token` defaults to env GATEWAY_ADMIN_TOKEN (no token: no admin).
    With `grpc_port` (`gateway serve` passes server.grpc_port) the gRPC API is served too, on
    the same event loop, started and stopped with the app (0: no gRPC, as in-process apps)."""
    gateway = Gateway(settings)
    grpc_server = None
    if grpc_port:
        from gateway.grpc.server import GrpcServer, ensure_port_free
        from gateway.grpc.service import InferenceService
        from gateway.workers.group import current_group

        if current_group() is None:  # a worker's port is its supervisor's, shared on purpose
            ensure_port_free(grpc_host or settings.server.host, grpc_port)

        grpc_server = GrpcServer(
            InferenceService(gateway.registry, settings.limits, gateway.live, gateway.pipeline,
                             gateway.tracing, settings.server.access_log),
            settings, grpc_host or settings.server.host, grpc_port,
            reuse_port=current_group() is not None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            if grpc_server is not None:
                await grpc_server.start()
                grpc_server.drain_on_signals()
            yield
        finally:
            if grpc_server is not None:  # draining since the signal; the calls finish
                await grpc_server.stop()
            await gateway.stop()

    endpoints = Endpoints(gateway.registry, settings.limits, gateway.live, gateway.pipeline,
                          gateway.metrics, gateway.drift, gateway.tracing, gateway.feedback,
                          gateway.capture)
    routes: list[BaseRoute] = list(endpoints.routes())
    token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_VARIABLE)
    routes += Admin(gateway.live, token).routes()  # without a token: 404 saying how to enable
    routes.append(openapi_route(openapi_document(admin=bool(token))))
    ids = RequestIds()
    app = GatewayApp(
        routes=routes,
        middleware=[proxy_headers(),
                    Middleware(RequestMiddleware, access_log=settings.server.access_log,
                               ids=ids)],
        exception_handlers={GatewayError: on_gateway_error, HTTPException: on_http_exception,
                            Exception: on_unexpected_error},
        lifespan=lifespan,
    )
    app.use_lane(endpoints.infer, settings.server.access_log, ids)
    return app
