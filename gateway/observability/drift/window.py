"""A sliding window of exactly the most recent `window_rows` rows.

The window keeps a ring of the rows' slot codes (4 bytes per value: 600 KB for 5,000 rows of 30
features) next to the running histogram. Adding a batch adds its counts and subtracts the counts
of the rows it pushes out, a bincount of just those rows: sliding never rescans the window, and
the histogram is always exactly that of the last `window_rows` rows (a ring of histogram chunks
would slide by whole chunks only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gateway.observability.drift.histograms import Binner, Counts


class Ring:
    """The slot arithmetic of a ring of `size` rows: where the next rows go, and which rows
    they push out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.filled = 0
        self._next = 0

    def advance(self, rows: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The slots of `rows` new rows and the filled slots they overwrite; None when the new
        rows alone fill the ring (their last `size` then take every slot)."""
        if rows >= self.size:
            self.filled, self._next = self.size, 0
            return None
        slots = (self._next + np.arange(rows)) % self.size
        evicted = slots if self.filled == self.size else slots[slots < self.filled]
        self.filled = min(self.size, self.filled + rows)
        self._next = (self._next + rows) % self.size
        return slots, evicted


class SlidingWindow:
    def __init__(self, binner: Binner, window_rows: int) -> None:
        self.binner = binner
        self.window_rows = window_rows
        self._codes = np.empty((window_rows, len(binner.columns)), dtype=np.int32)
        self._ring = Ring(window_rows)
        self._histogram = np.zeros(binner.total_slots, dtype=np.int64)

    def add_codes(self, codes: np.ndarray) -> None:
        placed = self._ring.advance(len(codes))
        if placed is None:  # the batch alone fills the window
            codes = codes[-self.window_rows:]
            self._codes[:] = codes
            self._histogram = self.binner.histogram(codes)
            return
        slots, evicted = placed
        if len(evicted):
            self._histogram -= self.binner.histogram(self._codes[evicted])
        self._codes[slots] = codes
        self._histogram += self.binner.histogram(codes)

    def add(self, values: np.ndarray) -> None:
        self.add_codes(self.binner.codes(values))

    def counts(self) -> tuple[np.ndarray, int]:
        """The window's flat histogram (every slot) and its rows: what a worker publishes."""
        return self._histogram.copy(), self._ring.filled

    def total(self, peers: Sequence[tuple[np.ndarray, int]] = ()) -> Counts:
        """The window's counts, plus `peers`' (other workers' `counts()` of the same profile:
        the group's window is the sum of its workers' windows)."""
        histogram, rows = self._histogram, self._ring.filled
        for peer_histogram, peer_rows in peers:
            if len(peer_histogram) == len(histogram):  # a peer on another profile: skipped
                histogram = histogram + peer_histogram
                rows += peer_rows
        return self.binner.split(histogram, rows)


class ValueWindow:
    """The most recent `window_rows` numbers (a ring), for means over exactly the last rows:
    live accuracy (1 for a correct prediction, 0 for a wrong one) or mean absolute error."""

    def __init__(self, window_rows: int) -> None:
        self.window_rows = window_rows
        self._values = np.empty(window_rows, dtype=np.float64)
        self._ring = Ring(window_rows)

    def add(self, values: np.ndarray) -> None:
        placed = self._ring.advance(len(values))
        if placed is None:
            self._values[:] = values[-self.window_rows:]
        else:
            self._values[placed[0]] = values

    @property
    def rows(self) -> int:
        return self._ring.filled

    def mean(self, peers: Sequence[tuple[float, int]] = ()) -> float | None:
        """The mean of the window, with `peers`' windows (their `sum_rows()`) when given."""
        if not peers:
            filled = self._ring.filled
            return float(self._values[:filled].mean()) if filled else None
        total, rows = self.sum_rows()
        for peer_total, peer_rows in peers:
            total, rows = total + peer_total, rows + peer_rows
        return total / rows if rows else None

    def sum_rows(self) -> tuple[float, int]:
        """The sum of the window's values and its rows: what a worker publishes."""
        filled = self._ring.filled
        return float(self._values[:filled].sum()), filled
