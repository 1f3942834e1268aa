"""Whole rollouts simulated through the real gates (docs/routing.md), to show what `alpha`
promises: an
equal canary is falsely rolled back with chance at most alpha over every step and every look,
and a canary exactly at a gate's limit is promoted with chance at most alpha.

The decision rule is docs/routing.md's, written out here so the simulation does not depend on the
controller's plumbing: look every `check_s`; any gate fails -> rolled back; every gate passes
and the step has run `step_s` -> the next step, and passing the step before a step of 100 (or
the last step) -> promoted at once; a step still undecided after `max_step_s` -> rolled back,
inconclusive. With `min_shadow_agreement` set the rollout begins at step 0, the canary a shadow
at weight 0. Evidence starts afresh at each step, as the controller gathers it.

Traffic: requests arrive as a Poisson stream split by the step's weights; each version answers
5xx at its error rate and otherwise takes a lognormal time, counted into the gateway's own
request-duration buckets; a share of answers is labelled, correct at the version's accuracy; at
step 0 the shadow compares rows, agreeing at the canary's agreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from gateway.observability.metrics import LATENCY_BUCKETS_S
from gateway.rollout.gates import FAIL, PASS, Evidence, GateResult, judge, verdict_of
from gateway.routing.rollout import RolloutPlan

PROMOTED, ROLLED_BACK = "promoted", "rolled_back"
BOUNDS = (*LATENCY_BUCKETS_S, math.inf)
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Version:
    """How one simulated version behaves."""

    error_rate: float = 0.001
    median_s: float = 0.005
    sigma: float = 0.5
    """Of log(time): 0.5 puts the p99 at 3.2 x the median."""
    accuracy: float = 0.98
    agreement: float = 0.999
    """As a shadow: share of rows on which it agrees with the baseline."""
    psi: float = 0.01

    def bucket_shares(self) -> np.ndarray:
        """The share of successful answers in each bucket (the last is +Inf)."""
        cdf = [_NORMAL.cdf(math.log(b / self.median_s) / self.sigma)
               for b in LATENCY_BUCKETS_S]
        return np.diff(np.array([0.0, *cdf, 1.0]))


@dataclass(frozen=True)
class Traffic:
    requests_per_s: float = 100.0
    labelled_share: float = 0.5
    shadow_rows_per_s: float = 50.0
    drift_window_rows: int = 5000
    check_s: float = 10.0


@dataclass(frozen=True)
class Outcome:
    state: str
    """promoted or rolled_back."""
    step: int
    """The step index it ended at (-1: the shadow step)."""
    elapsed_s: float
    failed: tuple[str, ...]
    """The gates that failed; empty when promoted or rolled back as inconclusive."""
    looks: int
    canary: Evidence
    """The canary's evidence at the last step's decision (what it took to decide)."""


@dataclass
class _Tally:
    requests: int = 0
    errors: int = 0
    buckets: np.ndarray | None = None
    labelled: int = 0
    correct: int = 0
    agree: int = 0
    disagree: int = 0

    def evidence(self, psi: float, window_rows: int) -> Evidence:
        counts = () if self.buckets is None else tuple(float(c) for c in np.cumsum(self.buckets))
        served = self.requests + self.agree + self.disagree
        return Evidence(self.requests, self.errors, BOUNDS if counts else (), counts,
                        self.labelled, self.correct,
                        {"agree": self.agree, "disagree": self.disagree},
                        {"output": psi} if served >= window_rows else {}, served)


def _serve(tally: _Tally, version: Version, shares: np.ndarray, n: int, traffic: Traffic,
           rng: np.random.Generator) -> None:
    errors = int(rng.binomial(n, version.error_rate))
    buckets = rng.multinomial(n - errors, shares)
    tally.buckets = buckets if tally.buckets is None else tally.buckets + buckets
    labelled = int(rng.binomial(n, traffic.labelled_share))
    tally.requests += n
    tally.errors += errors
    tally.labelled += labelled
    tally.correct += int(rng.binomial(labelled, version.accuracy))


def simulate(plan: RolloutPlan, baseline: Version, canary: Version, traffic: Traffic,
             rng: np.random.Generator) -> Outcome:
    """One rollout from its first step to promoted or rolled back, by the rule of
    docs/routing.md."""
    judged = [i for i, weight in enumerate(plan.steps) if weight < 100]
    steps = ([-1] if plan.gates.min_shadow_agreement is not None else []) + judged
    shares_b, shares_c = baseline.bucket_shares(), canary.bucket_shares()
    elapsed_total, looks = 0.0, 0
    for position, step in enumerate(steps):
        weight = 0 if step < 0 else plan.steps[step]
        tally_b, tally_c = _Tally(), _Tally()
        elapsed = 0.0
        while True:
            elapsed += traffic.check_s
            looks += 1
            n = int(rng.poisson(traffic.requests_per_s * traffic.check_s))
            to_canary = int(rng.binomial(n, weight / 100))
            _serve(tally_b, baseline, shares_b, n - to_canary, traffic, rng)
            if step < 0:
                rows = int(rng.poisson(traffic.shadow_rows_per_s * traffic.check_s))
                agree = int(rng.binomial(rows, canary.agreement))
                tally_c.agree += agree
                tally_c.disagree += rows - agree
            else:
                _serve(tally_c, canary, shares_c, to_canary, traffic, rng)
            seen = tally_c.evidence(canary.psi, traffic.drift_window_rows)
            results = judge(plan, tally_b.evidence(baseline.psi, traffic.drift_window_rows),
                            seen, shadow_step=step < 0)
            verdict = verdict_of(results)
            if verdict == FAIL:
                return Outcome(ROLLED_BACK, step, elapsed_total + elapsed, _failed(results),
                               looks, seen)
            if verdict == PASS and elapsed >= plan.step_s:
                break
            if elapsed >= plan.max_step_s:
                return Outcome(ROLLED_BACK, step, elapsed_total + elapsed, (), looks, seen)
        elapsed_total += elapsed
        if position == len(steps) - 1:
            return Outcome(PROMOTED, step, elapsed_total, (), looks, seen)
    return Outcome(PROMOTED, -1, elapsed_total, (), looks, Evidence())  # no step to judge


def _failed(results: list[GateResult]) -> tuple[str, ...]:
    return tuple(r.gate for r in results if r.verdict == FAIL)


def at_limit(plan: RolloutPlan, gate: str, baseline: Version) -> Version:
    """A canary equal to the baseline except exactly at `gate`'s limit."""
    g = plan.gates
    if gate == "errors" and g.max_error_rate_increase is not None:
        return replace(baseline, error_rate=baseline.error_rate + g.max_error_rate_increase)
    if gate == "latency" and g.max_p99_ratio is not None:
        return replace(baseline, median_s=baseline.median_s * g.max_p99_ratio)
    if gate == "accuracy" and g.accuracy_margin is not None:
        return replace(baseline, accuracy=baseline.accuracy - g.accuracy_margin)
    if gate == "shadow_agreement" and g.min_shadow_agreement is not None:
        return replace(baseline, agreement=g.min_shadow_agreement)
    raise ValueError(f"gate {gate!r} is not set in this plan, or has no limit to sit at")
