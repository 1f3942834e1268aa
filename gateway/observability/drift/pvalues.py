"""The p-value of each column's two-sample test, window against reference, over flat counts laid
end to end by `offsets` (README "Drift monitor").

Two tests, each with an exact tail function (no SciPy in the server): Pearson's chi-square for
two samples over every bin (NaN and unseen included; it sees shape, spread and categories) and
Kolmogorov-Smirnov on the binned CDFs (it sees a shift of location best); a column's p-value is
twice the smaller of the two (Bonferroni over the pair). Binning only lowers KS, so its p-value
errs towards no alarm.

Three guards keep the p-value honest where the textbook test is not:

- **Rare bins are pooled.** The chi-square's tail is only right when every bin expects a few
  rows; a rare category on a 50-row window expects a tenth of one, and its chance count reads as
  a huge discrepancy (2% false alarms at p <= 0.01). Bins whose expected count is below
  `MIN_EXPECTED` are summed into one bin per column before the test.
- **Too few rows is no test.** A column whose window (or reference) holds fewer than
  `ROWS_PER_BIN` rows per bin is not tested (`tested` False, p 1): it is reported as such and
  never flagged.
- **The window counts as at most `REFERENCE_MULTIPLE` times the reference.** The reference is a
  sample too, and its noise is shared by every window it is compared with: with 200 reference
  rows and 5,000-row windows, the test's verdict is almost fixed by the reference's draw, so an
  unlucky reference flags window after window (2.7% of such references flagged at least half of
  all windows, a page that never stops). Counting the window as no larger than the reference
  halves the weight of that shared noise in the statistic, so that noise alone almost never
  reaches the bar, at the price of seeing only the drift a reference of that size can resolve.
"""

from __future__ import annotations

import math

import numpy as np

MIN_EXPECTED = 5.0
"""Bins expecting fewer rows than this (on the smaller side) are pooled before the chi-square."""
ROWS_PER_BIN = 5
"""A column is tested once both its window and its reference hold this many rows per bin."""
REFERENCE_MULTIPLE = 1.0
"""The test counts a window as at most this many times the reference's rows."""


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square with `df` degrees of freedom, in closed form (the
    regularized upper gamma function at integer and half-integer shapes): no SciPy."""
    if df <= 0 or not x > 0:
        return 1.0
    y = x / 2
    if y > 700:
        return 0.0
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, df // 2):
            term *= y / k
            total += term
        return min(1.0, math.exp(-y) * total)
    total = math.erfc(math.sqrt(y))
    term = math.exp(-y) * math.sqrt(y) / math.gamma(1.5)
    for k in range(1, (df + 1) // 2):
        total += term
        term *= y / (k + 0.5)
    return min(1.0, total)


def kolmogorov_sf(t: float) -> float:
    """P(K > t) for Kolmogorov's distribution (the limit of sqrt(n) times the KS distance)."""
    if t < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = 2.0 * (-1) ** (k - 1) * math.exp(-2.0 * k * k * t * t)
        total += term
        if abs(term) < 1e-16:
            break
    return min(1.0, max(0.0, total))


def effective_rows(reference_rows: np.ndarray, live_rows: np.ndarray) -> np.ndarray:
    """The rows a window counts as in the test: its own, at most `REFERENCE_MULTIPLE` times
    the reference's."""
    return np.asarray(np.minimum(live_rows, REFERENCE_MULTIPLE * reference_rows))


