"""SPEC sections 6 and 7 against the real server: every metric with its labels after a canary
with a shadow has served, and OTLP/HTTP spans received by a small collector in the test."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODEL, ConfigWriter, sample_rows
from tests.integration.conftest import OtlpCollector, Start
from tests.integration.server import GatewayProcess

INFER = f"/v2/models/{MODEL}/infer"
BODY = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                 "data": sample_rows(1).ravel().tolist()}]})
CANARY = {"models": {MODEL: {"traffic": [{"version": 1, "weight": 80},
                                         {"version": 2, "weight": 20}],
                             "shadow": [{"version": 3, "percent": 100}]}}}
SAMPLES = dict[str, list[tuple[dict[str, str], float]]]


def scrape(server: GatewayProcess) -> SAMPLES:
    """Sample name -> [(labels, value)] from /metrics, parsed by prometheus-client's parser."""
    reply = server.request("GET", "/metrics")
    assert reply.status == 200
    samples: SAMPLES = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def wait_until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_every_metric_of_the_spec_is_served_with_its_labels(
        write_config: ConfigWriter, start: Start) -> None:
    server = start(write_config(routing=CANARY, drift={"report_interval_s": 0.2}))
    for i in range(60):
        assert server.request("POST", INFER, BODY, {"x-user-id": f"u{i}"}).status == 200
    assert server.request("POST", f"/v2/models/{MODEL}/versions/3/infer", BODY).status == 200
    assert server.request("POST", "/v2/models/nope/infer", BODY).status == 404
    assert server.request("POST", INFER, b"{").status == 400
    wait_until(lambda: "gateway_drift_psi" in scrape(server)
               and "gateway_shadow_requests_total" in scrape(server))
    samples = scrape(server)

    def labels_of(name: str) -> set[tuple[tuple[str, str], ...]]:
        assert name in samples, f"{name} missing from /metrics"
        return {tuple(sorted(labels.items())) for labels, _ in samples[name]}

    requests = {dict(k)["route"] + "/" + dict(k)["code"] + "/" + dict(k)["version"]
                for k in labels_of("gateway_requests_total")}
    assert {"split/200/1", "split/200/2", "pinned/200/3"} <= requests
    assert any(r.startswith("split/400/") for r in requests)
    assert {dict(k)["model"] for k in labels_of("gateway_requests_total")} == {MODEL, "_unknown"}
    for name in ("gateway_request_duration_seconds_bucket",):
        assert all({"model", "version", "route", "le"} == set(dict(k))
                   for k in labels_of(name))
    for name in ("gateway_queue_duration_seconds_bucket",
                 "gateway_inference_duration_seconds_bucket", "gateway_batch_size_bucket"):
        assert {dict(k)["version"] for k in labels_of(name)} == {"1", "2", "3"}
    batch_rows = sum(v for labels, v in samples["gateway_batch_size_sum"])
    assert batch_rows == 61  # every served row, once
    queued = sum(v for _, v in samples["gateway_queue_duration_seconds_count"])
    assert queued == 61
    assert labels_of("gateway_inflight_requests") == {(("model", MODEL),)}
    assert {(dict(k)["version"], v) for k, v in
            ((tuple(sorted(labels.items())), v) for labels, v in samples["gateway_model_ready"])
            } == {("1", 1.0), ("2", 1.0), ("3", 1.0)}
    weights = {labels["version"]: v for labels, v in samples["gateway_route_weight"]}
    assert weights == {"1": 80.0, "2": 20.0}
    assert {labels["result"] for labels, _ in samples["gateway_shadow_requests_total"]} <= \
        {"agree", "disagree"}
    assert {labels["version"] for labels, _ in samples["gateway_shadow_requests_total"]} == {"3"}
    assert "gateway_config_reloads_total" in samples
    features = {labels["feature"] for labels, _ in samples["gateway_drift_psi"]}
    assert len(features) == 30 and "mean radius" in features
    for name in ("gateway_drift_js", "gateway_drift_ks"):
        assert {labels["feature"] for labels, _ in samples[name]} == features
    assert {labels["output"] for labels, _ in samples["gateway_prediction_drift_psi"]}
    assert labels_of("gateway_drift_window_rows")
    assert labels_of("gateway_drift_dropped_rows_total")


