from __future__ import annotations

import numpy as np
import pytest

from gateway.observability.drift.histograms import Binner, column_from_profile
from gateway.observability.drift.window import Ring, SlidingWindow, ValueWindow

PROFILES = [{"name": "a", "kind": "numeric", "edges": [-1.0, 0.0, 1.0], "counts": [1] * 4},
            {"name": "b", "kind": "categorical", "categories": [0, 1, 2], "counts": [1] * 3}]


@pytest.mark.parametrize("batch_sizes", [[1] * 300, [7, 50, 1, 120, 33, 260, 3, 99],
                                         [500, 20], [250, 250]])
def test_the_window_is_exactly_the_histogram_of_the_last_rows(batch_sizes: list[int]) -> None:
    binner = Binner([column_from_profile(p) for p in PROFILES])
    window = SlidingWindow(binner, window_rows=250)
    rng = np.random.default_rng(len(batch_sizes))
    seen = []
    for size in batch_sizes:
        batch = np.column_stack([rng.normal(size=size), rng.integers(0, 4, size)]).astype(float)
        batch[rng.random(size) < 0.05, 0] = np.nan
        window.add(batch)
        seen.append(batch)
        last = np.concatenate(seen)[-250:]
        expected = binner.count(last)
        total = window.total()
        assert total.rows == len(last)
        np.testing.assert_array_equal(total.bins, expected.bins)
        np.testing.assert_array_equal(total.nan, expected.nan)
        np.testing.assert_array_equal(total.unseen, expected.unseen)


@pytest.mark.parametrize("batch_sizes", [[1] * 30, [7, 3, 12, 1], [40], [10, 10, 5]])
def test_the_value_window_keeps_exactly_the_last_values(batch_sizes: list[int]) -> None:
    window = ValueWindow(window_rows=20)
    assert window.mean() is None and window.rows == 0
    rng = np.random.default_rng(sum(batch_sizes))
    seen: list[np.ndarray] = []
    for size in batch_sizes:
        values = rng.random(size)
        window.add(values)
        seen.append(values)
        last = np.concatenate(seen)[-20:]
        assert window.rows == len(last)
        assert window.mean() == pytest.approx(float(last.mean()), abs=1e-12)


def test_the_ring_places_rows_and_names_the_ones_pushed_out() -> None:
    ring = Ring(4)
    slots, evicted = ring.advance(3)
    assert slots.tolist() == [0, 1, 2] and evicted.tolist() == [] and ring.filled == 3
    slots, evicted = ring.advance(3)
    assert slots.tolist() == [3, 0, 1] and evicted.tolist() == [0, 1] and ring.filled == 4
    assert ring.advance(4) is None and ring.filled == 4  # the rows alone fill it
    slots, evicted = ring.advance(1)
    assert slots.tolist() == [0] and evicted.tolist() == [0]
