"""Pages, not windows (issue 29): the shipped alert rules (config/prometheus/rules.yml) need a
drift flag held while a full window of new rows comes in, 30 minutes at 10 req/s and more, 6
hours below. Simulated through `DriftMonitor` a minute at a time, as Prometheus evaluates rules
(loadtests/drift_scenarios.alert_run; promtool tests the rules' PromQL itself). Full-size
figures, a month per rate: `make bench` table 10."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from loadtests.drift_regimes import alert_run
from loadtests.drift_scenarios import SCENARIOS, profile, reference_rows


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return profile(reference_rows(np.random.default_rng(123), 50_000))


def test_chance_flags_on_a_slow_stream_page_with_a_for_clause_but_not_with_the_shipped_rule(
        reference: dict[str, Any]) -> None:
    """A day at 1 req/s with no drift, at a false-alarm rate of 10% to see in a day what 1%
    does in a month: a window lasts 83 minutes there, so a chance flag easily outlives
    `for: 15m` (it paged 4 times in 30 days at 1%); held through 6 hours and a full window of
    new rows, none does."""
    for_15m = alert_run(reference, 60, 1440, for_minutes=15, seed=1, false_alarm_rate=0.1)
    shipped = alert_run(reference, 60, 1440, for_minutes=360, full_window=True, seed=1,
                        false_alarm_rate=0.1)
    assert len(for_15m) >= 1 and shipped == []


@pytest.mark.parametrize("name", ["mean shift 0.25 sd", "a new category takes 2%"])
def test_drift_pages_within_an_hour_at_10_requests_a_second(reference: dict[str, Any],
                                                            name: str) -> None:
    fired = alert_run(reference, 600, 60, for_minutes=30, full_window=True, seed=2,
                      scenario=SCENARIOS[name])
    assert fired and fired[0] <= 35  # minutes after the drift began
