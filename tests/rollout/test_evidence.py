"""The rollout's evidence: gains per replica and per series, as Prometheus's increase() takes
them, from the gateways' real /metrics text; routed requests only."""

from __future__ import annotations

from gateway.rollout.evidence import Gains, evidence, parse_metrics, since
from tests.rollout.fleet import MODEL, Replica


def read(replicas: dict[str, Replica], gains: Gains) -> None:
    gains.observe(parse_metrics({url: r.text() for url, r in replicas.items()}))


def test_a_replica_that_restarts_adds_only_what_it_served_since() -> None:
    """The issue's case: the canary's labels from before the step sit on one replica; the other
    has many and restarts. The fleet's sum drops from 9,000 to 4,100: read per replica, the step
    gained the 100 new labels, not 4,100."""
    a, b = Replica(), Replica()
    a.label(2, 4000, 3000)
    b.label(2, 5000, 4900)
    gains = Gains()
    read({"a": a, "b": b}, gains)
    start = dict(gains.gained)
    restarted = Replica()
    restarted.label(2, 100, 98)
    read({"a": a, "b": restarted}, gains)
    found = evidence(since(gains.gained, start), gains.gauges, (MODEL, 2), 5000)
    assert (found.labelled, found.correct) == (100, 98)


def test_a_restart_is_seen_by_its_start_time_even_past_the_old_count() -> None:
    old = Replica(started_s=1000.0)
    old.label(2, 50, 50)
    gains = Gains()
    read({"a": old}, gains)
    new = Replica(started_s=2000.0)
    new.label(2, 80, 70)  # more than before the restart: only the start time tells
    read({"a": new}, gains)
    assert evidence(gains.gained, {}, (MODEL, 2), 5000).labelled == 80


def test_replicas_that_come_and_go_add_what_they_gained_while_seen() -> None:
    a, b = Replica(), Replica()
    a.serve(2, 30)
    gains = Gains()
    read({"a": a}, gains)
    b.serve(2, 500)  # a pod already serving when first seen: its past is not this step's
    read({"a": a, "b": b}, gains)
    b.serve(2, 7)
    a.serve(2, 3)
    read({"a": a, "b": b}, gains)
    a.serve(2, 1000)  # ... then a goes away: what it gained while seen stays
    read({"b": b}, gains)
    assert evidence(gains.gained, {}, (MODEL, 2), 5000).requests == 10


def test_a_new_series_of_a_known_replica_counts_whole() -> None:
    a = Replica()
    a.serve(2, 10)
    gains = Gains()
    read({"a": a}, gains)
    a.serve(2, 4, code=503)  # the canary's first 5xx: a series born during the step
    read({"a": a}, gains)
    found = evidence(gains.gained, {}, (MODEL, 2), 5000)
    assert (found.requests, found.errors) == (4, 4)


def test_pinned_requests_are_no_evidence() -> None:
    a = Replica()
    gains = Gains(from_zero=True)
    a.serve(2, 40, route="split")
    a.serve(2, 9, route="flag", code=500)
    a.serve(2, 1000, route="pinned", code=503, duration_s=4.0)  # a replay pinned to the canary
    read({"a": a}, gains)
    found = evidence(gains.gained, {}, (MODEL, 2), 5000)
    assert (found.requests, found.errors) == (49, 9)
    assert found.duration_counts[-1] == 40  # successes only, none of the pinned ones


def test_drift_counts_only_windows_of_this_steps_rows() -> None:
    a, b = Replica(), Replica()
    a.drift_rows[2], a.psi[2] = 9000, 0.5
    b.drift_rows[2], b.psi[2] = 9000, 0.9
    gains = Gains()
    read({"a": a, "b": b}, gains)
    a.drift_rows[2], b.drift_rows[2] = 9000 + 5000, 9000 + 4999
    read({"a": a, "b": b}, gains)
    found = evidence(gains.gained, gains.gauges, (MODEL, 2), 5000)
    assert found.prediction_psi == {"label": 0.5}  # b's window still holds older rows
    assert found.drift_rows == 5000
    b.drift_rows[2] += 1
    read({"a": a, "b": b}, gains)
    assert evidence(gains.gained, gains.gauges, (MODEL, 2), 5000).prediction_psi == {
        "label": 0.9}


def test_once_counts_each_replicas_totals() -> None:
    a, b = Replica(), Replica()
    a.label(1, 10, 9)
    b.label(1, 5, 5)
    gains = Gains(from_zero=True)
    read({"a": a, "b": b}, gains)
    found = evidence(gains.gained, {}, (MODEL, 1), 5000)
    assert (found.labelled, found.correct) == (15, 14)


def test_a_bad_scrape_is_skipped_and_never_poisons_the_gains() -> None:
    """Review finding 9: one scrape with a NaN counter (or a bucket without `le`) wedged every
    later check on `cannot convert float NaN to integer`."""
    good = Replica()
    good.serve(2, 10)
    gains = Gains()
    read({"a": good}, gains)
    bad = good.text().replace('version="2"} 10', 'version="2"} NaN', 1)
    bad += ('gateway_request_duration_seconds_bucket{model="breast cancer",route="split",'
            'version="2"} 3\n')
    gains.observe(parse_metrics({"a": bad}))
    evidence(gains.gained, gains.gauges, (MODEL, 2), 5000)  # no exception
    good.serve(2, 5)
    read({"a": good}, gains)
    assert evidence(gains.gained, {}, (MODEL, 2), 5000).requests == 5


def test_a_dual_stack_service_lists_each_pod_once() -> None:
    """Review finding 13: one EndpointSlice per address family listed every pod twice."""
    from typing import Any

    from gateway.rollout.kubernetes import KubernetesApi, replica_metrics_urls

    class Api(KubernetesApi):
        def request(self, method: str, path: str, body: bytes | None = None,
                    content_type: str | None = None,
                    timeout_s: float = 10.0) -> dict[str, Any]:
            pod = {"targetRef": {"kind": "Pod", "name": "gateway-a", "uid": "u1"},
                   "conditions": {"ready": True}}
            return {"items": [
                {"addressType": "IPv6", "ports": [{"name": "http", "port": 8000}],
                 "endpoints": [{**pod, "addresses": ["fd00::5"]}]},
                {"addressType": "IPv4", "ports": [{"name": "http", "port": 8000}],
                 "endpoints": [{**pod, "addresses": ["10.0.0.5"]}]}]}

    assert replica_metrics_urls(Api("http://api", None, None), "ml", "gateway") == [
        "http://10.0.0.5:8000/metrics"]
