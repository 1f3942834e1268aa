"""The rollout's gates, pure (docs/routing.md): the evidence two versions gathered since a step
began in,
a verdict per gate out: pass, fail or wait.

The gates are one table, `GATES`: a row names the gate, the key of `Gates` that sets it, the
metrics it reads, the steps it is judged at, whether it spends a share of `alpha`, and the
function that judges it. A new gate is one row, one function and one test.

`alpha` bounds a false rollback over the whole rollout: every (gate, judged step) pair that
spends alpha gets an equal share (`alpha_share`, a Bonferroni split over gates and steps), and
each pair's sequence holds at every look within its step, so however often the controller looks
and however many steps the plan has, the chance that any gate ever fails an equal canary stays
within alpha. Each step's evidence starts afresh, so its sequences are new ones with their own
share. Missing or thin evidence waits: it is never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.observability.metrics import (
    FEEDBACK_CORRECT,
    FEEDBACK_ROWS,
    PREDICTION_PSI,
    REQUEST_DURATION,
    REQUESTS,
    SHADOW_ROWS,
)
from gateway.rollout.stats import Interval, difference, proportion, share_above, tail_quantile
from gateway.routing.rollout import Gates, RolloutPlan

PASS, FAIL, WAIT = "pass", "fail", "wait"
ERRORS, LATENCY, ACCURACY, SHADOW, DRIFT = ("errors", "latency", "accuracy",
                                           "shadow_agreement", "prediction_drift")

DURATION = REQUEST_DURATION

MIN_REQUESTS_FLOOR = 200
"""Requests per version the errors and latency gates need when `min_requests` is unset (0): a
1% share is two requests in 200, so fewer is too thin to pass on."""
P99_ROWS = 100
"""Successful baseline requests the latency gate needs before it reads the baseline's p99: with
fewer, the p99 is the slowest request, not a quantile."""
BASELINE_BAND_ALPHA = 0.5
"""How wide a band the baseline's p99 is read with to pass (see `_latency`): about one
standard deviation, enough to keep a canary at the limit promoted within alpha in simulation."""
SLOW_SHARE = 0.01
"""Share of the canary's answers that may be slower than `max_p99_ratio` x the baseline's p99:
the canary's p99 is within the ratio exactly when at most 1% of its answers are slower."""


@dataclass(frozen=True)
class Evidence:
    """What one version's counters gained since the step began (summed over replicas)."""

    requests: int = 0
    """Routed (route split or flag) requests answered, all codes."""
    errors: int = 0
    """Of those, answers with a 5xx code (504 timeouts included)."""
    duration_bounds: tuple[float, ...] = ()
    """`le` bounds of gateway_request_duration_seconds, +Inf last."""
    duration_counts: tuple[float, ...] = ()
    """Cumulative counts per bound (routed successful requests: the histogram observes
    successes)."""
    labelled: int = 0
    correct: int = 0
    shadow_rows: Mapping[str, int] = field(default_factory=dict)
    """This version as a shadow: rows by result agree / disagree / error."""
    prediction_psi: Mapping[str, float] = field(default_factory=dict)
    """Worst PSI per output over the replicas whose drift window holds only rows served at this
    step; empty while there is no such window (the drift gate waits)."""
    drift_rows: int = 0
    """Rows behind prediction_psi."""


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


Judge = Callable[[float, Gates, float, Evidence, Evidence], GateResult]
"""(the gate's limit, all gates, its share of alpha, baseline, canary) -> its result."""


@dataclass(frozen=True)
class Gate:
    name: str
    config_key: str
    """The field of `Gates` that sets it (None there: not checked)."""
    metrics: tuple[str, ...]
    at_shadow_step: bool
    """Judged at step 0, the canary a shadow at weight 0."""
    at_weighted_steps: bool
    """Judged at the steps that give the canary a weight (below 100)."""
    shares_alpha: bool
    """A sequence that spends a share of alpha (a fixed threshold does not)."""
    judge: Judge


def _interval(gate: str, verdict: str, baseline: float, canary: float,
              interval: Interval | None, threshold: float) -> GateResult:
    if interval is None:
        return GateResult(gate, verdict, int(baseline), int(canary), None, None, None, threshold)
    return GateResult(gate, verdict, int(baseline), int(canary), interval.estimate,
                      interval.low, interval.high, threshold)


def _needed(gates: Gates) -> int:
    return gates.min_requests or MIN_REQUESTS_FLOOR


