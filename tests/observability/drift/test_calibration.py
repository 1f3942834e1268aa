"""The calibrated flag where real models live (issue 29): rare categories and small windows,
small references, point masses, and the adjusted p-value. Each through the offline API
(`DriftMonitor`, `DriftRule`), seeded and small."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from gateway.observability.drift import DriftMonitor, DriftRule
from gateway.observability.drift.profile import build_profile
from loadtests.drift_scenarios import SCENARIOS, names, profile, reference_rows

LEVELS = 20
SHARES = 0.7 ** np.arange(LEVELS) / (0.7 ** np.arange(LEVELS)).sum()
"""Twenty uneven categories: 30% down to 0.03%."""


def categorical_reference(rng: np.random.Generator, rows: int, columns: int) -> dict[str, Any]:
    data = rng.choice(LEVELS, size=(rows, columns), p=SHARES)
    return {"rows": rows, "features": [
        {"name": f"c{j}", "kind": "categorical", "categories": list(range(LEVELS)),
         "counts": [int((data[:, j] == c).sum()) for c in range(LEVELS)]}
        for j in range(columns)]}


def raw_p_values(monitor: DriftMonitor) -> np.ndarray:
    """Each column's own p-value (`p_value` before the adjusted one took that name)."""
    raw = [f.get("p_value_raw", f["p_value"]) for f in monitor.report()["features"]]
    return np.array([np.nan if p is None else p for p in raw], dtype=np.float64)


def test_rare_categories_on_small_windows_keep_the_nominal_rate() -> None:
    """100-row windows (5 per category) of 20 uneven categories: most categories expect
    under one row. Unpooled, 7% of columns had p <= 0.01; pooled, about 1%."""
    rng = np.random.default_rng(1)
    reference = categorical_reference(rng, 50_000, 50)
    p = []
    for _ in range(40):  # 2,000 columns
        monitor = DriftMonitor(reference, window_rows=100)
        monitor.ingest(rng.choice(LEVELS, size=(100, 50), p=SHARES).astype(float))
        p.append(raw_p_values(monitor))
    values = np.concatenate(p)
    assert not np.isnan(values).any()  # 100 rows of 20 categories is tested
    assert (values <= 0.01).mean() <= 0.02  # 1% expected; the unpooled test gave 7%
    assert (values <= 0.001).mean() <= 0.003  # 0.1% expected; unpooled, 3.4%


def test_a_window_too_small_to_test_is_reported_as_not_tested() -> None:
    """50 rows of 20 categories is under 5 rows per bin: not tested, never flagged, and the
    report says so; at 100 rows it is tested."""
    rng = np.random.default_rng(2)
    monitor = DriftMonitor(categorical_reference(rng, 50_000, 3), window_rows=100)
    monitor.ingest(np.full((50, 3), 19.0))  # every row the rarest category: plainly drift
    for feature in monitor.report(DriftRule(false_alarm_rate=0.5))["features"]:
        assert feature.get("tested") is False
        assert feature["p_value"] is None and not feature["drifted"]
        assert feature["psi"] is not None and feature["psi"] > 1  # the distances still show
    monitor.ingest(np.full((50, 3), 19.0))
    assert all(f.get("tested") and f["drifted"] for f in monitor.report()["features"])


def test_a_small_reference_does_not_flag_window_after_window() -> None:
    """200-row references, 5,000-row windows: the reference's own noise is shared by every
    window. Before, the references the test flagged were flagged nearly every window (a page
    that never stops): counting the window as no larger than the reference ends that."""
    rng = np.random.default_rng(5)
    rule = DriftRule(false_alarm_rate=0.1)
    persistent = flagged = 0
    references = 50
    for _ in range(references):
        reference = build_profile(reference_rows(rng, 200)[:, :10], names()[:10])
        hits = 0
        for _ in range(4):
            monitor = DriftMonitor(reference, window_rows=5000)
            monitor.ingest(reference_rows(rng, 5000)[:, :10])
            hits += any(f["drifted"] for f in monitor.report(rule)["features"])
        persistent += hits >= 3
        flagged += hits
    assert persistent <= 1  # before: 3 of these 50 references flagged 3 or 4 windows of 4
    assert flagged / (4 * references) <= 0.1


def test_a_small_reference_is_warned_about_at_load(caplog: pytest.LogCaptureFixture) -> None:
    reference = profile(reference_rows(np.random.default_rng(6), 200))
    with caplog.at_level(logging.WARNING, logger="gateway.drift"):
        DriftMonitor(reference, window_rows=5000)
    assert "has 200 reference rows, fewer than a window's 5000" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.drift"):
        DriftMonitor(reference, window_rows=200)
    assert caplog.text == ""


def zero_heavy(rng: np.random.Generator, rows: int, zeros: float) -> np.ndarray:
    return np.where(rng.random(rows) < zeros, 0.0, rng.exponential(1.0, rows))


def test_a_point_mass_gets_a_bin_of_its_own_in_a_built_profile() -> None:
    """93% zeros: plain deciles make every edge 0 and one bin, where a window of 50% zeros read
    PSI 0. `build_profile` gives 0 a bin of its own."""
    rng = np.random.default_rng(7)
    reference = build_profile(zero_heavy(rng, 5000, 0.93)[:, None], ["z"])
    (column,) = reference["features"]
    assert column["edges"][0] == 0.0 and len(column["edges"]) == len(set(column["edges"]))
    assert abs(column["counts"][1] / 5000 - 0.93) < 0.02  # the bin {0}
    assert _flagged(reference, rng, 0.5) and not _flagged(reference, rng, 0.93)