def test_spans_continue_the_callers_trace_and_link_the_shadow(
        write_config: ConfigWriter, start: Start, collector: OtlpCollector, tmp_path: Path) -> None:
    config = write_config(routing=CANARY, server={"access_log": True})
    server = start(config, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "gateway-under-test"})
    assert "tracing on: OTLP/HTTP spans to http://127.0.0.1" in server.log()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    reply = server.request("POST", INFER, BODY, {
        "traceparent": f"00-{trace_id}-{parent_id}-01", "x-request-id": "traced-1"})
    assert reply.status == 200

    def names() -> set[str]:
        return {span.name for _, span in collector.spans}
    wait_until(lambda: {"POST /v2/models/{model}/infer", "route", "queue", "inference",
                        "shadow"} <= names())
    spans = {span.name: span for _, span in collector.spans}
    assert {service for service, _ in collector.spans} == {b"gateway-under-test"}
    request = spans["POST /v2/models/{model}/infer"]
    assert request.trace_id.hex() == trace_id and request.parent_span_id.hex() == parent_id
    assert request.kind == Span.SPAN_KIND_SERVER
    version = reply.headers["x-model-version"]
    attributes = {a.key: a.value for a in request.attributes}
    assert attributes["http.response.status_code"].int_value == 200
    assert attributes["version"].string_value == version
    for name in ("route", "queue", "inference"):
        child = spans[name]
        assert child.trace_id == request.trace_id and child.parent_span_id == request.span_id
        assert request.start_time_unix_nano <= child.start_time_unix_nano
        assert child.end_time_unix_nano <= request.end_time_unix_nano
    route = {a.key: a.value.string_value for a in spans["route"].attributes}
    assert route == {"model": MODEL, "version": version, "route": "split"}
    inference = {a.key: a.value.int_value for a in spans["inference"].attributes
                 if a.key.startswith("batch.")}
    assert inference == {"batch.rows": 1, "batch.requests": 1}
    shadow = spans["shadow"]
    assert shadow.trace_id != request.trace_id and not shadow.parent_span_id
    assert [(link.trace_id, link.span_id) for link in shadow.links] == \
        [(request.trace_id, request.span_id)]
    access = [line for line in server.log().splitlines() if "request_id=traced-1" in line]
    assert len(access) == 1 and f"trace_id={trace_id}" in access[0]
    assert '"POST /v2/models/breast-cancer/infer HTTP/1.1" 200' in access[0]


def test_without_an_endpoint_nothing_is_traced_and_lines_name_the_forwarded_client(
        write_config: ConfigWriter, start: Start) -> None:
    server = start(write_config(server={"access_log": True}),
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": "",
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""})
    assert server.request("POST", INFER, BODY, {"x-request-id": "plain-1"}).status == 200
    # The access line is written once the answer is sent: wait for it.
    wait_until(lambda: "request_id=plain-1" in server.log())
    log = server.log()
    assert "tracing on" not in log
    assert "request_id=plain-1 trace_id=-" in log
    # Behind a proxy on this host (uvicorn's default trust) a line names the proxy's client,
    # for inference (which the lane answers past the middleware) as for any other request.
    forwarded = {"x-forwarded-for": "203.0.113.7"}
    assert server.request("POST", INFER, BODY, {"x-request-id": "proxied-1", **forwarded}
                          ).status == 200
    assert server.request("GET", "/v2/health/ready", None,
                          {"x-request-id": "proxied-2", **forwarded}).status == 200
    wait_until(lambda: "request_id=proxied-2" in server.log())
    lines = {line.split("request_id=")[1].split(" ")[0]: line
             for line in server.log().splitlines() if "request_id=" in line}
    assert '203.0.113.7:0 "POST /v2/models/breast-cancer/infer HTTP/1.1" 200' in \
        lines["proxied-1"]
    assert '203.0.113.7:0 "GET /v2/health/ready HTTP/1.1" 200' in lines["proxied-2"]
    assert '127.0.0.1:' in lines["plain-1"]


def test_a_sampled_out_request_makes_no_spans_but_logs_its_trace_id(
        write_config: ConfigWriter, start: Start, collector: OtlpCollector) -> None:
    """With a ratio sampler at 0 only callers' sampled traces are recorded: the other requests
    make no children and export nothing (tracing 1% of requests costs far less than all), and
    the access log still names their trace id."""
    server = start(write_config(routing=CANARY, server={"access_log": True}), env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0"})
    for i in range(5):
        assert server.request("POST", INFER, BODY, {"x-request-id": f"unsampled-{i}"}).status \
            == 200
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert server.request("POST", INFER, BODY, {
        "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}).status == 200
    wait_until(lambda: {"POST /v2/models/{model}/infer", "route", "queue", "inference"}
               <= {span.name for _, span in collector.spans})
    time.sleep(0.3)  # anything the unsampled requests made would have been exported by now
    assert {span.trace_id.hex() for _, span in collector.spans} == {trace_id}
    wait_until(lambda: "request_id=unsampled-4" in server.log())
    unsampled = [line for line in server.log().splitlines() if "request_id=unsampled-" in line]
    assert len(unsampled) == 5 and all("trace_id=-" not in line for line in unsampled)
