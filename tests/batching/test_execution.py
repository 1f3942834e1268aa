from __future__ import annotations

import time

from gateway.batching.execution import INLINE_MAX_S, choose_execution, time_call


def test_auto_runs_fast_models_inline_and_slow_ones_on_a_thread() -> None:
    assert choose_execution("auto", INLINE_MAX_S / 2) == "inline"
    assert choose_execution("auto", INLINE_MAX_S * 2) == "thread"


def test_an_explicit_setting_wins_over_the_measurement() -> None:
    assert choose_execution("thread", 1e-6) == "thread"
    assert choose_execution("inline", 1.0) == "inline"


def test_time_call_measures_the_median() -> None:
    calls = []
    median = time_call(lambda: (calls.append(1), time.sleep(0.001)), repeats=5)
    assert len(calls) == 6  # one warm-up call, then the measured ones
    assert 0.001 <= median < 0.05