def _errors(limit: float, gates: Gates, alpha: float, baseline: Evidence,
            canary: Evidence) -> GateResult:
    """Canary minus baseline 5xx share against `max_error_rate_increase`."""
    interval = difference(canary.errors, canary.requests, baseline.errors, baseline.requests,
                          alpha, at=limit)
    enough = min(baseline.requests, canary.requests) >= _needed(gates)
    if canary.requests and baseline.requests and interval.low > limit:
        verdict = FAIL
    elif enough and interval.high < limit:
        verdict = PASS
    else:
        verdict = WAIT
    return _interval(ERRORS, verdict, baseline.requests, canary.requests, interval, limit)


def _successes(evidence: Evidence) -> float:
    return evidence.duration_counts[-1] if evidence.duration_counts else 0.0


def _latency(limit: float, gates: Gates, alpha: float, baseline: Evidence,
             canary: Evidence) -> GateResult:
    """The share of the canary's answers slower than `max_p99_ratio` x the baseline's p99, each
    5xx counted as slow, against 1%, once both versions have `min_requests` (to pass, at least
    the floor). Read between the buckets (`stats.share_above`); where the
    +Inf bucket leaves it open, failing counts only what is surely slower and passing counts
    everything that may be, so two versions both past the last bound wait, never pass."""
    # 5xx count as slow, but only the canary's 5xx beyond the baseline's own share: an equal
    # canary sharing the baseline's errors would otherwise always read slow (a baseline with
    # 0.8% 5xx left no room under 1%), and the errors gate judges the 5xx themselves. Clipped
    # at 0, so noise in the two shares never makes a canary look faster than its successes.
    b_answers = _successes(baseline) + baseline.errors
    b_error_share = baseline.errors / b_answers if b_answers else 0.0
    c_answers = _successes(canary) + canary.errors
    errors = max(0.0, canary.errors - b_error_share * c_answers)
    answered = c_answers
    b_successes = _successes(baseline)
    if b_successes < P99_ROWS or not answered:
        return _interval(LATENCY, WAIT, baseline.requests, answered, None, SLOW_SHARE)
    # The baseline's p99 is itself an estimate: to pass, read it where the band's high share of
    # the baseline lies above (a faster bound, so the canary reads slower). Otherwise a canary
    # exactly at the limit is promoted whenever the baseline's sample happens to run slow (13%
    # of the time, simulated). Failing reads it plainly: equal canaries were never failed.
    band = proportion(round(SLOW_SHARE * b_successes), int(b_successes), BASELINE_BAND_ALPHA,
                      center=SLOW_SHARE)
    p99_low = tail_quantile(baseline.duration_bounds, baseline.duration_counts,
                            min(max(band.high, SLOW_SHARE), 0.5))[0]
    p99_high = tail_quantile(baseline.duration_bounds, baseline.duration_counts, SLOW_SHARE)[1]
    bounds, counts = canary.duration_bounds, canary.duration_counts
    surely = errors + share_above(bounds, counts, limit * p99_high, surely=True)
    maybe = errors + share_above(bounds, counts, limit * p99_low, surely=False)
    slow = proportion(surely, answered, alpha, center=SLOW_SHARE)
    maybe_slow = proportion(maybe, answered, alpha, center=SLOW_SHARE)
    fewest = min(baseline.requests, canary.requests)
    if fewest >= gates.min_requests and slow.low > SLOW_SHARE:  # with min_requests each
        verdict = FAIL
    elif fewest >= _needed(gates) and maybe_slow.high < SLOW_SHARE:
        verdict = PASS
    else:
        verdict = WAIT
    shown = Interval(maybe / answered, slow.low, maybe_slow.high, answered)
    return _interval(LATENCY, verdict, baseline.requests, answered, shown, SLOW_SHARE)


def _accuracy(limit: float, gates: Gates, alpha: float, baseline: Evidence,
              canary: Evidence) -> GateResult:
    """Canary minus baseline live accuracy against -`accuracy_margin`; no labels: wait."""
    interval = difference(canary.correct, canary.labelled, baseline.correct, baseline.labelled,
                          alpha, at=-limit)
    if not (canary.labelled and baseline.labelled):
        verdict = WAIT
    elif interval.high < -limit:
        verdict = FAIL
    elif interval.low > -limit:
        verdict = PASS
    else:
        verdict = WAIT
    return _interval(ACCURACY, verdict, baseline.labelled, canary.labelled, interval, -limit)


