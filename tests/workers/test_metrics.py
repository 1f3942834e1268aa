"""A counter kept as a plain total is mirrored into prometheus-client by its increase
(gateway.observability.metrics.CounterMirror), so that in a worker it lands in the group's
multiprocess files; a total that began again from 0 is counted from 0."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.observability.metrics import CounterMirror


def value(mirror: CounterMirror, labels: tuple[str, ...]) -> float:
    registry = CollectorRegistry()
    registry.register(mirror._counter)
    return registry.get_sample_value("gateway_test_rows_total",
                                     dict(zip(("model",), labels, strict=True))) or 0.0


def test_a_mirror_follows_its_total_and_never_goes_back() -> None:
    mirror = CounterMirror("gateway_test_rows_total", "Rows.", ["model"])
    mirror.copy(("m",), 0)
    assert value(mirror, ("m",)) == 0
    mirror.copy(("m",), 5)
    mirror.copy(("m",), 12)
    assert value(mirror, ("m",)) == 12
    mirror.copy(("m",), 3)  # the window's owner began again (a version tracked anew)
    assert value(mirror, ("m",)) == 15


def test_a_routing_edit_is_counted_once_by_the_group() -> None:
    """Every worker applies every edit; only worker 0 counts it (before, each worker did: 2
    counts per edit with 2 workers), and every worker shows whether the edit is in force."""
    from pathlib import Path

    from gateway.observability.metrics import GatewayMetrics
    from gateway.workers.group import Group

    counted = []
    for worker in (0, 1):
        metrics = GatewayMetrics(CollectorRegistry(), Group(Path("unused"), worker, 1, size=2))
        metrics.count_reload(success=True)
        metrics.count_reload(success=False)
        registry = metrics.registry
        counted.append([registry.get_sample_value("gateway_config_reloads_total",
                                                  {"result": r}) for r in ("success", "error")])
        assert registry.get_sample_value("gateway_config_last_reload_success") == 0
    assert counted == [[1, 1], [0, 0]]
    single = GatewayMetrics(CollectorRegistry(), None)
    single.count_reload(success=True)
    assert single.registry.get_sample_value("gateway_config_reloads_total",
                                            {"result": "success"}) == 1
