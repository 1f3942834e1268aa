"""Evidence read from the gateway's own /metrics text, two replicas added up."""

from __future__ import annotations

from prometheus_client import generate_latest

from gateway.observability.metrics import GatewayMetrics
from gateway.rollout.evidence import gained, read_metrics
from gateway.rollout.gates import Evidence


def replica(ok: int, errors: int, slow: bool = False) -> GatewayMetrics:
    metrics = GatewayMetrics()
    for _ in range(ok):
        metrics.observe_request("m", "2", "split", 200, 0.02 if slow else 0.002)
        metrics.observe_request("m", "1", "split", 200, 0.002)
    for _ in range(errors):
        metrics.observe_request("m", "2", "split", 500, 0.001)
    metrics.observe_request("m", "_none", "split", 400, 0.001)  # not a version's evidence
    metrics.count_shadow("m", 3, "agree", 7)
    metrics.count_shadow("m", 3, "disagree", 1)
    return metrics


def text(metrics: GatewayMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_counters_add_up_over_replicas() -> None:
    reading = read_metrics([text(replica(100, 5)), text(replica(50, 0, slow=True))])
    canary, baseline = reading[("m", 2)], reading[("m", 1)]
    assert (canary.requests, canary.errors) == (155, 5)
    assert (baseline.requests, baseline.errors) == (150, 0)
    assert canary.duration_counts[-1] == 150  # successes only, every bucket cumulative
    assert reading[("m", 3)].shadow == {"agree": 14, "disagree": 2}
    assert all(version.isdigit() for _, version in [(m, str(v)) for m, v in reading])


def test_a_gain_is_what_the_counters_added_and_a_restart_counts_from_zero() -> None:
    then = Evidence(100, 5, (0.1, float("inf")), (90.0, 95.0), 40, 38, {"agree": 10})
    now = Evidence(300, 6, (0.1, float("inf")), (280.0, 294.0), 100, 95, {"agree": 30})
    step = gained(now, then)
    assert (step.requests, step.errors, step.labelled, step.correct) == (200, 1, 60, 57)
    assert step.duration_counts == (190.0, 199.0) and step.shadow == {"agree": 20}
    restarted = gained(Evidence(20, 1), then)
    assert (restarted.requests, restarted.errors) == (20, 1)
    assert gained(now, None) is now


def test_prediction_drift_is_the_worst_psi_of_the_replicas_with_a_full_window() -> None:
    def gauges(psi: float, rows: int) -> str:
        return (f'gateway_prediction_drift_psi{{model="m",version="2",output="label"}} {psi}\n'
                f'gateway_drift_window_rows{{model="m",version="2"}} {rows}\n')

    both = read_metrics([gauges(0.3, 5000), gauges(0.9, 100)], full_window_rows=5000)
    assert both[("m", 2)].prediction_psi == {"label": 0.3}
    assert both[("m", 2)].drift_window_rows == 5000
    filling = read_metrics([gauges(0.9, 100)], full_window_rows=5000)
    assert filling[("m", 2)].prediction_psi == {}  # the drift gate waits
