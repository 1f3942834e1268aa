"""The rollout's gates, pure (SPEC 9): the evidence two versions gathered since a step began in,
a verdict per gate out: pass, fail or wait.

Errors, accuracy and shadow agreement are judged with confidence sequences
(`gateway.rollout.stats`), at `alpha` shared equally among those that are set (a Bonferroni
split), so the chance of any false failure over the whole rollout, however often it is checked,
stays within `alpha`. Latency compares the two p99s read from the request-duration buckets;
prediction drift reads the canary's PSI once its drift window is full. A gate with too little
evidence waits: missing data is never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.rollout.stats import Interval, difference, proportion, quantile_from_buckets
from gateway.routing.rollout import Gates

PASS, FAIL, WAIT = "pass", "fail", "wait"
ERRORS, LATENCY, ACCURACY, SHADOW, DRIFT = ("errors", "latency", "accuracy",
                                           "shadow_agreement", "prediction_drift")


@dataclass(frozen=True)
class Evidence:
    """What one version's counters gained since the step began (summed over replicas)."""

    requests: int = 0
    errors: int = 0
    """Answers with a 5xx code."""
    duration_bounds: tuple[float, ...] = ()
    duration_counts: tuple[float, ...] = ()
    """Cumulative counts per bucket of gateway_request_duration_seconds (successes)."""
    labelled: int = 0
    correct: int = 0
    shadow: Mapping[str, int] = field(default_factory=dict)
    """gateway_shadow_requests_total by result, for this version as a shadow."""
    prediction_psi: Mapping[str, float] = field(default_factory=dict)
    """The version's gateway_prediction_drift_psi by output (a gauge: its value now)."""
    drift_window_rows: int = 0


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: str
    n_baseline: int
    n_canary: int
    estimate: float | None
    low: float | None
    high: float | None
    threshold: float

    def as_json(self) -> dict[str, object]:
        return {"gate": self.gate, "verdict": self.verdict, "n_baseline": self.n_baseline,
                "n_canary": self.n_canary, "estimate": _round(self.estimate),
                "low": _round(self.low), "high": _round(self.high),
                "threshold": self.threshold}


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 6)


def statistical_gates(gates: Gates, shadow_step: bool) -> int:
    """How many gates share alpha: errors, accuracy, and shadow agreement at step 0."""
    return sum([gates.max_error_rate_increase is not None, gates.accuracy_margin is not None,
                shadow_step and gates.min_shadow_agreement is not None])


def judge(gates: Gates, alpha: float, baseline: Evidence, canary: Evidence,
          shadow_step: bool = False, full_window_rows: int = 5000) -> list[GateResult]:
    """Every gate that is set, in SPEC order; at the shadow step (before the first weight) only
    shadow agreement and prediction drift, the canary serving nobody yet."""
    share = alpha / max(statistical_gates(gates, shadow_step), 1)
    results = []
    if shadow_step:
        if gates.min_shadow_agreement is not None:
            results.append(_shadow(canary, gates.min_shadow_agreement, share))
    else:
        if gates.max_error_rate_increase is not None:
            results.append(_errors(baseline, canary, gates, share))
        if gates.max_p99_ratio is not None:
            results.append(_latency(baseline, canary, gates))
        if gates.accuracy_margin is not None:
            results.append(_accuracy(baseline, canary, gates.accuracy_margin, share))
    if gates.max_prediction_psi is not None:
        results.append(_drift(canary, gates.max_prediction_psi, full_window_rows))
    return results


def _result(gate: str, verdict: str, baseline: int, canary: int, interval: Interval | None,
            threshold: float) -> GateResult:
    if interval is None:
        return GateResult(gate, verdict, baseline, canary, None, None, None, threshold)
    return GateResult(gate, verdict, baseline, canary, interval.estimate, interval.low,
                      interval.high, threshold)


def _errors(baseline: Evidence, canary: Evidence, gates: Gates, alpha: float) -> GateResult:
    limit = gates.max_error_rate_increase
    assert limit is not None
    interval = difference(canary.errors, canary.requests, baseline.errors, baseline.requests,
                          alpha)
    enough = min(baseline.requests, canary.requests) >= max(gates.min_requests, 1)
    if canary.requests and baseline.requests and interval.low > limit:
        verdict = FAIL
    elif enough and interval.high < limit:
        verdict = PASS
    else:
        verdict = WAIT
    return _result(ERRORS, verdict, baseline.requests, canary.requests, interval, limit)


def _latency(baseline: Evidence, canary: Evidence, gates: Gates) -> GateResult:
    limit = gates.max_p99_ratio
    assert limit is not None
    n_b, n_c = _observed(baseline), _observed(canary)
    if min(n_b, n_c) < max(gates.min_requests, 1):
        return _result(LATENCY, WAIT, n_b, n_c, None, limit)
    p99_b = quantile_from_buckets(baseline.duration_bounds, baseline.duration_counts)
    p99_c = quantile_from_buckets(canary.duration_bounds, canary.duration_counts)
    ratio = p99_c / p99_b if p99_b > 0 else math.inf
    verdict = FAIL if ratio > limit else PASS
    return GateResult(LATENCY, verdict, n_b, n_c, ratio, None, None, limit)


def _observed(evidence: Evidence) -> int:
    return int(evidence.duration_counts[-1]) if evidence.duration_counts else 0


def _accuracy(baseline: Evidence, canary: Evidence, margin: float, alpha: float) -> GateResult:
    interval = difference(canary.correct, canary.labelled, baseline.correct, baseline.labelled,
                          alpha)
    if not (canary.labelled and baseline.labelled):
        verdict = WAIT  # no labels: no verdict, and so no promotion
    elif interval.high < -margin:
        verdict = FAIL
    elif interval.low > -margin:
        verdict = PASS
    else:
        verdict = WAIT
    return _result(ACCURACY, verdict, baseline.labelled, canary.labelled, interval, -margin)


def _shadow(canary: Evidence, minimum: float, alpha: float) -> GateResult:
    agree = canary.shadow.get("agree", 0)
    compared = agree + canary.shadow.get("disagree", 0) + canary.shadow.get("error", 0)
    interval = proportion(agree, compared, alpha)
    if compared and interval.low >= minimum:
        verdict = PASS
    elif compared and interval.high < minimum:
        verdict = FAIL
    else:
        verdict = WAIT
    return _result(SHADOW, verdict, 0, compared, interval, minimum)


def _drift(canary: Evidence, limit: float, full_window_rows: int) -> GateResult:
    rows = canary.drift_window_rows
    if rows < full_window_rows or not canary.prediction_psi:
        return GateResult(DRIFT, WAIT, 0, rows, None, None, None, limit)
    worst = max(canary.prediction_psi.values())
    return GateResult(DRIFT, FAIL if worst >= limit else PASS, 0, rows, worst, None, None,
                      limit)


def verdict_of(results: Sequence[GateResult]) -> str:
    """fail if any gate fails, pass if every gate passes (and there is one), else wait."""
    if any(r.verdict == FAIL for r in results):
        return FAIL
    if results and all(r.verdict == PASS for r in results):
        return PASS
    return WAIT
