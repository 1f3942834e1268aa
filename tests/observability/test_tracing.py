from __future__ import annotations

import pytest
from opentelemetry import trace

from gateway.observability.tracing import (
    NO_TRACE,
    Clock,
    Tracing,
    parent_context,
    tracing_wanted,
)


@pytest.mark.parametrize(("environ", "wanted"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
])
def test_tracing_is_on_only_with_an_endpoint(environ: dict[str, str], wanted: bool) -> None:
    assert tracing_wanted(environ) is wanted


def test_off_makes_no_spans() -> None:
    tracing = Tracing("gateway", environ={})
    traced = tracing.request({}, "x", 0.0)
    assert not tracing.enabled and traced is NO_TRACE
    assert traced.timing is None and traced.span_context is None and traced.trace_id is None
    traced.route_span(0.0, 1.0, "m", "1", "split")  # does nothing, raises nothing
    traced.batch_spans("m", "1")
    traced.end(200, "m", "1", "split", 1.0)
    tracing.shutdown()


def test_a_w3c_traceparent_is_continued_and_a_bad_one_ignored() -> None:
    context = parent_context({"traceparent":
                              "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    span_context = trace.get_current_span(context).get_span_context()
    assert format(span_context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span_context.is_remote
    bad = parent_context({"traceparent": "00-zz-00f067aa0ba902b7-01"})
    assert not trace.get_current_span(bad).get_span_context().is_valid


def test_the_clock_maps_perf_counter_to_epoch_nanoseconds() -> None:
    clock = Clock()
    assert clock.ns(clock._perf_s + 1.5) - clock.ns(clock._perf_s) == 1_500_000_000