def chi2_p(reference: np.ndarray, live: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Pearson's two-sample chi-square p-value per column, over its bins with any count, the
    bins expecting fewer than `MIN_EXPECTED` rows pooled into one, and the window counted as
    `effective_rows` (its counts scaled, its shares kept)."""
    sizes = np.diff(np.append(offsets, len(live)))
    r_rows, l_rows = np.add.reduceat(reference, offsets), np.add.reduceat(live, offsets)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(l_rows > 0, effective_rows(r_rows, l_rows) / l_rows, 0.0)
    live = live * np.repeat(scale, sizes)
    l_rows = l_rows * scale
    r_total, l_total = np.repeat(r_rows, sizes), np.repeat(l_rows, sizes)
    pooled = reference + live
    with np.errstate(invalid="ignore", divide="ignore"):
        share = pooled / (r_total + l_total)
    small = share * np.minimum(r_total, l_total) < MIN_EXPECTED
    kept = (pooled > 0) & ~small
    rare_r = np.add.reduceat(np.where(small, reference, 0.0), offsets)
    rare_l = np.add.reduceat(np.where(small, live, 0.0), offsets)
    terms = _terms(reference, live, r_total, l_total)
    rare = rare_r + rare_l > 0
    rare_term = np.where(rare, _terms(rare_r, rare_l, r_rows, l_rows), 0.0)
    # The pooled group may itself expect too few rows (one rare category of two, a binary flag
    # at 2% on a 60-row window): then it joins the column's largest bin instead of being a bin
    # of its own (Cochran's rule), else its chi-square tail is too heavy (3-16x the rate).
    with np.errstate(invalid="ignore", divide="ignore"):
        rare_expected = ((rare_r + rare_l) / (r_rows + l_rows)) * np.minimum(r_rows, l_rows)
    column = np.repeat(np.arange(len(offsets)), sizes)
    order = np.lexsort((np.where(kept, pooled, -1.0), column))
    biggest = order[np.cumsum(sizes) - 1]
    merge = rare & (np.nan_to_num(rare_expected) < MIN_EXPECTED) & kept[biggest]
    merged = _terms(reference[biggest] + rare_r, live[biggest] + rare_l, r_rows, l_rows)
    statistic = (np.add.reduceat(np.where(kept, terms, 0.0), offsets)
                 + np.where(merge, merged - terms[biggest], rare_term))
    df = np.add.reduceat(kept.astype(np.int64), offsets) + (rare & ~merge) - 1
    p = np.array([chi2_sf(float(x), int(d)) if d > 0 else 1.0
                  for x, d in zip(statistic, df, strict=True)])
    # A merged group is still tested, exactly: its count on the smaller side is Poisson (its
    # expectation is under 5) given the group's total, so a category training never had, in 2%
    # of a window, is still seen. Two tests of one column: each at half the level.
    for c in np.flatnonzero(merge):
        small_side, other = ((rare_l[c], rare_r[c]) if l_rows[c] <= r_rows[c]
                             else (rare_r[c], rare_l[c]))
        share_small = min(l_rows[c], r_rows[c]) / (l_rows[c] + r_rows[c])
        exact = poisson_two_sided(float(small_side), float((small_side + other) * share_small))
        p[c] = min(1.0, 2.0 * min(float(p[c]), exact))
    return p


def poisson_two_sided(k: float, mean: float) -> float:
    """Twice the smaller tail of a Poisson(`mean`) at the observed count `k` (rounded), at most
    1: exact, for the small expectations where the chi-square's approximation fails."""
    if mean <= 0:
        return 1.0 if k <= 0 else 0.0
    k_int = round(k)
    if k_int > mean + 40.0 * math.sqrt(mean) + 40.0:
        return 0.0  # far past the upper tail: no need to sum to it
    term = math.exp(-mean)
    below = 0.0  # P(X < k)
    for i in range(k_int):
        below += term
        term *= mean / (i + 1)
    at = term  # P(X = k)
    upper = max(0.0, 1.0 - below)  # P(X >= k)
    lower = min(1.0, below + at)  # P(X <= k)
    return min(1.0, 2.0 * min(upper, lower))


def _terms(reference: np.ndarray, live: np.ndarray, r_total: np.ndarray,
           l_total: np.ndarray) -> np.ndarray:
    """Each bin's two terms of the two-sample chi-square (0 where a bin or side is empty)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (reference + live) / (r_total + l_total)
        r_expected, l_expected = r_total * share, l_total * share
        terms = ((reference - r_expected) ** 2 / r_expected
                 + (live - l_expected) ** 2 / l_expected)
    return np.asarray(np.nan_to_num(terms, nan=0.0, posinf=0.0))


def ks_p(ks: np.ndarray, reference: np.ndarray, live: np.ndarray,
         offsets: np.ndarray) -> np.ndarray:
    """The KS distance's p-value per column, for its finite rows on both sides (the window's
    counted as `effective_rows`; Stephens' small-sample correction)."""
    r, n = np.add.reduceat(reference, offsets), np.add.reduceat(live, offsets)
    n = effective_rows(r, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(r * n / (r + n))
    return np.array([kolmogorov_sf(d * (e + 0.12 + 0.11 / e)) if e > 0 and d == d else 1.0
                     for d, e in zip(ks, np.nan_to_num(root), strict=True)])


def testable(reference: np.ndarray, live: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per column: whether both sides hold `ROWS_PER_BIN` rows per bin the reference uses."""
    bins = np.maximum(np.add.reduceat((reference > 0).astype(np.int64), offsets), 2)
    r_rows, l_rows = np.add.reduceat(reference, offsets), np.add.reduceat(live, offsets)
    return (l_rows >= ROWS_PER_BIN * bins) & (r_rows >= ROWS_PER_BIN * bins)
