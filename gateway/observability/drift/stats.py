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
distribution, for this window's size and this column's bins (drift.pvalues: a chi-square and a
KS test, rare bins pooled, the window counted as at most the reference's size, and a column
with too few rows per bin not tested). `DriftRule` turns a family's p-values into flags and
Benjamini-Hochberg adjusted p-values, which are what the report shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.observability.drift.pvalues import chi2_p, chi2_sf, kolmogorov_sf, ks_p, testable

__all__ = ["EPSILON", "DriftRule", "chi2_sf", "drift_statistics", "kolmogorov_sf",
           "with_extra_bins"]

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

    def adjusted(self, p: np.ndarray) -> np.ndarray:
        """Benjamini-Hochberg adjusted p-values of a family (NaN stays NaN, uncounted): the
        smallest rate at which the procedure would flag each column, so a column is flagged
        exactly when its adjusted p-value is at most `false_alarm_rate`."""
        tested = ~np.isnan(p)
        adjusted = np.full(len(p), np.nan)
        m = int(tested.sum())
        if m:
            order = np.argsort(p[tested], kind="stable")
            ranked = p[tested][order] * m / np.arange(1, m + 1)
            values = np.empty(m)
            values[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
            adjusted[tested] = values
        return adjusted

    def flags(self, psi: np.ndarray, p: np.ndarray) -> np.ndarray:
        """A boolean per column; NaN p-values (no rows, or not tested) are never flagged, nor
        counted."""
        flagged = np.asarray(np.nan_to_num(self.adjusted(p), nan=2.0) <= self.false_alarm_rate)
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


def drift_statistics(reference: np.ndarray, live: np.ndarray, offsets: np.ndarray,
                     reference_nan: np.ndarray | None = None,
                     live_nan: np.ndarray | None = None,
                     live_unseen: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """psi, js, ks and p per column (NaN where a column has no live rows), and `tested`: False
    where a column has too few rows per bin to test, its p then 1 (never flagged). With the NaN
    counts of both, NaN is a bin of its own, and with the window's unseen counts, unseen
    categories are one more (the reference has none by definition)."""
    reference, live = reference.astype(np.float64), live.astype(np.float64)
    ks = _ks(reference, live, offsets)
    p_ks = ks_p(ks, reference, live, offsets)
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
    tested = testable(reference, live, offsets) & ~empty
    p = np.where(tested, np.minimum(1.0, 2 * np.minimum(chi2_p(reference, live, offsets), p_ks)),
                 1.0)
    psi[empty] = js[empty] = p[empty] = np.nan
    return {"psi": psi, "js": js, "ks": ks, "p": p, "tested": tested}
