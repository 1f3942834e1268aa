"""OpenTelemetry tracing (README "Observability"), configured by the standard OTEL_* variables.

Tracing is on when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_EXPORTER_OTLP_ENDPOINT`), unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
Then spans go over OTLP/HTTP (protobuf) through a batch processor, and the SDK reads the rest of
its settings itself: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
`OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`... Off, `Tracing.tracer` is None and the request path
pays one attribute test per span it would have made.

Spans of an inference request: `POST /v2/models/{model}/infer` (server span, continuing the
caller's W3C `traceparent`), its children `route` (model, version, route), `queue` (the wait for a
batch) and `inference` (batch rows and requests); a mirror to a shadow version is a root span
`shadow` of its own trace, linked to the request span. Queue and inference spans are written
after the fact from the batcher's clock, so the batcher itself knows nothing of tracing.

The provider is this gateway's own (never the global one), like its metrics registry.

Sampled out, a request costs next to nothing: with a ratio sampler (`traceidratio`, or
`parentbased_traceidratio`, the usual production choice) and no `traceparent` from the caller,
the gateway draws the trace id itself and applies the sampler's own rule to it (the low 64 bits
under the ratio's bound) before the SDK is asked anything; a request sampled out gets only its
trace id (for the access log), no span object, context or attributes. A request sampled in is
started by the SDK with that same trace id (`_ChosenIds`), so the SDK samples it too. At 1%,
the request path pays about 1 µs instead of about 5 (`Tracing.request` to `end`, in process).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.batching.batcher import BatchTiming

logger = logging.getLogger("gateway.tracing")

_PROPAGATOR = TraceContextTextMapPropagator()
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(name) for name in _ENDPOINT_VARIABLES)


class Tracing:
    def __init__(self, service_name: str, environ: Mapping[str, str] | None = None,
                 exporter: Any = None) -> None:
        """`exporter`: where spans go (default: OTLP/HTTP as the OTEL_* variables say)."""
        environ = os.environ if environ is None else environ
        self.tracer: trace.Tracer | None = None
        self.clock = Clock()
        self._provider: Any = None
        self._root_bound: int | None = None
        """The sampler's rule for a request without a parent, when it is a ratio: sampled
        when the trace id's low 64 bits are under this bound."""
        if not tracing_wanted(environ):
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # OTEL_SERVICE_NAME, when set, wins over the config's service_name.
        attributes = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
        self._ids = _ChosenIds()
        provider = TracerProvider(resource=Resource.create(attributes), id_generator=self._ids)
        self._root_bound = _ratio_bound(provider.sampler)
        provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter()))
        self._provider = provider
        self.tracer = provider.get_tracer("gateway")
        endpoint = next(environ[n] for n in _ENDPOINT_VARIABLES if environ.get(n))
        logger.info("tracing on: OTLP/HTTP spans to %s", endpoint)

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def request(self, headers: Mapping[str, str], name: str, start_s: float) -> RequestTrace:
        """The request's spans, or `NO_TRACE` (which does nothing) when tracing is off."""
        if self.tracer is None:
            return NO_TRACE
        bound = self._root_bound
        if bound is not None and "traceparent" not in headers:
            trace_id = random.getrandbits(128) or 1
            if trace_id & _TRACE_ID_LOW_BITS >= bound:
                return _SampledOut(trace_id)
            self._ids.chosen = trace_id
        return _SpanTrace(self.tracer, self.clock, headers, name, start_s)

    def shutdown(self) -> None:
        """Export what is still buffered (called once requests have drained)."""
        if self._provider is not None:
            self._provider.force_flush()
            self._provider.shutdown()


def parent_context(headers: Mapping[str, str]) -> Context:
    """The caller's trace (W3C traceparent/tracestate), or an empty context."""
    return _PROPAGATOR.extract(headers)


_TRACE_ID_LOW_BITS = (1 << 64) - 1


def _ratio_bound(sampler: Any) -> int | None:
    """The bound of a ratio sampler for root spans (itself, or the root of a parent-based
    one); None for any other sampler (always on, off, or a custom one: the SDK decides)."""
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if isinstance(sampler, ParentBased):
        sampler = getattr(sampler, "_root", None)
    if type(sampler) is TraceIdRatioBased:
        return int(sampler.bound)
    return None


