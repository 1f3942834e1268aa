"""The rollout's evidence from the gateways' own metrics: what each replica's counters gained
since a step began, per model version, added up over the fleet.

Gains are taken per replica and per series, as Prometheus's `increase()` takes them, never from
the fleet's sums: a sum of counters goes down when one replica restarts and up when another
one's old rows are counted again, and a rule on the sum cannot tell a restart from evidence (a
replica that restarted with 4,000 labels from before the step read as 4,000 new ones). So:
- a series that went down restarted: it gained its new value (a replica that says when its
  process started, `process_start_time_seconds`, is known to have restarted even when its
  counters have already climbed past their old values);
- a replica seen for the first time after the step began (a new pod, or one that was out of
  reach) adds only what it gains from then on; a replica that disappears keeps what it gained
  while it was seen;
- a new series of a replica already seen (the canary's first 5xx, say) gained all of its value.

Only routed requests are evidence (`route` split or flag): a pinned caller, such as a replay or
a QA load test pinned to the canary, says nothing about how the canary serves the traffic it is
given. The canary's prediction drift is a gauge per replica: a replica's PSI counts only once its
drift window holds nothing but rows served since the step began (its `gateway_drift_rows_total`
gained a whole window), and the worst such replica is what the drift gate reads.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.metrics import (
    DRIFT_PINNED_ROWS,
    DRIFT_ROWS,
    FEEDBACK_CORRECT,
    FEEDBACK_ROWS,
    PREDICTION_PSI,
    REQUEST_DURATION,
    REQUESTS,
    SHADOW_ROWS,
)
from gateway.rollout.gates import Evidence

Key = tuple[str, int]
"""(model, version)."""
Labels = tuple[tuple[str, str], ...]
Series = tuple[str, str, Labels]
"""(source: a replica's /metrics URL or Prometheus' `instance`, sample name, sorted labels)."""

DURATION_BUCKETS = f"{REQUEST_DURATION}_bucket"
PROCESS_START = "process_start_time_seconds"
COUNTERS = (REQUESTS, DURATION_BUCKETS, FEEDBACK_ROWS, FEEDBACK_CORRECT, SHADOW_ROWS, DRIFT_ROWS)
GAUGES = (PREDICTION_PSI, DRIFT_PINNED_ROWS)
ROUTED = frozenset({"split", "flag"})
"""The routes that are evidence; `pinned` is not."""


@dataclass(frozen=True)
class Scrape:
    """One reading of the fleet: the samples evidence is made of, by series."""

    counters: Mapping[Series, float] = field(default_factory=dict)
    gauges: Mapping[Series, float] = field(default_factory=dict)
    starts: Mapping[str, float] = field(default_factory=dict)
    """Each source's process start time, where it says."""

    @property
    def sources(self) -> set[str]:
        return {s[0] for s in self.counters} | {s[0] for s in self.gauges} | set(self.starts)


def _wanted(name: str, labels: Mapping[str, str], value: float) -> bool:
    """Whether a sample is evidence; a value that is no count (NaN, infinite, negative) or a
    bucket without a bound is never taken (one bad scrape must not poison the gains)."""
    if not math.isfinite(value) or (name in COUNTERS and value < 0):
        return False
    if name == DURATION_BUCKETS:
        try:
            float(labels["le"])
        except (KeyError, ValueError):
            return False
    if name in (REQUESTS, DURATION_BUCKETS):
        return labels.get("route") in ROUTED
    return name in COUNTERS or name in GAUGES


def parse_metrics(texts: Mapping[str, str]) -> Scrape:
    """A Scrape from each replica's /metrics text, by its URL."""
    counters: dict[Series, float] = {}
    gauges: dict[Series, float] = {}
    starts: dict[str, float] = {}
    for source, text in texts.items():
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == PROCESS_START and math.isfinite(sample.value):
                    starts[source] = sample.value
                elif _wanted(sample.name, sample.labels, sample.value):
                    series = (source, sample.name, tuple(sorted(sample.labels.items())))
                    target = gauges if sample.name in GAUGES else counters
                    target[series] = sample.value
    return Scrape(counters, gauges, starts)


def query_prometheus(url: str, timeout_s: float = 10.0) -> Scrape:
    """A Scrape from a Prometheus server that scrapes every replica: each series as it stands,
    per replica (its `instance`), never summed (a sum drops a replaced pod and reads a restart
    as a loss). OSError when it cannot be asked or refuses a query."""
    counters: dict[Series, float] = {}
    gauges: dict[Series, float] = {}
    for name in (*COUNTERS, *GAUGES):
        selector = f'{name}{{route=~"split|flag"}}' if name in (REQUESTS,
                                                               DURATION_BUCKETS) else name
        address = (f"{url.rstrip('/')}/api/v1/query?"
                   + urllib.parse.urlencode({"query": selector}))
        with urllib.request.urlopen(address, timeout=timeout_s) as reply:
            answer = json.load(reply)
        if answer.get("status") != "success":
            raise OSError(f"prometheus refused {selector!r}: {answer.get('error')}")
        for found in answer["data"]["result"]:
            labels = {k: v for k, v in found["metric"].items() if k != "__name__"}
            value = float(found["value"][1])
            if not _wanted(name, labels, value):
                continue
            series = (labels.get("instance", ""), name, tuple(sorted(labels.items())))
            (gauges if name in GAUGES else counters)[series] = value
    return Scrape(counters, gauges, _start_times(url, timeout_s))


