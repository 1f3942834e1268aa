"""A replica's /metrics for the controller's tests, in the text the gateway writes: the request
counter and the request-duration histogram with the gateway's own buckets
(gateway.observability.metrics), the feedback, drift and process families. Counts are kept as
numbers so that hours of traffic cost nothing to simulate."""

from __future__ import annotations

from collections import defaultdict

from gateway.observability.metrics import LATENCY_BUCKETS_S

MODEL = "breast cancer"
Key = tuple[str, int]


class Replica:
    def __init__(self, started_s: float | None = None) -> None:
        self.requests: dict[tuple[str, int, str, int], int] = defaultdict(int)
        self.durations: dict[tuple[str, int, str, float], int] = defaultdict(int)
        self.labelled: dict[Key, int] = defaultdict(int)
        self.correct: dict[Key, int] = defaultdict(int)
        self.drift_rows: dict[int, int] = {}
        self.psi: dict[int, float] = {}
        self.started_s = started_s

    def serve(self, version: int, n: int, route: str = "split", code: int = 200,
              duration_s: float = 0.002, model: str = MODEL) -> None:
        self.requests[model, version, route, code] += n
        if code < 400:  # as the gateway: the histogram observes successes
            self.durations[model, version, route, duration_s] += n

    def label(self, version: int, n: int, right: int, model: str = MODEL) -> None:
        self.labelled[model, version] += n
        self.correct[model, version] += right

    def text(self) -> str:
        def family(name: str, kind: str, values: dict[Key, int] | dict[Key, float],
                   extra: str = "") -> list[str]:
            return [f"# TYPE {name} {kind}",
                    *(f'{name}{{model="{m}",{extra}version="{v}"}} {n}'
                      for (m, v), n in values.items())]

        lines = ["# TYPE gateway_requests_total counter",
                 *(f'gateway_requests_total{{code="{c}",model="{m}",route="{r}",'
                   f'version="{v}"}} {n}' for (m, v, r, c), n in self.requests.items()),
                 "# TYPE gateway_request_duration_seconds histogram"]
        for (m, v, r), counts in self._buckets().items():
            labels = f'model="{m}",route="{r}",version="{v}"'
            lines += [f'gateway_request_duration_seconds_bucket{{le="{bound}",{labels}}} {n}'
                      for bound, n in counts]
        lines += [
                 *family("gateway_feedback_rows_total", "counter", self.labelled),
                 *family("gateway_feedback_correct_rows_total", "counter", self.correct),
                 *family("gateway_drift_rows_total", "counter",
                         {(MODEL, v): n for v, n in self.drift_rows.items()}),
                 *family("gateway_prediction_drift_psi", "gauge",
                         {(MODEL, v): p for v, p in self.psi.items()}, 'output="label",')]
        if self.started_s is not None:
            lines += ["# TYPE process_start_time_seconds gauge",
                      f"process_start_time_seconds {self.started_s}"]
        return "\n".join(lines) + "\n"

    def _buckets(self) -> dict[tuple[str, int, str], list[tuple[str, int]]]:
        """Cumulative bucket counts per series, as prometheus-client writes them."""
        found: dict[tuple[str, int, str], list[tuple[str, int]]] = {}
        series = {(m, v, r) for m, v, r, _ in self.durations}
        for m, v, r in series:
            found[m, v, r] = [
                (str(bound), sum(n for (m2, v2, r2, d), n in self.durations.items()
                                 if (m2, v2, r2) == (m, v, r) and d <= bound))
                for bound in (*LATENCY_BUCKETS_S, float("inf"))]
            found[m, v, r][-1] = ("+Inf", found[m, v, r][-1][1])
        return found
