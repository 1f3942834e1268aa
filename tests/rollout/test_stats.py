"""The rollout statistics on simulated rollouts: confidence sequences stay valid however often
they are looked at, a clearly worse canary is caught, one inside the margin passes."""

from __future__ import annotations

import math

import numpy as np

from gateway.rollout.stats import difference, proportion, quantile_from_buckets

ALPHA = 0.05
LOOKS = range(100, 20_001, 100)  # a look every 100 rows per version, 200 looks


def test_a_a_rollouts_checked_at_every_look_exclude_the_truth_at_most_alpha() -> None:
    """1,000 A/A rollouts at 98% accuracy: the share in which any of 200 looks excludes the
    true difference (0) stays at most alpha; a plain 95% interval at every look does not."""
    rng = np.random.default_rng(0)
    sequences = plain = 0
    for _ in range(1000):
        a = np.cumsum(rng.random(LOOKS[-1]) < 0.98)
        b = np.cumsum(rng.random(LOOKS[-1]) < 0.98)
        seen_sequence = seen_plain = False
        for n in LOOKS:
            interval = difference(int(b[n - 1]), n, int(a[n - 1]), n, ALPHA)
            seen_sequence |= interval.low > 0 or interval.high < 0
            pa, pb = a[n - 1] / n, b[n - 1] / n
            se = math.sqrt(max(pa * (1 - pa) + pb * (1 - pb), 1e-12) / n)
            seen_plain |= abs(pb - pa) > 1.96 * se
        sequences += seen_sequence
        plain += seen_plain
    assert sequences / 1000 <= ALPHA
    assert plain / 1000 > 2 * ALPHA  # why a sequence, not repeated tests


def test_a_canary_four_points_worse_is_caught_and_one_inside_the_margin_passes() -> None:
    """Baseline 98%, margin 0.02: a canary at 94% is surely below -0.02 within a few thousand
    labelled rows per version; one at 97.5% is surely above it."""
    rng = np.random.default_rng(1)
    caught, passed = [], []
    for _ in range(100):
        a = np.cumsum(rng.random(20_000) < 0.98)
        worse = np.cumsum(rng.random(20_000) < 0.94)
        close = np.cumsum(rng.random(20_000) < 0.975)
        caught.append(next((n for n in LOOKS if difference(
            int(worse[n - 1]), n, int(a[n - 1]), n, ALPHA).high < -0.02), None))
        passed.append(next((n for n in LOOKS if difference(
            int(close[n - 1]), n, int(a[n - 1]), n, ALPHA).low > -0.02), None))
    assert all(n is not None and n <= 6000 for n in caught), caught
    assert all(n is not None and n <= 8000 for n in passed), passed
    assert 1000 <= float(np.median([n for n in caught if n])) <= 3000


def test_a_proportions_sequence_covers_it_at_every_look() -> None:
    rng = np.random.default_rng(2)
    misses = 0
    for _ in range(500):
        agree = np.cumsum(rng.random(10_000) < 0.9)
        misses += any(not (interval.low <= 0.9 <= interval.high)
                      for n in range(100, 10_001, 100)
                      for interval in [proportion(int(agree[n - 1]), n, ALPHA)])
    assert misses / 500 <= ALPHA
    empty = proportion(0, 0, ALPHA)
    assert math.isnan(empty.estimate) and (empty.low, empty.high) == (0.0, 1.0)
    assert proportion(0, 50, ALPHA).high > 0  # no errors yet is not certainty


def test_p99_from_buckets_as_prometheus_computes_it() -> None:
    bounds = [0.001, 0.005, 0.01, math.inf]
    assert quantile_from_buckets(bounds, [50, 90, 100, 100], 0.5) == 0.001
    assert abs(quantile_from_buckets(bounds, [0, 50, 100, 100], 0.99)
               - (0.005 + 0.005 * 49 / 50)) < 1e-12
    assert quantile_from_buckets(bounds, [0, 0, 90, 100], 0.99) == 0.01  # in +Inf: last bound
    assert math.isnan(quantile_from_buckets(bounds, [0, 0, 0, 0]))
