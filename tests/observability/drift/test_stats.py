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
