"""A sliding window of the most recent rows, kept as a ring of histogram chunks.

Rows are counted into the open chunk; when it holds `chunk_rows` it joins the ring, and when the
ring holds more rows than the window, the oldest chunk is subtracted from the running total.
Sliding costs one subtraction, never a rescan. The window holds between `window_rows` and
`window_rows + chunk_rows` rows (chunks are a tenth of the window).
"""

from __future__ import annotations

from collections import deque

from gateway.observability.drift.histograms import Binner, Counts

CHUNKS_PER_WINDOW = 10


class SlidingWindow:
    def __init__(self, binner: Binner, window_rows: int) -> None:
        self.binner = binner
        self.window_rows = window_rows
        self.chunk_rows = max(1, window_rows // CHUNKS_PER_WINDOW)
        self._ring: deque[Counts] = deque()
        self._closed = binner.empty()
        """Sum of the chunks in the ring."""
        self._open = binner.empty()

    def add(self, counts: Counts) -> None:
        self._open = self._open + counts
        if self._open.rows < self.chunk_rows:
            return
        self._ring.append(self._open)
        self._closed = self._closed + self._open
        self._open = self.binner.empty()
        while self._ring and self._closed.rows - self._ring[0].rows >= self.window_rows:
            self._closed = self._closed - self._ring.popleft()

    def total(self) -> Counts:
        return self._closed + self._open
