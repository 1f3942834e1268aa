from __future__ import annotations

import pytest

from gateway.batching.execution import INLINE_MAX_S, choose_execution, time_call


def test_auto_runs_fast_models_inline_and_slow_ones_on_a_thread() -> None:
    assert choose_execution("auto", INLINE_MAX_S / 2) == "inline"
    assert choose_execution("auto", INLINE_MAX_S * 2) == "thread"


def test_an_explicit_setting_wins_over_the_measurement() -> None:
    assert choose_execution("thread", 1e-6) == "thread"
    assert choose_execution("inline", 1.0) == "inline"


def test_time_call_is_the_median_of_the_measured_calls_after_a_warm_up() -> None:
    """A clock that each call moves by a set amount: the first (warm-up) call's 9 s and one
    outlier's 7 s must not count; the median of the rest is 0.002 s."""
    durations = iter([9.0, 0.001, 0.003, 7.0, 0.002, 0.002])
    now = [0.0]

    def call() -> None:
        now[0] += next(durations)

    assert time_call(call, repeats=5, clock=lambda: now[0]) == pytest.approx(0.002, abs=1e-12)
    assert next(durations, None) is None  # one warm-up call, then the five measured