def test_a_profile_whose_decile_edges_repeat_a_value_is_still_monitored(
        caplog: pytest.LogCaptureFixture) -> None:
    """A reference.json written with NumPy's deciles of a 93%-zero column (every edge 0): the
    gateway reads it with 0 in a bin of its own, its share bounded by the deciles, and warns."""
    rng = np.random.default_rng(8)
    values = zero_heavy(rng, 5000, 0.93)
    edges = np.quantile(values, np.linspace(0, 1, 11)[1:-1])
    assert (edges == 0).all()
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=10)
    reference = {"rows": 5000, "features": [
        {"name": "z", "kind": "numeric", "edges": [float(e) for e in edges],
         "counts": [int(c) for c in counts], "nan": 0}]}
    with caplog.at_level(logging.WARNING, logger="gateway.drift"):
        assert _flagged(reference, rng, 0.5)
    assert "build_profile" in caplog.text
    assert not _flagged(reference, rng, 0.93) and not _flagged(reference, rng, 0.97)


def _flagged(reference: dict[str, Any], rng: np.random.Generator, zeros: float) -> bool:
    monitor = DriftMonitor(reference, window_rows=2000)
    monitor.ingest(zero_heavy(rng, 2000, zeros)[:, None])
    return bool(monitor.report()["features"][0]["drifted"])


def test_the_report_shows_the_adjusted_p_value_beside_the_flag() -> None:
    """`p_value` is Benjamini-Hochberg adjusted in the family, so a column is drifted exactly
    when it is at most the rate; the raw one is `p_value_raw`. Before, a p_value of 0.004 could
    sit beside drifted: false."""
    rng = np.random.default_rng(9)
    reference = profile(reference_rows(np.random.default_rng(123), 50_000))
    rule = DriftRule(false_alarm_rate=0.01)
    between = 0
    for _ in range(4):
        window, _ = SCENARIOS["mean shift 0.1 sd"](rng, 1000)
        monitor = DriftMonitor(reference, window_rows=1000)
        monitor.ingest(window)
        for feature in monitor.report(rule)["features"]:
            assert feature["drifted"] == (feature["p_value"] <= 0.01)
            raw = feature.get("p_value_raw")
            assert raw is not None and raw <= feature["p_value"]
            between += raw <= 0.01 < feature["p_value"]
    assert between > 0  # small raw p-values that the family does not flag exist


@pytest.mark.parametrize("value", [0.1, -3.7, 1e12 + 0.3])
def test_a_point_mass_holds_its_float32_rounding(value: float) -> None:
    """Review of issue 29: a repeated value's bin was one float wide, so a model served in
    float32 (0.1 arrives as 0.100000001) read every such row as drift, a page that never
    stopped. The bin now holds the value within a millionth of it; a real move still shows."""
    import numpy as np

    from gateway.observability.drift import DriftMonitor, DriftRule
    from gateway.observability.drift.profile import build_profile

    rng = np.random.default_rng(7)

    def column(rows: int, share: float) -> np.ndarray:
        return np.where(rng.random(rows) < share, value, rng.normal(size=rows) + value)

    reference = build_profile(column(20_000, 0.5).reshape(-1, 1), ["x"])
    same = DriftMonitor(reference, window_rows=5000)
    same.ingest(column(5000, 0.5).astype(np.float32).reshape(-1, 1))
    assert not same.report(DriftRule())["features"][0]["drifted"]
    if abs(value) < 1e6:  # float32 cannot tell 1e12 + noise from 1e12: nothing to move
        moved = DriftMonitor(reference, window_rows=5000)
        moved.ingest(column(5000, 0.3).astype(np.float32).reshape(-1, 1))
        assert moved.report(DriftRule())["features"][0]["drifted"]


def test_a_binary_flag_with_one_rare_level_holds_the_rate_on_small_windows() -> None:
    """Review of issue 29: pooling rare bins did nothing when only one bin is rare (a flag at
    2% on 60-row windows flagged 5.5% of windows at 1%); the pooled group now joins the
    column's largest bin, and is tested on its own exactly (a Poisson tail), so a new category
    is still seen."""
    import logging

    import numpy as np

    from gateway.observability.drift import DriftMonitor, DriftRule

    logging.disable(logging.WARNING)
    try:
        rng = np.random.default_rng(11)
        profile = {"rows": 50_000, "features": [
            {"name": f"flag{i}", "kind": "categorical", "categories": [0, 1],
             "counts": [49_000, 1_000]} for i in range(10)]}
        flagged = 0
        for _ in range(300):
            monitor = DriftMonitor(profile, window_rows=60)
            monitor.ingest((rng.random((60, 10)) < 0.02).astype(np.float64))
            flagged += any(f["drifted"] for f in monitor.report(DriftRule())["features"])
        assert flagged / 300 <= 0.02
        moved = DriftMonitor(profile, window_rows=60)
        window = (rng.random((60, 10)) < 0.02).astype(np.float64)
        window[:12, 0] = 2.0  # a value training never had, in a fifth of the rows
        moved.ingest(window)
        assert moved.report(DriftRule())["features"][0]["drifted"]
    finally:
        logging.disable(logging.NOTSET)
