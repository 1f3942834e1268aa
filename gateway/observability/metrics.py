"""Prometheus metrics of one gateway, in an explicit CollectorRegistry (never the global one).

Names and labels are the contract of SPEC section 6. Label values stay bounded: `model` and
`version` are names from the repository (`_unknown` for a model it does not have, `_none` for a
request answered before a version was chosen), `route` one of split, flag, pinned.
Children are bound once per label set and cached, so a request costs one dict lookup per metric.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

UNKNOWN_MODEL = "_unknown"
NO_VERSION = "_none"
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("gateway_requests_total", "Inference requests answered.",
                                ["model", "version", "route", "code"], registry=r)
        self.request_duration = Histogram(
            "gateway_request_duration_seconds", "Time from request to answer.",
            ["model", "version", "route"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.route_weight = Gauge("gateway_route_weight",
                                  "Share of unpinned traffic in the routing policy, percent.",
                                  ["model", "version"], registry=r)
        self.shadow_requests = Counter(
            "gateway_shadow_requests_total", "Mirrored requests by outcome.",
            ["model", "version", "result"], registry=r)
        self.config_reloads = Counter("gateway_config_reloads_total",
                                      "Routing policy reloads by result.", ["result"], registry=r)
        self.model_ready = Gauge("gateway_model_ready", "1 when the version serves, else 0.",
                                 ["model", "version"], registry=r)
        self._request_children: dict[tuple[str, str, str, str], Counter] = {}
        self._duration_children: dict[tuple[str, str, str], Histogram] = {}
        self._shadow_children: dict[tuple[str, str, str], Counter] = {}

    def observe_request(self, model: str, version: str, route: str, code: int,
                        duration_s: float) -> None:
        key = (model, version, route, str(code))
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(*key)
        child.inc()
        if code < 400:
            duration_key = (model, version, route)
            histogram = self._duration_children.get(duration_key)
            if histogram is None:
                histogram = self._duration_children[duration_key] = \
                    self.request_duration.labels(*duration_key)
            histogram.observe(duration_s)

    def count_shadow(self, model: str, version: int, result: str) -> None:
        key = (model, str(version), result)
        child = self._shadow_children.get(key)
        if child is None:
            child = self._shadow_children[key] = self.shadow_requests.labels(*key)
        child.inc()

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
