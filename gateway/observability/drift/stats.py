"""Drift statistics for every column at once, over flat counts laid end to end by `offsets`.

PSI (epsilon-smoothed), Jensen-Shannon distance (base 2, in [0, 1]) and the KS distance of the
binned CDFs, per column, as array operations: `np.add.reduceat` / `np.maximum.reduceat` sum and
take maxima within each column's bins. A column with no live rows gets NaN.

NaN and unseen categories are bins of their own for PSI, JS and the test when their counts are
given: a feature whose upstream breaks and sends NaN, or starts sending a category training
never saw, is drift (the reference's share of either is 0 when it had none, smoothed by
EPSILON, so a window half NaN reads PSI of about 4). KS compares the CDFs of the finite values
only, since NaN has no place in an order; it is NaN when the window has no finite value.

Whether a column drifted is a test, not a threshold: `p` is the chance of a difference at least
this large between the window's histogram and the reference's when both come from one
distribution, for this window's size and this column's bins. Two tests, each exact in its
tail function and cheap: Pearson's chi-square for two samples over every bin (NaN and unseen
included; it sees shape, spread and categories) and Kolmogorov-Smirnov on the binned CDFs (it
sees a shift of location best); `p` is twice the smaller of their p-values (Bonferroni over
the two). Binning only lowers KS, so its p-value errs towards no alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPSILON = 1e-4
"""Added to every bin's share before PSI, so an empty bin does not make it infinite."""


@dataclass(frozen=True)
class DriftRule:
    """Which columns of a family tested together (a version's features; its outputs; a model's
    labels) count as drifted: those the Benjamini-Hochberg procedure at `false_alarm_rate`
    picks from their p-values, and, when `psi_floor` is above 0, whose PSI also reaches it.

    When nothing drifted, every p-value is uniform and the procedure flags any column at all
    with chance at most `false_alarm_rate`: that is the false-alarm rate per window. When some
    columns drifted it flags more than Bonferroni's p <= rate / columns would (it lets each
    further small p-value lower the bar), at the price of a share of the flags being wrong
    that is itself held at the rate."""

    false_alarm_rate: float = 0.01
    psi_floor: float = 0.0

    def flags(self, psi: np.ndarray, p: np.ndarray) -> np.ndarray:
        """A boolean per column; NaN p-values (no rows) are never flagged, nor counted."""
        tested = ~np.isnan(p)
        flagged = np.zeros(len(p), dtype=bool)
        m = int(tested.sum())
        if m:
            ordered = np.sort(p[tested])
            passing = np.nonzero(ordered <= self.false_alarm_rate * np.arange(1, m + 1) / m)[0]
            if len(passing):
                flagged[tested] = p[tested] <= ordered[passing[-1]]
        if self.psi_floor > 0:
            flagged &= np.nan_to_num(psi) >= self.psi_floor
        return flagged


def _shares(counts: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    totals = np.add.reduceat(counts, offsets)
    sizes = np.diff(np.append(offsets, len(counts)))
    per_bin_total = np.repeat(totals, sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / per_bin_total, totals


def _psi_js(reference: np.ndarray, live: np.ndarray,
            offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    expected, _ = _shares(reference, offsets)
    actual, live_totals = _shares(live, offsets)
    e = expected + EPSILON
    a = np.nan_to_num(actual) + EPSILON
    psi = np.add.reduceat((a - e) * np.log(a / e), offsets)
    p, q = np.nan_to_num(expected), np.nan_to_num(actual)
    m = (p + q) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0)
    js = np.sqrt(np.clip(np.add.reduceat((kl_p + kl_q) / 2, offsets), 0.0, 1.0))
    return psi, js, live_totals == 0


def _ks(reference: np.ndarray, live: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    p = np.nan_to_num(_shares(reference, offsets)[0])
    q, live_totals = _shares(live, offsets)
    q = np.nan_to_num(q)
    sizes = np.diff(np.append(offsets, len(p)))
    cumulative = np.cumsum(p - q)
    start = np.repeat(np.concatenate([[0.0], cumulative[offsets[1:] - 1]]), sizes)
    ks = np.maximum.reduceat(np.abs(cumulative - start), offsets)
    ks[live_totals == 0] = np.nan
    return ks


def with_extra_bins(counts: np.ndarray, offsets: np.ndarray,
                    *extras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts with each column's extra counts (one array per kind, one value per column) as
    more bins after its own, in the order given, and the new offsets."""
    ends = np.append(offsets[1:], len(counts))
    values = np.stack([np.asarray(e, dtype=np.float64) for e in extras], axis=1).ravel()
    return (np.insert(counts, np.repeat(ends, len(extras)), values),
            offsets + np.arange(len(offsets)) * len(extras))


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


def _chi2_p(reference: np.ndarray, live: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Pearson's two-sample chi-square p-value per column, over its bins with any count."""
    sizes = np.diff(np.append(offsets, len(live)))
    r_total = np.repeat(np.add.reduceat(reference, offsets), sizes)
    l_total = np.repeat(np.add.reduceat(live, offsets), sizes)
    pooled = reference + live
    used = pooled > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        share = pooled / (r_total + l_total)
        r_expected, l_expected = r_total * share, l_total * share
        terms = np.where(used, (reference - r_expected) ** 2 / r_expected
                         + (live - l_expected) ** 2 / l_expected, 0.0)
    statistic = np.add.reduceat(np.nan_to_num(terms), offsets)
    df = np.add.reduceat(used.astype(np.int64), offsets) - 1
    return np.array([chi2_sf(float(x), int(d)) for x, d in zip(statistic, df, strict=True)])


def _ks_p(ks: np.ndarray, reference: np.ndarray, live: np.ndarray,
          offsets: np.ndarray) -> np.ndarray:
    """The KS distance's p-value per column, for its finite rows on both sides (Stephens'
    small-sample correction)."""
    r, n = np.add.reduceat(reference, offsets), np.add.reduceat(live, offsets)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(r * n / (r + n))
    return np.array([kolmogorov_sf(d * (e + 0.12 + 0.11 / e)) if e > 0 and d == d else 1.0
                     for d, e in zip(ks, np.nan_to_num(root), strict=True)])


def drift_statistics(reference: np.ndarray, live: np.ndarray, offsets: np.ndarray,
                     reference_nan: np.ndarray | None = None,
                     live_nan: np.ndarray | None = None,
                     live_unseen: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """psi, js, ks and p per column (NaN where a column has no live rows); with the NaN counts
    of both, NaN is a bin of its own, and with the window's unseen counts, unseen categories
    are one more (the reference has none by definition)."""
    reference, live = reference.astype(np.float64), live.astype(np.float64)
    ks = _ks(reference, live, offsets)
    ks_p = _ks_p(ks, reference, live, offsets)
    if reference_nan is not None and live_nan is not None:
        extras_r = [reference_nan]
        extras_l = [live_nan]
        if live_unseen is not None:
            extras_r.append(np.zeros(len(offsets)))
            extras_l.append(live_unseen)
        reference, offsets_all = with_extra_bins(reference, offsets, *extras_r)
        live, _ = with_extra_bins(live, offsets, *extras_l)
        offsets = offsets_all
    psi, js, empty = _psi_js(reference, live, offsets)
    p = np.minimum(1.0, 2 * np.minimum(_chi2_p(reference, live, offsets), ks_p))
    psi[empty] = js[empty] = p[empty] = np.nan
    return {"psi": psi, "js": js, "ks": ks, "p": p}
