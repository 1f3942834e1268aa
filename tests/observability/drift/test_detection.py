"""What the drift flag catches and what it does not, on labelled scenarios (seeded NumPy: a
50,000-row reference of 33 features of six distributions and three categoricals; see
loadtests/drift_scenarios.py). At the default false-alarm rate of 1% per window, measured over
200 windows without drift, and the detection rates the issue asked for, within sampling noise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from loadtests.drift_scenarios import SCENARIOS, detection, profile, reference_rows

NO_DRIFT = "no drift (false alarms per window)"


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return profile(reference_rows(np.random.default_rng(123), 50_000))


@pytest.mark.parametrize("rows", [1000, 5000])
def test_windows_without_drift_raise_false_alarms_at_the_configured_rate(
        reference: dict[str, Any], rows: int) -> None:
    rate = detection(reference, SCENARIOS[NO_DRIFT], rows, windows=200, seed=rows)
    assert rate <= 0.03  # 1% expected: 2 windows in 200; 6 or more has chance below 2%


@pytest.mark.parametrize("name,rows,at_least", [
    ("mean shift 0.1 sd", 1000, 0.4),
    ("mean shift 0.1 sd", 5000, 0.95),
    ("mean shift 0.25 sd", 1000, 0.95),
    ("variance x1.5, mean kept", 1000, 0.95),
    ("same mean and variance, other shape", 1000, 0.95),
    ("5 points moved between categories", 1000, 0.2),
    ("5 points moved between categories", 5000, 0.95),
    ("a new category takes 2%", 1000, 0.95),
    ("a feature turns 10% NaN", 1000, 0.95),
])
def test_drift_is_flagged(reference: dict[str, Any], name: str, rows: int,
                          at_least: float) -> None:
    assert detection(reference, SCENARIOS[name], rows, windows=10, seed=rows) >= at_least


def test_a_psi_floor_keeps_statistically_sure_but_small_changes_quiet(
        reference: dict[str, Any]) -> None:
    """On 5,000 rows a 0.1 sd shift is sure (flagged) and small (PSI about 0.01): a floor of
    0.1 PSI leaves it unflagged while a 0.25 sd shift still passes a floor of 0.05."""
    small = SCENARIOS["mean shift 0.1 sd"]
    assert detection(reference, small, 5000, windows=5) >= 0.95
    assert detection(reference, small, 5000, windows=5, psi_floor=0.1) == 0.0
    assert detection(reference, SCENARIOS["mean shift 0.25 sd"], 5000, windows=5,
                     psi_floor=0.05) >= 0.95
