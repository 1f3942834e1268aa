"""One model version the drift service monitors: its monitor, the rows gathering for it, and
the report the gauges read (shared by drift.service and drift.gauges)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from gateway.observability.drift.monitor import DriftMonitor
from gateway.observability.drift.stats import DriftRule
from gateway.observability.reports import WindowReport
from gateway.tensors import Tensors


@dataclass
class Tracked:
    model: str
    version: int
    monitor: DriftMonitor
    feature_inputs: tuple[str, ...]
    """One 2-D input holding every feature, or one input per feature, in profile order."""
    rule: DriftRule
    width: int = 0
    """How many features a row has (the profile's), read once for the request path."""
    buffer: deque[tuple[np.ndarray, Tensors]] = field(default_factory=deque)
    buffered_rows: int = 0
    dropped_rows: int = 0
    failed_folds: int = 0
    ingested_rows: int = 0
    """Rows taken into the monitor since it began."""
    pinned: deque[tuple[int, int]] = field(default_factory=deque)
    """(first, end) positions, in `ingested_rows` terms, of rows from pinned requests."""
    pinned_in_window: int = 0
    """Rows of pinned requests in the window when `report` was made (a pinned caller, such as
    a replay or a load test, is no rollout evidence: the rollout's drift gate waits while the
    window holds any)."""
    reported_rows: int = 0
    """`ingested_rows` when `report` was made: the window the gauges show holds only rows
    taken after `reported_rows - window_rows` (the rollout's drift gate reads it)."""
    report: WindowReport | None = None
    window_bins: np.ndarray | None = None
    """The feature window's counts per bin when `report` was made (for fleet-wide drift)."""

    def __post_init__(self) -> None:
        self.width = len(self.monitor.feature_names)

    def count_pinned(self, peers_pinned: int = 0) -> None:
        """`pinned_in_window` as of now (at a report), forgetting marks the window has left;
        `peers_pinned`: the other workers' (a group's window holds theirs too)."""
        self.pinned_in_window = self.own_pinned() + peers_pinned

    def own_pinned(self) -> int:
        """Rows of pinned requests in this process's window now."""
        start = self.ingested_rows - self.monitor.features.window_rows
        while self.pinned and self.pinned[0][1] <= start:
            self.pinned.popleft()
        return sum(min(end, self.ingested_rows) - max(first, start)
                   for first, end in self.pinned
                   if min(end, self.ingested_rows) > max(first, start))
