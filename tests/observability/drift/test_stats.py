from __future__ import annotations

import numpy as np
from scipy.spatial.distance import jensenshannon

from gateway.observability.drift.stats import EPSILON, drift_statistics


def per_column(reference: np.ndarray, live: np.ndarray) -> tuple[float, float, float]:
    """The textbook definitions, one column at a time."""
    e, a = reference / reference.sum(), live / live.sum()
    psi = float(np.sum((a + EPSILON - e - EPSILON) * np.log((a + EPSILON) / (e + EPSILON))))
    js = float(jensenshannon(e, a, base=2))
    ks = float(np.max(np.abs(np.cumsum(e) - np.cumsum(a))))
    return psi, js, ks


def test_all_columns_at_once_match_the_definitions() -> None:
    rng = np.random.default_rng(1)
    sizes = [10, 4, 7]
    offsets = np.array([0, 10, 14])
    reference = rng.integers(1, 50, sum(sizes)).astype(float)
    live = rng.integers(0, 50, sum(sizes)).astype(float)
    stats = drift_statistics(reference, live, offsets)
    for i, (start, size) in enumerate(zip(offsets, sizes, strict=True)):
        psi, js, ks = per_column(reference[start:start + size], live[start:start + size])
        assert abs(stats["psi"][i] - psi) <= 1e-9
        assert abs(stats["js"][i] - js) <= 1e-9
        assert abs(stats["ks"][i] - ks) <= 1e-9


def test_identical_distributions_have_no_drift_and_empty_columns_are_nan() -> None:
    reference = np.array([5.0, 5, 10, 1, 1])
    live = np.array([10.0, 10, 20, 0, 0])
    stats = drift_statistics(reference, live, np.array([0, 3]))
    assert np.isclose(stats["psi"][0], 0) and np.isclose(stats["ks"][0], 0)
    assert np.isclose(stats["js"][0], 0, atol=1e-6)
    assert np.isnan(stats["psi"][1]) and np.isnan(stats["js"][1])


def test_nan_is_a_bin_of_its_own_for_psi_and_js_not_ks() -> None:
    reference = np.array([50.0, 50, 30, 70])
    live = np.array([25.0, 25, 0, 0])  # column 0: half NaN; column 1: all NaN
    offsets = np.array([0, 2])
    reference_nan, live_nan = np.array([0.0, 0]), np.array([50.0, 100])
    stats = drift_statistics(reference, live, offsets, reference_nan, live_nan)
    for i, (ref, got) in enumerate([([50, 50, 0], [25, 25, 50]), ([30, 70, 0], [0, 0, 100])]):
        psi, js, _ = per_column(np.array(ref, dtype=float), np.array(got, dtype=float))
        assert abs(stats["psi"][i] - psi) <= 1e-9 and abs(stats["js"][i] - js) <= 1e-9
    assert stats["psi"][0] > 4 and stats["psi"][1] > 9
    assert stats["ks"][0] == 0  # the finite half is shaped as the reference
    assert np.isnan(stats["ks"][1])  # no finite value to order
    without = drift_statistics(reference, live, offsets)
    assert without["psi"][0] == 0 and np.isnan(without["psi"][1])  # the blind spot it closes


def test_unseen_categories_are_a_bin_of_their_own() -> None:
    """A categorical feature that is half a category training never had read PSI 0.0005
    when unseen values were only counted apart; as a bin of its own, it is drift."""
    reference = np.array([300.0, 200])
    live = np.array([150.0, 100])
    offsets = np.array([0])
    stats = drift_statistics(reference, live, offsets, np.array([0.0]), np.array([0.0]),
                             np.array([250.0]))
    psi, js, _ = per_column(np.array([300.0, 200, 0]), np.array([150.0, 100, 250]))
    assert abs(stats["psi"][0] - psi) <= 1e-9 and abs(stats["js"][0] - js) <= 1e-9
    assert stats["psi"][0] > 4 and stats["p"][0] < 1e-12


def test_the_p_value_matches_scipys_tests() -> None:
    """Pearson's two-sample chi-square (scipy's chi2_contingency, no continuity correction)
    and the two-sample KS test's asymptotic p-value; p is twice the smaller."""
    from scipy.stats import chi2_contingency, kstwobign

    rng = np.random.default_rng(3)
    reference = rng.integers(50, 500, 8).astype(float)
    live = (reference * rng.uniform(0.7, 1.3, 8)).round()
    stats = drift_statistics(reference, live, np.array([0]))
    chi = chi2_contingency(np.vstack([reference, live]), correction=False).pvalue
    r, n = reference.sum(), live.sum()
    root = np.sqrt(r * n / (r + n))
    ks = kstwobign.sf(stats["ks"][0] * (root + 0.12 + 0.11 / root))
    assert abs(stats["p"][0] - min(1.0, 2 * min(chi, ks))) <= 1e-9
    same = drift_statistics(reference, reference.copy(), np.array([0]))
    assert same["p"][0] == 1.0
