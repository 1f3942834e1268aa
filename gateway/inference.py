"""The data plane, free of any transport: one `infer(call)` per inference request, whichever
transport (HTTP, gRPC) it came by.

A transport reads and decodes, the pipeline does the rest, the transport encodes:

- look the model (and a pinned version) up, so that an unknown one is refused before the
  transport reads its body (`InferCall.decode` runs after the lookup);
- `decide` the version: the one pinned, the highest when the policy does not name the model,
  else flags and the split (one read of the policy, an immutable snapshot);
- `serve` it: hold the version's deployment (an unloading version waits for it), validate the
  request against its signature, hand it to the batcher; then drift and shadows see it;
- encode (`InferCall.encode`, the transport's), capture, and count and trace every outcome, so
  that metrics, spans and capture records are the same whichever transport a request came by.

Nothing awaits between `decide` returning and `serve` holding the deployment, so the policy read,
the decision and the lookup see one policy, and a version being unloaded is either found and
held or gone. Errors are `GatewayError`s carrying an HTTP status; each transport maps them with
its own table (HTTP: the status; gRPC: `gateway.grpc.errors`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.capture.service import Capture
from gateway.errors import GatewayError
from gateway.observability.drift.service import DriftService
from gateway.observability.metrics import NO_VERSION, UNKNOWN_MODEL, GatewayMetrics
from gateway.observability.shadow import ShadowRunner
from gateway.observability.tracing import RequestTrace
from gateway.protocol.request import InferRequest
from gateway.protocol.validate import check_request
from gateway.routing.decide import PINNED, SPLIT, choose_version
from gateway.routing.live import LivePolicy
from gateway.routing.policy import ModelPolicy, default_version
from gateway.routing.shadow import choose_shadows
from gateway.runtime.registry import Registry, parse_version
from gateway.runtime.repository import VersionEntry
from gateway.settings import Settings
from gateway.tensors import Tensors

CANCELLED = 499
"""The code a request the caller gave up on counts under (docs/metrics.md), never an error."""

Encoded = TypeVar("Encoded")


@dataclass(slots=True)  # per request: see Answer
class Decision:
    model: str
    version: int
    route: str
    """split, flag or pinned (docs/metrics.md)."""
    known: bool
    """The repository has this version (a pinned caller may name any number)."""
    policy: ModelPolicy | None
    """The model's policy the decision was made on; its shadows are mirrored after serving."""

    @property
    def version_label(self) -> str:
        """The version as a metric label: only versions of the repository (docs/metrics.md)."""
        return str(self.version) if self.known else NO_VERSION


@dataclass(slots=True)  # per request: see Answer
class Served:
    version: int
    route: str
    results: Tensors


@dataclass(slots=True)
class Answer:
    """What a transport encodes: the request, the version that served it and its outputs.

    Made per request and never changed, but not `frozen`: a frozen dataclass's init sets each
    field through object.__setattr__, five times the cost (0.8 against 0.17 µs for 8 fields).
    """

    model: str
    version_label: str
    route: str
    request: InferRequest
    results: Tensors


Decode = Callable[[Mapping[str, frozenset[str]] | None], Awaitable[tuple[InferRequest, int]]]
"""The transport's read and decode, given the model's input names and the datatypes its loaded
versions take each in (None: none is loaded), so that a tensor no version could take is refused
before its data is decoded: the request and the size of the body it came in, in bytes. Raises
BadRequest, PayloadTooLarge..."""


@dataclass(slots=True)  # per request: see Answer
class InferCall(Generic[Encoded]):
    """One inference request as a transport hands it to the data plane."""

    model: str
    pinned: str | None
    """The version the caller named, as written (None: routed by the policy)."""
    headers: Mapping[str, str]
    """HTTP headers or gRPC metadata, names in lower case: routing keys and flags."""
    request_id: str | None
    """The transport's request id (x-request-id): kept with a capture record."""
    trace: RequestTrace
    """The request's span, started by the transport when the call arrived (its parent from
    `traceparent`); the pipeline adds the children and ends it."""
    start_s: float
    """time.perf_counter() when the call arrived: its duration is counted from here."""
    decode: Decode
    encode: Callable[[Answer], Encoded]


