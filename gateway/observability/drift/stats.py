"""Drift statistics for every column at once, over flat counts laid end to end by `offsets`.

PSI (epsilon-smoothed), Jensen-Shannon distance (base 2, in [0, 1]) and the KS distance of the
binned CDFs, per column, as array operations: `np.add.reduceat` / `np.maximum.reduceat` sum and
take maxima within each column's bins. A column with no live rows gets NaN.

NaN is a bin of its own for PSI and JS when the NaN counts are given: a feature whose upstream
breaks and sends NaN is drift, the largest there is (the reference's NaN share is 0 when it had
none, so a window half NaN reads PSI of about 4). KS compares the CDFs of the finite values
only, since NaN has no place in an order; it is NaN when the window has no finite value.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-4
"""Added to every bin's share before PSI, so an empty bin does not make it infinite."""


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


def with_nan_bins(counts: np.ndarray, nan: np.ndarray,
                  offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts with each column's NaN count as one more bin after its own, and the new offsets."""
    ends = np.append(offsets[1:], len(counts))
    return np.insert(counts, ends, nan), offsets + np.arange(len(offsets))


def drift_statistics(reference: np.ndarray, live: np.ndarray, offsets: np.ndarray,
                     reference_nan: np.ndarray | None = None,
                     live_nan: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """psi, js, ks per column (NaN where a column has no live rows); with the NaN counts of
    both, NaN is a bin of its own for PSI and JS."""
    reference, live = reference.astype(np.float64), live.astype(np.float64)
    ks = _ks(reference, live, offsets)
    if reference_nan is not None and live_nan is not None:
        reference_all, all_offsets = with_nan_bins(reference, reference_nan, offsets)
        live_all, _ = with_nan_bins(live, live_nan.astype(np.float64), offsets)
        psi, js, empty = _psi_js(reference_all, live_all, all_offsets)
    else:
        psi, js, empty = _psi_js(reference, live, offsets)
    psi[empty] = np.nan
    js[empty] = np.nan
    return {"psi": psi, "js": js, "ks": ks}
