"""Drift statistics for every column at once, over flat counts laid end to end by `offsets`.

PSI (epsilon-smoothed), Jensen-Shannon distance (base 2, in [0, 1]) and the KS distance of the
binned CDFs, per column, as array operations: `np.add.reduceat` / `np.maximum.reduceat` sum and
take maxima within each column's bins. A column with no live rows gets NaN.
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


def drift_statistics(reference: np.ndarray, live: np.ndarray,
                     offsets: np.ndarray) -> dict[str, np.ndarray]:
    """psi, js, ks per column (NaN where a column has no live rows)."""
    expected, _ = _shares(reference.astype(np.float64), offsets)
    actual, live_totals = _shares(live.astype(np.float64), offsets)
    empty = live_totals == 0
    e = expected + EPSILON
    a = np.nan_to_num(actual) + EPSILON
    psi = np.add.reduceat((a - e) * np.log(a / e), offsets)
    p, q = np.nan_to_num(expected), np.nan_to_num(actual)
    m = (p + q) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0)
    js = np.sqrt(np.clip(np.add.reduceat((kl_p + kl_q) / 2, offsets), 0.0, 1.0))
    sizes = np.diff(np.append(offsets, len(p)))
    cumulative = np.cumsum(p - q)
    start = np.repeat(np.concatenate([[0.0], cumulative[offsets[1:] - 1]]), sizes)
    ks = np.maximum.reduceat(np.abs(cumulative - start), offsets)
    for values in (psi, js, ks):
        values[empty] = np.nan
    return {"psi": psi, "js": js, "ks": ks}