class InferencePipeline:
    def __init__(self, registry: Registry, settings: Settings, live: LivePolicy,
                 drift: DriftService, shadow: ShadowRunner, metrics: GatewayMetrics,
                 capture: Capture) -> None:
        self._registry = registry
        self._live = live
        self._drift = drift
        self._shadow = shadow
        self._metrics = metrics
        self._capture = capture
        self._max_batch_rows = settings.limits.max_batch_rows
        self._default_timeout_us = settings.batching.default_timeout_us

    async def infer(self, call: InferCall[Encoded]) -> Encoded:
        """The whole request: lookup, decode, decide, serve, encode, capture; counted and traced
        under the same labels whichever way it ends (a cancelled call as 499)."""
        model = call.model
        trace = call.trace
        model_label, version_label = UNKNOWN_MODEL, NO_VERSION
        route = PINNED if call.pinned is not None else SPLIT
        code = 500
        try:
            versions = self._registry.check_model(model)
            model_label = model
            pinned = None
            if call.pinned is not None:  # refused before its body is read
                pinned = parse_version(call.pinned)
                self._registry.find(model, pinned)
            request, body_bytes = await call.decode(self._registry.input_names(model))
            routed_s = time.perf_counter()
            decision = self._decide(model, versions, pinned, call.headers, request.parameters)
            version_label, route = decision.version_label, decision.route
            trace.route_span(routed_s, time.perf_counter(), model, version_label, route)
            served = await self.serve(decision, request, trace)
            encoded = call.encode(Answer(model, version_label, route, request, served.results))
            code = 200
            self._capture.infer(model, served.version, route, request, served.results,
                                call.request_id, trace.trace_id, body_bytes)
            return encoded
        except GatewayError as exc:
            code = exc.status
            raise
        except asyncio.CancelledError:
            code = CANCELLED
            raise
        finally:
            end = time.perf_counter()
            self._metrics.observe_request(model_label, version_label, route, code,
                                          end - call.start_s)
            trace.end(code, model_label, version_label, route, end)

    def input_names(self, model: str) -> Mapping[str, frozenset[str]] | None:
        """Every input name the model's loaded versions take, with its datatypes (None: none
        is loaded)."""
        return self._registry.input_names(model)

    def decide(self, model: str, pinned: int | None, headers: Mapping[str, str],
               parameters: Mapping[str, Any]) -> Decision:
        """The version a request goes to; NotFound when the model is not (or no longer) there."""
        return self._decide(model, self._registry.check_model(model), pinned, headers,
                            parameters)

    def _decide(self, model: str, versions: Mapping[int, VersionEntry], pinned: int | None,
                headers: Mapping[str, str], parameters: Mapping[str, Any]) -> Decision:
        model_policy = self._live.policy.models.get(model)
        if pinned is not None:
            version, route = pinned, PINNED
        elif model_policy is None:
            version, route = default_version(None, versions), SPLIT
        else:
            choice = choose_version(model_policy, headers, parameters,
                                    self._registry.ready_versions(model))
            version, route = choice.version, choice.route
        return Decision(model, version, route, version in versions, model_policy)

    async def serve(self, decision: Decision, request: InferRequest,
                    trace: RequestTrace) -> Served:
        """Run the request on the decided version; then drift and shadows see it."""
        model, version = decision.model, decision.version
        deployment = self._registry.find(model, version)
        session, batcher = deployment.session, deployment.batcher
        assert session is not None and batcher is not None
        deployment.inflight += 1
        try:
            check_request(request, session.inputs, session.outputs, self._max_batch_rows)
            first = next(iter(request.inputs.values()))
            rows = first.shape[0] if first.ndim else 1
            results = await batcher.submit(request.inputs, rows,
                                           request.timeout_us or self._default_timeout_us,
                                           trace.timing)
        finally:
            deployment.inflight -= 1
            trace.batch_spans(model, decision.version_label)
        self._drift.observe(model, version, request.inputs, results,
                            pinned=decision.route == PINNED)
        if decision.route != PINNED and decision.policy is not None and decision.policy.shadow:
            shadows = [v for v in choose_shadows(decision.policy) if v != version]
            if shadows:
                self._shadow.mirror(model, shadows, request.inputs, results, rows,
                                    trace.span_context)
        return Served(version, decision.route, results)
