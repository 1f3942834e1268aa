"""The rollout statistics on simulated evidence: the sequences stay valid however often they are
looked at, near 0 and 1 too and from the first few rows; a difference is judged with its variance
at the gate's limit, so a canary at the limit does not read as inside it; a histogram's tail is
read between its buckets, and past the last bucket nothing is read as known."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from gateway.observability.metrics import LATENCY_BUCKETS_S
from gateway.rollout.stats import (
    difference,
    proportion,
    quantile_from_buckets,
    share_above,
    tail_quantile,
)

ALPHA = 0.05
LOOKS = range(100, 20_001, 100)  # a look every 100 rows per version, 200 looks
BOUNDS = (*LATENCY_BUCKETS_S, math.inf)


def test_a_a_differences_checked_at_every_look_exclude_the_truth_at_most_alpha() -> None:
    """1,000 A/A rollouts at 98% accuracy: the share in which any of 200 looks excludes the
    true difference (0) stays at most alpha; a plain 95% interval at every look does not."""
    rng = np.random.default_rng(0)
    sequences = plain = 0
    for _ in range(1000):
        a = np.cumsum(rng.random(LOOKS[-1]) < 0.98)
        b = np.cumsum(rng.random(LOOKS[-1]) < 0.98)
        seen_sequence = seen_plain = False
        for n in LOOKS:
            interval = difference(int(b[n - 1]), n, int(a[n - 1]), n, ALPHA, at=-0.02)
            seen_sequence |= interval.low > 0 or interval.high < 0
            pa, pb = a[n - 1] / n, b[n - 1] / n
            se = math.sqrt(max(pa * (1 - pa) + pb * (1 - pb), 1e-12) / n)
            seen_plain |= abs(pb - pa) > 1.96 * se
        sequences += seen_sequence
        plain += seen_plain
    assert sequences / 1000 <= ALPHA
    assert plain / 1000 > 2 * ALPHA  # why a sequence, not repeated tests


def test_zero_errors_in_300_requests_is_no_proof_of_a_rate_below_one_percent() -> None:
    """The canary's own variance would read 0 of 300 as [0, 0.009] and pass a limit of 0.01,
    which a canary at 1.1% does 3.6% of the time; taken at the limit, it cannot."""
    interval = difference(0, 300, 6, 5700, ALPHA / 10, at=0.01)
    assert interval.high > 0.01
    assert difference(0, 30_000, 60, 570_000, ALPHA / 10, at=0.01).high < 0.01  # with plenty


def test_a_canary_at_the_error_limit_is_passed_at_most_alpha_of_the_time() -> None:
    """Baseline 0.1%, canary 1.1% (limit 0.01), the canary 5% of the traffic, a look every 50
    canary requests up to 3,000: the interval falls wholly below the limit in at most alpha of
    400 runs (with the canary's own variance: 10.7%)."""
    rng = np.random.default_rng(4)
    passed = 0
    for _ in range(400):
        base = np.cumsum(rng.random(57_000) < 0.001)
        canary = np.cumsum(rng.random(3000) < 0.011)
        passed += any(difference(int(canary[n - 1]), n, int(base[19 * n - 1]), 19 * n, ALPHA,
                                 at=0.01).high < 0.01 for n in range(100, 3001, 50))
    assert passed / 400 <= ALPHA


def test_one_proportion_near_0_and_1_is_covered_at_every_look_from_the_first_rows() -> None:
    """The exact sequence covers p at every look, 10 rows on (the asymptotic one it replaces
    missed 1% in 15% of runs, 99% in 12%, 95% in 9%)."""
    rng = np.random.default_rng(3)
    looks = range(10, 3001, 30)
    for p in (0.01, 0.95, 0.99):
        misses = 0
        for _ in range(150):
            k = np.cumsum(rng.random(looks[-1]) < p)
            misses += any(not (i.low <= p <= i.high) for n in looks
                          for i in [proportion(int(k[n - 1]), n, ALPHA, center=p)])
        assert misses / 150 <= ALPHA, (p, misses)
    empty = proportion(0, 0, ALPHA)
    assert math.isnan(empty.estimate) and (empty.low, empty.high) == (0.0, 1.0)
    assert proportion(0, 50, ALPHA, center=0.01).high > 0.01  # no slow request yet: not sure
    assert proportion(300, 300, ALPHA, center=0.99).low < 0.99  # 300 agreeing rows: not sure


def _lognormal(median_s: float, sigma: float, n: float = 1e6) -> tuple[float, ...]:
    """Cumulative bucket counts of n lognormal times, as many as the CDF says."""
    normal = NormalDist()
    return (*(n * normal.cdf(math.log(b / median_s) / sigma) for b in LATENCY_BUCKETS_S), n)


def test_a_lognormal_tail_is_read_between_buckets_2_5x_apart() -> None:
    """The p99 and the share above 1.5x it are read as they are, wherever the p99 falls in
    its bucket: an equal canary reads well below 1%, one at p99 ratio 1.5 at 1%."""
    normal = NormalDist()
    for median_s in np.geomspace(0.001, 0.2, 17):
        low, high = tail_quantile(BOUNDS, _lognormal(median_s, 0.5))
        true_p99 = median_s * math.exp(0.5 * normal.inv_cdf(0.99))
        assert low == high and abs(low / true_p99 - 1) < 0.02
        equal = share_above(BOUNDS, _lognormal(median_s, 0.5), 1.5 * low, surely=True) / 1e6
        at_limit = share_above(BOUNDS, _lognormal(1.5 * median_s, 0.5), 1.5 * low,
                               surely=True) / 1e6
        assert equal < 0.002 and abs(at_limit - 0.01) < 0.0005, (median_s, equal, at_limit)


def test_past_the_last_bucket_nothing_is_known_but_that_it_is_past() -> None:
    """A p99 in the +Inf bucket is somewhere above 5 s; a count above a time past 5 s is none
    surely and everything in +Inf possibly."""
    slow = (0,) * 14 + (10.0, 100.0)  # 90 of 100 past the last finite bound
    assert tail_quantile(BOUNDS, slow) == (5.0, math.inf)
    assert share_above(BOUNDS, slow, 7.5, surely=True) == 0.0
    assert share_above(BOUNDS, slow, 7.5, surely=False) == 90.0
    assert all(math.isnan(x) for x in tail_quantile(BOUNDS, (0.0,) * 16))


def test_p99_from_buckets_as_prometheus_computes_it() -> None:
    bounds = [0.001, 0.005, 0.01, math.inf]
    assert quantile_from_buckets(bounds, [50, 90, 100, 100], 0.5) == 0.001
    assert abs(quantile_from_buckets(bounds, [0, 50, 100, 100], 0.99)
               - (0.005 + 0.005 * 49 / 50)) < 1e-12
    assert quantile_from_buckets(bounds, [0, 0, 90, 100], 0.99) == 0.01  # in +Inf: last bound
    assert math.isnan(quantile_from_buckets(bounds, [0, 0, 0, 0]))
