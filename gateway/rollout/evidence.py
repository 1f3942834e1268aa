"""The rollout's evidence from the gateways' own /metrics (SPEC 9): counters added up over the
replicas, per model version, and what they gained since a step began.

Counters (requests and their codes, request-duration buckets, labelled and correct rows, shadow
results) add up across replicas, so the fleet's evidence is their sum; a replica that restarted
resets its counters, so a gain is never taken below zero. The canary's prediction drift is a
gauge per replica: the worst PSI among the replicas whose drift window is full is what the
drift gate reads (a replica still filling its window says nothing yet).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from gateway.rollout.gates import Evidence

Key = tuple[str, int]
"""(model, version)."""


@dataclass
class _Totals:
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    labelled: float = 0.0
    correct: float = 0.0
    shadow: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    psi: dict[str, float] = field(default_factory=dict)
    window_rows: int = 0


Reading = dict[Key, Evidence]
"""Every version's totals at one moment."""


def _version(labels: dict[str, str]) -> Key | None:
    version = labels.get("version", "")
    if not version.isdigit():
        return None  # _none, none: not a version's evidence
    return labels.get("model", ""), int(version)


def read_metrics(texts: Iterable[str], full_window_rows: int = 5000) -> Reading:
    """The fleet's totals from each replica's /metrics text."""
    totals: dict[Key, _Totals] = defaultdict(_Totals)
    for text in texts:
        windows: dict[Key, float] = {}
        psi: dict[Key, dict[str, float]] = defaultdict(dict)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = _version(sample.labels)
                if key is None:
                    continue
                _add(totals[key], sample.name, sample.labels, sample.value, windows, psi, key)
        for key, outputs in psi.items():
            if windows.get(key, 0) >= full_window_rows:
                worst = totals[key].psi
                for output, value in outputs.items():
                    worst[output] = max(worst.get(output, -math.inf), value)
        for key, rows in windows.items():
            totals[key].window_rows = max(totals[key].window_rows, int(rows))
    return {key: _evidence(t) for key, t in totals.items()}


_COUNTERS = {"gateway_requests_total": "requests",
             "gateway_request_duration_seconds_bucket": "buckets",
             "gateway_feedback_rows_total": "labelled",
             "gateway_feedback_correct_rows_total": "correct",
             "gateway_shadow_requests_total": "shadow"}
"""Sample name -> what it adds to (as `_add_series` reads a Prometheus answer); the drift
gauges are per replica and kept apart until every replica's window is known."""


def _add(t: _Totals, name: str, labels: dict[str, str], value: float,
         windows: dict[Key, float], psi: dict[Key, dict[str, float]], key: Key) -> None:
    kind = _COUNTERS.get(name)
    if kind is not None:
        _add_series(t, kind, labels, value)
    elif name == "gateway_prediction_drift_psi":
        psi[key][labels.get("output", "")] = value
    elif name == "gateway_drift_window_rows":
        windows[key] = value


def _evidence(t: _Totals) -> Evidence:
    bounds = tuple(sorted(t.buckets))
    return Evidence(int(t.requests), int(t.errors), bounds,
                    tuple(t.buckets[b] for b in bounds), int(t.labelled), int(t.correct),
                    {r: int(n) for r, n in t.shadow.items()}, dict(t.psi), t.window_rows)


def gained(now: Evidence, then: Evidence | None) -> Evidence:
    """What the counters gained since `then` (None: everything so far); gauges as they are now.
    A counter lower than before (a replica restarted) counts from zero again."""
    if then is None:
        return now

    def gain(a: float, b: float) -> float:
        return a - b if a >= b else a

    counts = now.duration_counts
    if then.duration_bounds == now.duration_bounds and then.duration_counts:
        counts = tuple(gain(a, b) for a, b in zip(now.duration_counts, then.duration_counts,
                                                   strict=True))
    return Evidence(int(gain(now.requests, then.requests)), int(gain(now.errors, then.errors)),
                    now.duration_bounds, counts, int(gain(now.labelled, then.labelled)),
                    int(gain(now.correct, then.correct)),
                    {r: int(gain(n, then.shadow.get(r, 0))) for r, n in now.shadow.items()},
                    now.prediction_psi, now.drift_window_rows)


_QUERIES = {
    "requests": "sum by (model, version, code) (gateway_requests_total)",
    "buckets": "sum by (model, version, le) (gateway_request_duration_seconds_bucket)",
    "labelled": "sum by (model, version) (gateway_feedback_rows_total)",
    "correct": "sum by (model, version) (gateway_feedback_correct_rows_total)",
    "shadow": "sum by (model, version, result) (gateway_shadow_requests_total)",
    "window": "max by (model, version) (gateway_drift_window_rows)",
    "psi": "max by (model, version, output) (gateway_prediction_drift_psi and on (instance, "
           "model, version) gateway_drift_window_rows >= {full})",
}
"""What `--prometheus` asks: the same sums over the replicas as /metrics gives, by PromQL."""


def read_prometheus(url: str, full_window_rows: int = 5000,
                    timeout_s: float = 10.0) -> Reading:
    """The fleet's totals from a Prometheus server that scrapes every replica; OSError when it
    cannot be asked or refuses a query."""
    import json
    import urllib.parse
    import urllib.request

    totals: dict[Key, _Totals] = defaultdict(_Totals)
    for kind, query in _QUERIES.items():
        address = (f"{url.rstrip('/')}/api/v1/query?"
                   + urllib.parse.urlencode({"query": query.format(full=full_window_rows)}))
        with urllib.request.urlopen(address, timeout=timeout_s) as reply:
            answer = json.load(reply)
        if answer.get("status") != "success":
            raise OSError(f"prometheus refused {query!r}: {answer.get('error')}")
        for series in answer["data"]["result"]:
            labels = series["metric"]
            key = _version(labels)
            if key is None:
                continue
            _add_series(totals[key], kind, labels, float(series["value"][1]))
    return {key: _evidence(t) for key, t in totals.items()}


def _add_series(t: _Totals, kind: str, labels: dict[str, str], value: float) -> None:
    if kind == "requests":
        t.requests += value
        if labels.get("code", "").startswith("5"):
            t.errors += value
    elif kind == "buckets":
        t.buckets[float(labels["le"])] += value
    elif kind == "labelled":
        t.labelled += value
    elif kind == "correct":
        t.correct += value
    elif kind == "shadow":
        t.shadow[labels.get("result", "")] += value
    elif kind == "window":
        t.window_rows = int(value)
    elif kind == "psi":
        t.psi[labels.get("output", "")] = value
