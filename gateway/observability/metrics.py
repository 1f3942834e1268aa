"""Prometheus metrics of one gateway, in an explicit CollectorRegistry (never the global one).

Names and labels are the contract of docs/metrics.md. Label values stay bounded: `model` and
`version` are names from the repository (`_unknown` for a model it does not have, `_none` for a
request answered before a version was chosen), `route` one of split, flag, pinned.
Children are bound once per label set and cached, so a request costs one dict lookup per metric.

One registry per process. With one process per gateway (`server.workers: 1`, the default)
/metrics is the whole of that gateway. With workers (gateway.workers), each worker's registry is
a `GroupRegistry`: counters and histograms come from prometheus-client's multiprocess files,
summed over every worker the group has run (the dead included, so none goes backwards); gauges
come from the worker that takes the scrape, whose collectors compute them from the group's
counts (inflight summed, drift and feedback windows the group's; model ready and route weight
are the same in every worker); `process_*` are the supervisor's, so the group has one start
time however often a worker restarts. Scale out with replicas, each scraped on its own;
counters add up across them in PromQL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.batching.batcher import BatchObserver
from gateway.workers.group import Group, current_group

REQUESTS = "gateway_requests_total"
REQUEST_DURATION = "gateway_request_duration_seconds"
SHADOW_ROWS = "gateway_shadow_rows_total"
FEEDBACK_ROWS = "gateway_feedback_rows_total"
FEEDBACK_CORRECT = "gateway_feedback_correct_rows_total"
PREDICTION_PSI = "gateway_prediction_drift_psi"
DRIFT_ROWS = "gateway_drift_rows_total"
DRIFT_PINNED_ROWS = "gateway_drift_window_pinned_rows"
"""Names the rollout controller reads (gateway.rollout.gates and .evidence): one spelling for
the writer and the reader."""

UNKNOWN_MODEL = "_unknown"
NO_VERSION = "_none"
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 0.5, 1.0, 2.5, 5.0)
QUEUE_BUCKETS_S = (0.00001, 0.000025, 0.00005, *LATENCY_BUCKETS_S)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


ScrapeFamily = GaugeMetricFamily | CounterMetricFamily
FamilyTable = dict[str, tuple[type[ScrapeFamily], str, str, list[str]]]
"""Short name -> (kind, metric name, help, labels) of the families a collector fills."""


def make_families(table: FamilyTable) -> dict[str, ScrapeFamily]:
    """Fresh families for one scrape, by the short names of `table`."""
    return {key: kind(name, text, labels=labels)
            for key, (kind, name, text, labels) in table.items()}


Metric = TypeVar("Metric", Counter, Histogram)


class _Children(Generic[Metric]):
    """A metric family's children by label values, each made once: `labels()` takes a lock and
    validates its values on every call, which the request path would pay per request."""

    def __init__(self, family: Metric) -> None:
        self._family: Metric = family
        self._children: dict[tuple[str, ...], Metric] = {}

    def get(self, values: tuple[str, ...]) -> Metric:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._family.labels(*values)
        return child


class GroupRegistry(CollectorRegistry):
    """A worker's registry: the group's counters and histograms from the multiprocess files
    (every worker's, the dead's included), and this worker's gauges and collectors, which
    answer for the group themselves. A family the files hold is taken from the files only."""

    def __init__(self, group: Group, files: Path) -> None:
        super().__init__(auto_describe=False)
        self._group = group
        self._files = MultiProcessCollector(None, str(files))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Family]:
        self._group.sync_counters()  # this worker's mirrored counts, as of this scrape
        summed = [f for f in self._files.collect()  # type: ignore[no-untyped-call]
                  if f.type in _SUMMED]
        names = {f.name for f in summed}
        yield from summed
        for family in super().collect():
            if family.type not in _SUMMED or family.name not in names:
                yield family


_SUMMED = ("counter", "histogram")


class CounterMirror:
    """A counter kept as a plain total by other code (the drift and feedback windows' counts),
    copied into a prometheus-client Counter by its increase, so that in a worker it lands in the
    multiprocess files and the group's sum keeps it after the worker dies. Not registered: the
    files serve it."""

    def __init__(self, name: str, text: str, labels: Sequence[str]) -> None:
        self._counter = Counter(name, text, labels, registry=None)
        self._copied: dict[tuple[str, ...], tuple[Counter, float]] = {}

    def copy(self, labels: tuple[str, ...], total: float) -> None:
        """The total now (a total below the last copied one began again from 0: a version
        tracked anew)."""
        found = self._copied.get(labels)
        child, copied = found if found else (self._counter.labels(*labels), 0.0)
        increase = total - copied if total >= copied else total
        if increase > 0:
            child.inc(increase)
        self._copied[labels] = (child, total)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None,
                 group: Group | None = None) -> None:
        """`group`: the worker group this process serves in (default: the process's, None
        outside `gateway serve` with workers)."""
        self.group = group = group or current_group()
        files = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = registry or (GroupRegistry(group, Path(files)) if group and files
                                     else CollectorRegistry())
        r = self.registry
        # process_start_time_seconds among them: the rollout controller tells a restarted
        # replica by it, even when its counters climbed past their old values between checks.
        # A worker shows its supervisor's: a restarted worker is no restarted replica.
        if group is None:
            ProcessCollector(registry=r)
        else:
            ProcessCollector(pid=lambda: group.supervisor_pid, registry=r)
        self.requests = Counter(REQUESTS, "Inference requests answered.",
                                ["model", "version", "route", "code"], registry=r)
        self.request_duration = Histogram(
            REQUEST_DURATION, "Time from request to answer.",
            ["model", "version", "route"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.route_weight = Gauge("gateway_route_weight",
                                  "Share of unpinned traffic in the routing policy, percent.",
                                  ["model", "version"], registry=r)
        self.shadow_requests = Counter(
            "gateway_shadow_requests_total", "Mirrored requests by outcome.",
            ["model", "version", "result"], registry=r)
        self.shadow_rows = Counter(
            SHADOW_ROWS,
            "Rows of mirrored requests by agreement with the primary (every output both versions "
            "have equal on the row: floats within 1e-3 absolute or relative, NaN equal to NaN); "
            "error: rows the shadow failed on.",
            ["model", "version", "result"], registry=r)
        self.config_reloads = Counter("gateway_config_reloads_total",
                                      "Routing policy reloads by result.", ["result"], registry=r)
        for result in ("success", "error"):  # present from the start, so rate() sees the first
            self.config_reloads.labels(result)
        self.config_in_force = Gauge(
            "gateway_config_last_reload_success",
            "1 when the routing file on disk is the policy in force, 0 while an edit is rejected.",
            registry=r)
        self.config_in_force.set(1)
        self.model_ready = Gauge("gateway_model_ready", "1 when the version serves, else 0.",
                                 ["model", "version"], registry=r)
        self.queue_duration = Histogram(
            "gateway_queue_duration_seconds", "Time a request waited in its version's batch queue.",
            ["model", "version"], buckets=QUEUE_BUCKETS_S, registry=r)
        self.inference_duration = Histogram(
            "gateway_inference_duration_seconds", "Time of one (batched) onnxruntime call.",
            ["model", "version"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.batch_size = Histogram("gateway_batch_size", "Rows per onnxruntime call.",
                                    ["model", "version"], buckets=BATCH_SIZE_BUCKETS, registry=r)
        self._request_children = _Children(self.requests)
        self._duration_children = _Children(self.request_duration)
        self._shadow_children = _Children(self.shadow_requests)
        self._shadow_row_children = _Children(self.shadow_rows)

    def observe_request(self, model: str, version: str, route: str, code: int,
                        duration_s: float) -> None:
        self._request_children.get((model, version, route, str(code))).inc()
        if code < 400:
            self._duration_children.get((model, version, route)).observe(duration_s)

    def batch_observer(self, model: str, version: int) -> BatchObserver:
        """The per-batch callback of one version's batcher, its children bound once."""
        labels = (model, str(version))
        queue = self.queue_duration.labels(*labels)
        inference = self.inference_duration.labels(*labels)
        size = self.batch_size.labels(*labels)

        def observe(rows: int, waits_s: Sequence[float], run_s: float) -> None:
            for wait in waits_s:
                queue.observe(wait)
            inference.observe(run_s)
            size.observe(rows)
        return observe

    def forget_version(self, model: str, version: int) -> None:
        """Drop an unloaded version's per-batch series, so they do not linger at last values."""
        for family in (self.queue_duration, self.inference_duration, self.batch_size):
            with contextlib.suppress(KeyError):
                family.remove(model, str(version))

    def count_inflight(self, source: Callable[[], dict[str, int]]) -> None:
        """Serve `gateway_inflight_requests` from `source` (model -> requests) at scrape time,
        so the request path only moves its own counter."""
        group = self.group
        if group is not None:
            async def publish() -> dict[str, int]:
                return source()
            group.add_source("inflight", publish)
        self.registry.register(_InflightCollector(source, group))

    def show_config_in_force(self) -> None:
        """The routing file on disk is the policy in force again (a rejected edit undone)."""
        self.config_in_force.set(1)

    def count_reload(self, success: bool) -> None:
        """One routing edit applied or rejected. In a group every worker applies (or rejects)
        every edit, so only worker 0 counts it: one edit is one count for the group, as for one
        process (before, N). An edit that lands while worker 0 restarts is loaded by it at its
        start, which counts nothing, as a process's start counts nothing."""
        if self.group is None or self.group.worker == 0:
            self.config_reloads.labels("success" if success else "error").inc()
        self.config_in_force.set(1 if success else 0)

    def count_shadow(self, model: str, version: int, result: str, n: int = 1) -> None:
        self._shadow_children.get((model, str(version), result)).inc(n)

    def count_shadow_rows(self, model: str, version: int, result: str, n: int) -> None:
        """n rows of a shadow's mirrors under a result (agree, disagree, error): agreement is
        judged per row (docs/routing.md), which is what the rollout's shadow gate reads."""
        self._shadow_row_children.get((model, str(version), result)).inc(n)

    def set_weights(self, weights: dict[str, dict[int, float]]) -> None:
        """Replace every route weight with those of the policy now in force."""
        self.route_weight.clear()
        for model, versions in weights.items():
            for version, weight in versions.items():
                self.route_weight.labels(model, str(version)).set(weight)

    def set_ready(self, states: dict[tuple[str, int], bool]) -> None:
        self.model_ready.clear()
        for (model, version), ready in states.items():
            self.model_ready.labels(model, str(version)).set(1 if ready else 0)


class _InflightCollector(Collector):
    def __init__(self, source: Callable[[], dict[str, int]], group: Group | None) -> None:
        self.source = source
        self.group = group
        """In a worker: the peers' published counts are added (the group's inflight)."""

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily("gateway_inflight_requests",
                                   "Requests routed to a version and not yet answered by it.",
                                   labels=["model"])
        counts = dict(self.source())
        for peer in self.group.peers("inflight") if self.group else ():
            for model, count in peer.items():
                counts[model] = counts.get(model, 0) + int(count)
        for model, count in counts.items():
            family.add_metric([model], count)
        yield family
