from __future__ import annotations

import numpy as np

from gateway.observability.drift.histograms import Binner, column_from_profile
from gateway.observability.drift.window import SlidingWindow


def test_the_window_keeps_the_latest_rows_by_subtracting_old_chunks() -> None:
    binner = Binner([column_from_profile({"name": "x", "kind": "numeric", "edges": [0.5],
                                          "counts": [1, 1]})])
    window = SlidingWindow(binner, window_rows=100)  # chunks of 10 rows
    for _ in range(30):
        window.add(binner.count(np.zeros((10, 1))))  # old data: all in bin 0
    for _ in range(10):
        window.add(binner.count(np.ones((10, 1))))  # new data: all in bin 1
    total = window.total()
    assert 100 <= total.rows <= 110
    assert total.bins[0] == 0 and total.bins[1] == total.rows  # nothing old is left


def test_a_partial_chunk_counts_at_once() -> None:
    binner = Binner([column_from_profile({"name": "x", "kind": "numeric", "edges": [0.5],
                                          "counts": [1, 1]})])
    window = SlidingWindow(binner, window_rows=5000)
    window.add(binner.count(np.ones((3, 1))))
    assert window.total().rows == 3
