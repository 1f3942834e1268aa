"""The rollout controller's statistics, pure (docs/routing.md): confidence sequences for one
proportion and
for the difference of two, and the tail of a Prometheus histogram read between its buckets.

A controller that looks at the evidence every 10 seconds and stops at the first interval that
excludes the limit would, with plain confidence intervals, roll back good canaries far more
often than `alpha` says: each look is another chance for noise to cross. A confidence sequence
holds at every look at once: with probability at least 1 - alpha the true value is inside every
interval it will ever produce, so stopping whenever it first excludes a value is safe.

One proportion (shadow agreement against 0.95, the latency gate's slow share against 1%) is
judged with an exact sequence: Robbins' beta-binomial mixture martingale. For each candidate p0,
M_n(p0) = integral of prod p^x (1-p)^(1-x) dBeta(p) / prod p0^x (1-p0)^(1-x) is a martingale of
mean 1 when p0 is true, so by Ville's inequality it ever reaches 1/alpha with chance at most
alpha; the p0 it has not reached are the sequence. Exact at every n, where a normal
approximation near 0 or 1 is not (it spent its alpha on the first small looks).

The difference of two proportions (5xx share, accuracy) uses the asymptotic sequence of
Waudby-Smith et al., "Time-uniform central limit theory and asymptotic confidence sequences"
(Annals of Statistics, 2024; arXiv:2103.06476), Theorem 2.2 (Robbins' normal mixture):

    estimate +- sigma * sqrt( 2 (n rho^2 + 1) / (n^2 rho^2) * log( sqrt(n rho^2 + 1) / alpha ) )

with its variance taken where the decision is hardest: the baseline's rate and the canary's at
the baseline's plus the gate's limit. Taken from the canary's own few observations instead, zero
errors in 300 requests reads as a tight interval around 0 and passes a canary whose true rate is
over the limit; at the boundary it cannot, and a canary exactly at the limit passes with chance
at most alpha (measured by `gateway.rollout.simulate`, bench table 11).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import NormalDist

_NORMAL = NormalDist()
TUNE_N = 1000
"""Observations at which the difference's sequence is tightest (a canary step's usual evidence)."""
PRIOR_ROWS = 100.0
"""Weight, in observations, of the beta mixture centred on the limit: its spread (about
sqrt(p0 (1 - p0) / 100), 0.01 at a 1% limit) is the distance from the limit it is quickest to
tell apart, a few hundred to a few thousand rows."""


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: float
    """Observations behind it (both versions' for a difference)."""


def _radius(n: float, sigma: float, alpha: float, tune_n: int = TUNE_N) -> float:
    """The half-width of the asymptotic confidence sequence after n observations."""
    if n <= 0:
        return math.inf
    log_alpha = -2.0 * math.log(alpha)
    rho2 = (log_alpha + math.log(log_alpha + 1.0)) / tune_n
    spread = n * rho2 + 1.0
    return sigma * math.sqrt(2.0 * spread / (n * n * rho2) * math.log(math.sqrt(spread) / alpha))


def _shrunk(successes: float, n: float) -> float:
    """Half an observation each way, so a run of zeros is not read as certainty."""
    return (successes + 0.5) / (n + 1.0)


def difference(successes_b: float, n_b: float, successes_a: float, n_a: float, alpha: float,
               at: float) -> Interval:
    """A confidence sequence for p_b - p_a (canary minus baseline: 5xx share, accuracy), its
    variance taken at p_b = p_a + `at`, the gate's limit, where passing and failing are
    hardest to tell apart."""
    if n_a <= 0 or n_b <= 0:
        return Interval(math.nan, -1.0, 1.0, max(n_a, 0) + max(n_b, 0))
    qa = _shrunk(successes_a, n_a)
    edge = 0.5 / (n_b + 1.0)
    qb = min(max(qa + at, edge), 1.0 - edge)
    n = n_a + n_b
    variance = qa * (1 - qa) / n_a + qb * (1 - qb) / n_b
    radius = _radius(n, math.sqrt(variance * n), alpha)
    estimate = successes_b / n_b - successes_a / n_a
    return Interval(estimate, max(-1.0, estimate - radius), min(1.0, estimate + radius), n)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def proportion(successes: float, n: float, alpha: float, center: float = 0.5) -> Interval:
    """The exact confidence sequence of one proportion: every p0 whose beta-binomial mixture
    likelihood ratio is still below 1/alpha. `center` is the limit the gate compares with; the
    mixture is centred there, so the sequence is tightest where the decision is made. Counts
    may be fractional (a histogram read between its buckets)."""
    if n <= 0:
        return Interval(math.nan, 0.0, 1.0, 0)
    k = min(max(successes, 0.0), n)
    c = min(max(center, 0.001), 0.999)
    a, b = PRIOR_ROWS * c, PRIOR_ROWS * (1 - c)
    margin = _log_beta(a + k, b + n - k) - _log_beta(a, b) - math.log(1.0 / alpha)
    estimate = k / n
    low = _edge(margin, k, n - k)
    high = 1.0 - _edge(margin, n - k, k)
    return Interval(estimate, low, high, n)


def _edge(margin: float, here: float, there: float) -> float:
    """The sequence's edge on one side: the p (low side; 1 - p for the high side, counts
    swapped) nearest 0 where log M_n(p) - log(1/alpha) = margin - here ln p - there ln(1 - p)
    is still >= 0, or 0 when even p -> 0 is plausible. In u = ln p that is convex and falls
    towards the estimate, so Newton's steps from far out approach the edge without crossing
    it: the answer is always on the rejected side, the interval errs wide."""
    if here <= 0:
        return 0.0
    u = math.log(1e-12)

    def excess(u: float) -> float:
        return margin - here * u - (there * math.log1p(-math.exp(u)) if there > 0 else 0.0)

    value = excess(u)
    if value < 0:
        return 0.0
    for _ in range(100):
        if value <= 1e-10:
            break
        slope = -here + (there * math.exp(u) / -math.expm1(u) if there > 0 else 0.0)
        if slope >= 0:
            break  # at the estimate (cannot happen for margin < 0, kept for safety)
        u -= value / slope
        value = excess(u)
    return math.exp(u)


def quantile_from_buckets(bounds: Sequence[float], counts: Sequence[float],
                          q: float = 0.99) -> float:
    """The q-quantile of a Prometheus histogram's gains, as histogram_quantile computes it (for
    people: the p99 shown beside the gates): linear within the bucket, the last finite bound
    when it falls past it. NaN without observations."""
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


def _survival(bounds: Sequence[float], counts: Sequence[float]) -> list[tuple[float, float]]:
    """(bound, share above it) for each finite bound, after (0, 1). An empty tail reads as half
    an observation: read in log-log, one count or none past a bound must not swing the reading
    between a share and nothing, and both versions are read alike."""
    total = counts[-1]
    points = [(0.0, 1.0)]
    points += [(b, max(total - c, 0.5) / total) for b, c in zip(bounds, counts, strict=True)
               if not math.isinf(b)]
    return points


def _z(share_above: float) -> float:
    return _NORMAL.inv_cdf(1.0 - share_above)


def _between(lo: tuple[float, float], hi: tuple[float, float], x: float) -> float:
    """The share above x within one bucket, read as a lognormal through both bounds: the
    normal quantile of the share is straight in log(time). Linear in the first bucket (from 0)
    and where nothing lies below the lower bound."""
    (x0, s0), (x1, s1) = lo, hi
    if x0 <= 0 or s0 >= 1.0:
        return s0 + (s1 - s0) * (x - x0) / (x1 - x0)
    fraction = math.log(x / x0) / math.log(x1 / x0)
    return 1.0 - _NORMAL.cdf(_z(s0) + fraction * (_z(s1) - _z(s0)))


def tail_quantile(bounds: Sequence[float], counts: Sequence[float],
                  share: float = 0.01) -> tuple[float, float]:
    """The time above which `share` of the observations lie, as (low, high): one value read
    between the bounds as `share_above` reads them, or (last finite bound, inf) when it falls
    past the last finite bucket, where nothing says how far. (nan, nan) without observations."""
    if not counts or counts[-1] <= 0:
        return math.nan, math.nan
    points = _survival(bounds, counts)
    for (x0, s0), (x1, s1) in pairwise(points):
        if s1 <= share:
            if x0 <= 0 or s0 >= 1.0:
                x = x0 + (x1 - x0) * (s0 - share) / (s0 - s1)
            else:
                x = x0 * (x1 / x0) ** ((_z(share) - _z(s0)) / (_z(s1) - _z(s0)))
            return x, x
    return points[-1][0], math.inf


def share_above(bounds: Sequence[float], counts: Sequence[float], x: float,
                surely: bool) -> float:
    """The observations above time x. Between two bucket bounds a histogram says nothing, and
    the gateway's buckets are 2-2.5x apart, wider than the 1.5 ratio the latency gate judges, so
    a reading only from the bounds could never pass an equal canary: it is read as a lognormal
    through the two bounds. Exact for lognormal latency; for gamma, Weibull, log-logistic or a
    1.5% slow mode a canary at p99 ratio 1.3 always reads below 1% and one at 1.7 above, so
    the gate's edge lies between 1.3 and 1.7 whatever the shape (straight lines, as
    histogram_quantile reads, put a true ratio of 1.3 above 1% for a quarter to a third of
    medians). Both versions are read alike, so an equal canary never reads above 1%. Past the
    last finite bound the +Inf bucket says nothing about where: `surely` counts none of it,
    else all of it."""
    if not counts or counts[-1] <= 0:
        return 0.0
    points = _survival(bounds, counts)
    total = counts[-1]
    for lo, hi in pairwise(points):
        if x <= hi[0]:
            return _between(lo, hi, max(x, lo[0])) * total
    return 0.0 if surely else points[-1][1] * total
