"""The rollout controller's statistics, pure: confidence sequences for proportions and their
difference, and a p99 from histogram buckets (SPEC 9).

A controller that looks at the evidence every 10 seconds and stops at the first interval that
excludes the margin would, with plain confidence intervals, roll back good canaries far more
often than `alpha` says: each look is another chance for noise to cross. A confidence sequence
holds at every look at once: with probability at least 1 - alpha the true value is inside every
interval it will ever produce, so stopping whenever it first excludes a value is safe.

The intervals are the asymptotic confidence sequences of Waudby-Smith, Arbour, Sinha, Kennedy
and Ramdas, "Time-uniform central limit theory and asymptotic confidence sequences" (Annals of
Statistics, 2024; arXiv:2103.06476), Theorem 2.2 (Robbins' normal mixture), in the closed form
GrowthBook uses for its sequential tests:

    estimate ± sigma * sqrt( 2 (n rho^2 + 1) / (n^2 rho^2) * log( sqrt(n rho^2 + 1) / alpha ) )

where sigma is the standard deviation of one observation (for a difference of two means, the
per-unit deviation sqrt(n * Var(difference)) with n the pooled count) and rho tunes where the
sequence is tightest: rho = sqrt((-2 log alpha + log(-2 log alpha + 1)) / n_tune), tightest
near n_tune observations. Proportions are shrunk by half an observation each way before their
variance is taken ((k + 0.5) / (n + 1)), so a run of zero errors does not read as certainty.

The guarantee is asymptotic. Simulated (2,000 runs, a look every 100 observations up to 10,000,
alpha 0.05): one proportion at 0.5 and 0.9 is missed by some look in 2.5% and 3.3% of runs, at
0.96 in 5.0%: near 0 or 1 the first small looks are where it is spent. The difference of two
proportions at 0.98 each: 2.5%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TUNE_N = 1000
"""Observations at which the sequences are tightest (a canary step's usual evidence)."""


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int
    """Observations behind it (both versions' for a difference)."""


def _radius(n: int, sigma: float, alpha: float, tune_n: int = TUNE_N) -> float:
    """The half-width of the asymptotic confidence sequence after n observations."""
    if n <= 0:
        return math.inf
    log_alpha = -2.0 * math.log(alpha)
    rho2 = (log_alpha + math.log(log_alpha + 1.0)) / tune_n
    spread = n * rho2 + 1.0
    return sigma * math.sqrt(2.0 * spread / (n * n * rho2) * math.log(math.sqrt(spread) / alpha))


def _shrunk(successes: int, n: int) -> float:
    return (successes + 0.5) / (n + 1.0)


def proportion(successes: int, n: int, alpha: float) -> Interval:
    """A confidence sequence for one proportion (e.g. shadow agreement), clipped to [0, 1]."""
    if n <= 0:
        return Interval(math.nan, 0.0, 1.0, 0)
    p = successes / n
    q = _shrunk(successes, n)
    radius = _radius(n, math.sqrt(q * (1 - q)), alpha)
    return Interval(p, max(0.0, p - radius), min(1.0, p + radius), n)


def difference(successes_b: int, n_b: int, successes_a: int, n_a: int,
               alpha: float) -> Interval:
    """A confidence sequence for p_b - p_a (canary minus baseline: 5xx share, accuracy)."""
    if n_a <= 0 or n_b <= 0:
        return Interval(math.nan, -1.0, 1.0, max(n_a, 0) + max(n_b, 0))
    pa, pb = successes_a / n_a, successes_b / n_b
    qa, qb = _shrunk(successes_a, n_a), _shrunk(successes_b, n_b)
    n = n_a + n_b
    variance = qa * (1 - qa) / n_a + qb * (1 - qb) / n_b
    radius = _radius(n, math.sqrt(variance * n), alpha)
    estimate = pb - pa
    return Interval(estimate, max(-1.0, estimate - radius), min(1.0, estimate + radius), n)


def quantile_from_buckets(bounds: Sequence[float], counts: Sequence[float],
                          q: float = 0.99) -> float:
    """The q-quantile of a Prometheus histogram's gains, as histogram_quantile computes it:
    `bounds` are the buckets' upper bounds (the last may be +Inf), `counts` the cumulative
    counts per bucket; linear within the bucket, the last finite bound when it falls past it.
    NaN without observations."""
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_bound
