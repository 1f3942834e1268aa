from __future__ import annotations

from prometheus_client import generate_latest

from gateway.observability.metrics import GatewayMetrics


def test_two_gateways_keep_separate_registries() -> None:
    a, b = GatewayMetrics(), GatewayMetrics()
    a.observe_request("m", "1", "split", 200, 0.001)
    assert b"gateway_requests_total{" not in generate_latest(b.registry)
    assert b'gateway_requests_total{code="200",model="m",route="split",version="1"} 1.0' in \
        generate_latest(a.registry)


def test_errors_are_counted_but_not_timed() -> None:
    m = GatewayMetrics()
    m.observe_request("m", "1", "split", 400, 0.5)
    m.observe_request("m", "1", "split", 200, 0.0002)
    text = generate_latest(m.registry).decode()
    assert 'code="400"' in text
    assert 'gateway_request_duration_seconds_count{model="m",route="split",version="1"} 1.0' \
        in text


def test_weights_are_replaced_not_accumulated() -> None:
    m = GatewayMetrics()
    m.set_weights({"m": {1: 90, 2: 10}})
    m.set_weights({"m": {2: 100}})
    text = generate_latest(m.registry).decode()
    assert 'gateway_route_weight{model="m",version="2"} 100.0' in text
    assert 'version="1"' not in text.split("gateway_route_weight")[-1]


def test_shadow_and_reload_counters() -> None:
    m = GatewayMetrics()
    m.count_shadow("m", 3, "agree")
    m.count_shadow("m", 3, "agree")
    m.config_reloads.labels("error").inc()
    text = generate_latest(m.registry).decode()
    assert 'gateway_shadow_requests_total{model="m",result="agree",version="3"} 2.0' in text
    assert 'gateway_config_reloads_total{result="error"} 1.0' in text


def test_shadow_rows_are_counted_apart_from_requests() -> None:
    """A 4-row mirror with one disagreeing row: one disagreeing request, three agreeing rows
    and one disagreeing (the rows are what the rollout's shadow gate reads, SPEC 9)."""
    m = GatewayMetrics()
    m.count_shadow("m", 3, "disagree")
    m.count_shadow_rows("m", 3, "agree", 3)
    m.count_shadow_rows("m", 3, "disagree", 1)
    text = generate_latest(m.registry).decode()
    assert 'gateway_shadow_requests_total{model="m",result="disagree",version="3"} 1.0' in text
    assert 'gateway_shadow_rows_total{model="m",result="agree",version="3"} 3.0' in text
    assert 'gateway_shadow_rows_total{model="m",result="disagree",version="3"} 1.0' in text


def test_batches_fill_queue_inference_and_size_histograms_until_the_version_goes() -> None:
    m = GatewayMetrics()
    observe = m.batch_observer("m", 2)
    observe(5, [0.0002, 0.0004], 0.003)
    text = generate_latest(m.registry).decode()
    assert 'gateway_queue_duration_seconds_count{model="m",version="2"} 2.0' in text
    assert 'gateway_queue_duration_seconds_bucket{le="0.0005",model="m",version="2"} 2.0' in text
    assert 'gateway_inference_duration_seconds_sum{model="m",version="2"} 0.003' in text
    assert 'gateway_batch_size_sum{model="m",version="2"} 5.0' in text
    m.forget_version("m", 2)
    m.forget_version("m", 2)  # twice: no error
    assert 'version="2"' not in generate_latest(m.registry).decode()


def test_inflight_is_read_at_scrape_time() -> None:
    m = GatewayMetrics()
    inflight = {"m": 3}
    m.count_inflight(lambda: dict(inflight))
    assert 'gateway_inflight_requests{model="m"} 3.0' in generate_latest(m.registry).decode()
    inflight["m"] = 0
    assert 'gateway_inflight_requests{model="m"} 0.0' in generate_latest(m.registry).decode()


def test_reload_results_exist_before_the_first_reload() -> None:
    text = generate_latest(GatewayMetrics().registry).decode()
    assert 'gateway_config_reloads_total{result="success"} 0.0' in text
    assert 'gateway_config_reloads_total{result="error"} 0.0' in text
