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


@pytest.mark.parametrize("sampler", ["traceidratio", "parentbased_traceidratio"])
def test_a_ratio_sampler_is_applied_before_the_sdk_and_agrees_with_it(
        sampler: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampled out without a parent: no span at all, only a trace id for the log; sampled in:
    the SDK records the span under the trace id the gateway drew, by the sampler's own rule;
    a caller's sampled traceparent is still continued."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    exported = InMemorySpanExporter()
    tracing = Tracing("gateway", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, exported)
    bound = TraceIdRatioBased.get_bound_for_rate(0.25)
    recorded: list[str | None] = []
    left_out: list[str | None] = []
    for _ in range(2000):
        traced = tracing.request({}, "request", 0.0)
        traced.route_span(0.0, 1.0, "m", "1", "split")
        traced.end(200, "m", "1", "split", 1.0)
        if traced.timing is None:
            assert getattr(traced, "span", None) is None  # no span object made at all
            left_out.append(traced.trace_id)
        else:
            recorded.append(traced.trace_id)
    assert 400 < len(recorded) < 600  # 25% of 2,000, well inside its spread
    assert all(int(t or "", 16) & (2**64 - 1) >= bound for t in left_out)
    tracing.shutdown()  # exports what is buffered
    requests = [s for s in exported.get_finished_spans() if s.name == "request"]
    assert sorted(format(s.context.trace_id, "032x") for s in requests) == \
        sorted(map(str, recorded))
    assert len(exported.get_finished_spans()) == 2 * len(recorded)  # each with its route span
    caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    again = Tracing("gateway", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
                    InMemorySpanExporter())
    traced = again.request({"traceparent": f"00-{caller}-00f067aa0ba902b7-01"}, "called", 0.0)
    traced.end(200, "m", "1", "split", 1.0)
    if sampler.startswith("parentbased"):
        assert traced.trace_id == caller and traced.timing is not None
