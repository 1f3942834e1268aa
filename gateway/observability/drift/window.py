"""A sliding window of exactly the most recent `window_rows` rows.

The window keeps a ring of the rows' slot codes (4 bytes per value: 600 KB for 5,000 rows of 30
features) next to the running histogram. Adding a batch adds its counts and subtracts the counts
of the rows it pushes out, a bincount of just those rows: sliding never rescans the window, and
the histogram is always exactly that of the last `window_rows` rows (a ring of histogram chunks
would slide by whole chunks only).
"""

from __future__ import annotations

import numpy as np

from gateway.observability.drift.histograms import Binner, Counts


class SlidingWindow:
    def __init__(self, binner: Binner, window_rows: int) -> None:
        self.binner = binner
        self.window_rows = window_rows
        self._codes = np.empty((window_rows, len(binner.columns)), dtype=np.int32)
        self._filled = 0
        self._next = 0
        self._histogram = np.zeros(binner.total_slots, dtype=np.int64)

    def add_codes(self, codes: np.ndarray) -> None:
        size = self.window_rows
        if len(codes) >= size:  # the batch alone fills the window
            codes = codes[-size:]
            self._codes[:] = codes
            self._histogram = self.binner.histogram(codes)
            self._filled, self._next = size, 0
            return
        slots = (self._next + np.arange(len(codes))) % size
        evicted = slots if self._filled == size else slots[slots < self._filled]
        if len(evicted):
            self._histogram -= self.binner.histogram(self._codes[evicted])
        self._codes[slots] = codes
        self._histogram += self.binner.histogram(codes)
        self._filled = min(size, self._filled + len(codes))
        self._next = (self._next + len(codes)) % size

    def add(self, values: np.ndarray) -> None:
        self.add_codes(self.binner.codes(values))

    def total(self) -> Counts:
        return self.binner.split(self._histogram, self._filled)


class ValueWindow:
    """The most recent `window_rows` numbers (a ring), for means over exactly the last rows:
    live accuracy (1 for a correct prediction, 0 for a wrong one) or mean absolute error."""

    def __init__(self, window_rows: int) -> None:
        self.window_rows = window_rows
        self._values = np.empty(window_rows, dtype=np.float64)
        self._filled = 0
        self._next = 0

    def add(self, values: np.ndarray) -> None:
        size = self.window_rows
        if len(values) >= size:
            self._values[:] = values[-size:]
            self._filled, self._next = size, 0
            return
        slots = (self._next + np.arange(len(values))) % size
        self._values[slots] = values
        self._filled = min(size, self._filled + len(values))
        self._next = (self._next + len(values)) % size

    @property
    def rows(self) -> int:
        return self._filled

    def mean(self) -> float | None:
        return float(self._values[:self._filled].mean()) if self._filled else None