def _shadow(limit: float, gates: Gates, alpha: float, baseline: Evidence,
            canary: Evidence) -> GateResult:
    """Rows the canary as a shadow agreed on over rows compared (errors disagree), against
    `min_shadow_agreement`, with the exact sequence: agreement sits near 1."""
    agree = canary.shadow_rows.get("agree", 0)
    compared = agree + canary.shadow_rows.get("disagree", 0) + canary.shadow_rows.get("error", 0)
    interval = proportion(agree, compared, alpha, center=limit)
    if compared and interval.low > limit:
        verdict = PASS
    elif compared and interval.high < limit:
        verdict = FAIL
    else:
        verdict = WAIT
    return _interval(SHADOW, verdict, 0, compared, interval, limit)


def _drift(limit: float, gates: Gates, alpha: float, baseline: Evidence,
           canary: Evidence) -> GateResult:
    """The canary's worst output PSI against `max_prediction_psi`, once a window of this step's
    rows exists (a threshold, as section 5 sets it: it spends no alpha)."""
    if not canary.prediction_psi:
        return GateResult(DRIFT, WAIT, 0, canary.drift_rows, None, None, None, limit)
    worst = max(canary.prediction_psi.values())
    return GateResult(DRIFT, FAIL if worst >= limit else PASS, 0, canary.drift_rows, worst,
                      None, None, limit)


GATES: tuple[Gate, ...] = (
    Gate(ERRORS, "max_error_rate_increase", (REQUESTS,), False, True, True, _errors),
    Gate(LATENCY, "max_p99_ratio", (REQUESTS, DURATION), False, True, True, _latency),
    Gate(ACCURACY, "accuracy_margin", (FEEDBACK_ROWS, FEEDBACK_CORRECT), False, True, True,
         _accuracy),
    Gate(SHADOW, "min_shadow_agreement", (SHADOW_ROWS,), True, False, True, _shadow),
    Gate(DRIFT, "max_prediction_psi", (PREDICTION_PSI,), True, True, False, _drift),
)
"""Every gate, in the order docs/routing.md lists them."""


def _limit(gates: Gates, gate: Gate) -> float | None:
    value = getattr(gates, gate.config_key)
    return None if value is None else float(value)


def alpha_share(plan: RolloutPlan) -> float:
    """Each (gate, judged step) pair's share of alpha. Judged steps: step 0 when
    `min_shadow_agreement` is set, and every step below weight 100 (a step of 100 has no
    baseline to compare with and is never judged)."""
    shadow_step = plan.gates.min_shadow_agreement is not None
    weighted_steps = sum(1 for weight in plan.steps if weight < 100)
    spending = [g for g in GATES if g.shares_alpha and _limit(plan.gates, g) is not None]
    pairs = (shadow_step * sum(g.at_shadow_step for g in spending)
             + weighted_steps * sum(g.at_weighted_steps for g in spending))
    return plan.alpha / max(pairs, 1)


def judge(plan: RolloutPlan, baseline: Evidence, canary: Evidence,
          shadow_step: bool) -> list[GateResult]:
    """Every gate that is set, in table order; at the shadow step only those judged there
    (shadow agreement and prediction drift: the canary serves nobody yet)."""
    share = alpha_share(plan)
    results = []
    for gate in GATES:
        limit = _limit(plan.gates, gate)
        if limit is None or not (gate.at_shadow_step if shadow_step else gate.at_weighted_steps):
            continue
        results.append(gate.judge(limit, plan.gates, share, baseline, canary))
    return results


def unjudged(plan: RolloutPlan, shadow_step: bool) -> list[GateResult]:
    """Every gate that judge() would judge, as a wait with no numbers: what a person is shown
    when there is no evidence to judge (metrics that could not be read)."""
    return [GateResult(gate.name, WAIT, 0, 0, None, None, None,
                       _shown_threshold(gate, limit))
            for gate in GATES
            if (limit := _limit(plan.gates, gate)) is not None
            and (gate.at_shadow_step if shadow_step else gate.at_weighted_steps)]


def _shown_threshold(gate: Gate, limit: float) -> float:
    """The threshold a gate's row shows (what its estimate is compared with)."""
    return {ACCURACY: -limit, LATENCY: SLOW_SHARE}.get(gate.name, limit)


def verdict_of(results: Sequence[GateResult]) -> str:
    """fail if any gate fails, pass if every gate passes (and there is one), else wait."""
    if any(r.verdict == FAIL for r in results):
        return FAIL
    if results and all(r.verdict == PASS for r in results):
        return PASS
    return WAIT