def _random_ids() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    return RandomIdGenerator


class _ChosenIds(_random_ids()):  # type: ignore[misc]
    """The SDK's random ids, but the next trace id is the one the gateway drew (and sampled)."""

    chosen: int | None = None

    def generate_trace_id(self) -> int:
        chosen = self.chosen
        if chosen is not None:
            self.chosen = None
            return chosen
        return int(super().generate_trace_id())


class Clock:
    """perf_counter seconds to epoch nanoseconds, for spans written after the fact."""

    def __init__(self) -> None:
        self._epoch_ns = time.time_ns()
        self._perf_s = time.perf_counter()

    def ns(self, perf_s: float) -> int:
        return self._epoch_ns + int((perf_s - self._perf_s) * 1e9)


class RequestTrace:
    """The spans of one inference request. This base is the do-nothing variant used when
    tracing is off (`NO_TRACE`), so the request path calls it unconditionally."""

    timing: BatchTiming | None = None
    """Handed to the batcher to be filled in; None: the batcher records nothing."""
    span_context: trace.SpanContext | None = None
    """Links a shadow's own trace to this request; None: no link."""
    trace_id: str | None = None
    """Hex trace id for the access log."""

    def child(self, name: str, start_s: float, end_s: float,
              attributes: dict[str, str | int]) -> None:
        """A finished child span, written after the fact."""

    def route_span(self, start_s: float, end_s: float, model: str, version: str,
                   route: str) -> None:
        """The routing decision's child span (its attributes built only when tracing)."""

    def batch_spans(self, model: str, version: str) -> None:
        """`queue` and `inference` children from the batcher's timing, once it has run."""

    def end(self, code: int, model: str, version: str, route: str, end_s: float) -> None:
        """Finish the request span with its outcome."""


NO_TRACE = RequestTrace()


class _SampledOut(RequestTrace):
    """A request the sampler left out: its trace id for the access log, nothing else."""

    def __init__(self, trace_id: int) -> None:
        self.trace_id = format(trace_id, "032x")


class _SpanTrace(RequestTrace):
    def __init__(self, tracer: trace.Tracer, clock: Clock, headers: Mapping[str, str],
                 name: str, start_s: float) -> None:
        self._tracer = tracer
        self._clock = clock
        self.span = tracer.start_span(name, context=parent_context(headers),
                                      kind=trace.SpanKind.SERVER, start_time=clock.ns(start_s))
        context = self.span.get_span_context()
        self.trace_id = format(context.trace_id, "032x")
        # Sampled out (OTEL_TRACES_SAMPLER): no children, no batch timing, no shadow link;
        # the trace id still goes to the access log, to find the caller's trace.
        self._recording = self.span.is_recording()
        if self._recording:
            self._context = trace.set_span_in_context(self.span)
            self.timing = BatchTiming()
            self.span_context = context

    def child(self, name: str, start_s: float, end_s: float,
              attributes: dict[str, str | int]) -> None:
        if not self._recording:
            return
        span = self._tracer.start_span(name, context=self._context, attributes=attributes,
                                       start_time=self._clock.ns(start_s))
        span.end(end_time=self._clock.ns(end_s))

    def route_span(self, start_s: float, end_s: float, model: str, version: str,
                   route: str) -> None:
        self.child("route", start_s, end_s, {"model": model, "version": version, "route": route})

    def batch_spans(self, model: str, version: str) -> None:
        t = self.timing
        if t is None or not t.started_s:
            return
        self.child("queue", t.enqueued_s, t.started_s, {"model": model, "version": version})
        self.child("inference", t.started_s, t.ended_s,
                   {"model": model, "version": version, "batch.rows": t.rows,
                    "batch.requests": t.requests})

    def end(self, code: int, model: str, version: str, route: str, end_s: float) -> None:
        span = self.span
        if not self._recording:
            span.end()
            return
        span.set_attributes({"http.response.status_code": code, "model": model,
                             "version": version, "route": route})
        if code >= 500:
            span.set_status(trace.StatusCode.ERROR)
        span.end(end_time=self._clock.ns(end_s))