def _start_times(url: str, timeout_s: float) -> dict[str, float]:
    """Each gateway instance's process start time, so that a restart is seen even when its
    counters climbed past their old values between two checks."""
    query = f"{PROCESS_START} and on (instance) group by (instance) ({REQUESTS})"
    address = f"{url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(address, timeout=timeout_s) as reply:
        answer = json.load(reply)
    return {found["metric"].get("instance", ""): float(found["value"][1])
            for found in answer.get("data", {}).get("result", [])
            if math.isfinite(float(found["value"][1]))}


class Gains:
    """What every counter series gained since the tracker first saw its replica, as
    `increase()` takes it; `from_zero` counts each series' whole value instead (`--once`: the
    counters' totals, each replica's since it started)."""

    def __init__(self, from_zero: bool = False) -> None:
        self.from_zero = from_zero
        self.gained: dict[Series, float] = {}
        self._last: dict[Series, float] = {}
        self._seen: set[str] = set()
        self._starts: dict[str, float] = {}
        self.gauges: Mapping[Series, float] = {}
        """The latest scrape's gauges (a replica that went away has none)."""

    def observe(self, scrape: Scrape) -> None:
        restarted = {source for source, start in scrape.starts.items()
                     if self._starts.get(source, start) != start}
        for series in self._last:
            if series[0] in restarted:
                self._last[series] = 0.0
        for series, value in scrape.counters.items():
            last = self._last.get(series)
            if last is None:
                gain = value if self.from_zero or series[0] in self._seen else 0.0
            elif value < last:
                gain = value  # restarted: everything it holds is new
            else:
                gain = value - last
            self.gained[series] = self.gained.get(series, 0.0) + gain
            self._last[series] = value
        self._seen |= scrape.sources
        self._starts.update(scrape.starts)
        self.gauges = scrape.gauges


def since(now: Mapping[Series, float], start: Mapping[Series, float]) -> dict[Series, float]:
    """The gains made between two snapshots of `Gains.gained`."""
    return {series: value - start.get(series, 0.0) for series, value in now.items()}


def evidence(gained: Mapping[Series, float], gauges: Mapping[Series, float], key: Key,
             full_window_rows: int) -> Evidence:
    """One version's evidence from the series' gains (and the drift gauges as they are now)."""
    model, version = key[0], str(key[1])
    requests = errors = labelled = correct = 0.0
    buckets: dict[float, float] = defaultdict(float)
    shadow: dict[str, float] = defaultdict(float)
    drift_rows: dict[str, float] = {}
    for (source, name, pairs), value in gained.items():
        labels = dict(pairs)
        if labels.get("model") != model or labels.get("version") != version:
            continue
        if name == REQUESTS:
            requests += value
            if labels.get("code", "").startswith("5"):
                errors += value
        elif name == DURATION_BUCKETS:
            buckets[float(labels["le"])] += value
        elif name == FEEDBACK_ROWS:
            labelled += value
        elif name == FEEDBACK_CORRECT:
            correct += value
        elif name == SHADOW_ROWS:
            shadow[labels.get("result", "")] += value
        elif name == DRIFT_ROWS:
            drift_rows[source] = drift_rows.get(source, 0.0) + value
    fresh = {source for source, rows in drift_rows.items() if rows >= full_window_rows}
    psi: dict[str, float] = {}
    for (source, name, pairs), value in gauges.items():  # a window holding pinned rows: wait
        labels = dict(pairs)
        if (name == DRIFT_PINNED_ROWS and value > 0 and labels.get("model") == model
                and labels.get("version") == version):
            fresh.discard(source)
    for (source, name, pairs), value in gauges.items():
        labels = dict(pairs)
        if (name == PREDICTION_PSI and source in fresh and labels.get("model") == model
                and labels.get("version") == version and not math.isnan(value)):
            output = labels.get("output", "")
            psi[output] = max(psi.get(output, -math.inf), value)
    bounds = tuple(sorted(buckets))
    return Evidence(
        requests=int(requests), errors=int(errors), duration_bounds=bounds,
        duration_counts=tuple(buckets[b] for b in bounds), labelled=int(labelled),
        correct=int(correct), shadow_rows={r: int(n) for r, n in shadow.items()},
        prediction_psi=psi,
        drift_rows=int(max((drift_rows[s] for s in fresh), default=max(drift_rows.values(),
                                                                         default=0.0))))


def versions(scrape: Scrape) -> Iterable[Key]:
    """Every (model, version) the scrape has evidence of."""
    seen = set()
    for _, _, pairs in (*scrape.counters, *scrape.gauges):
        labels = dict(pairs)
        if labels.get("version", "").isdigit():
            seen.add((labels.get("model", ""), int(labels["version"])))
    return sorted(seen)
