"""The drift monitor as a service: fed by the request path, folded off it, read by endpoints and
Prometheus.

The request path calls `observe`, which appends references to the already-decoded arrays to a
bounded per-version buffer (no copy, no loop; a full buffer drops the rows and counts them). A
background task drains the buffers every 10 ms and folds what each version gathered into its
monitor: on the event loop itself when the gathering is small (up to `INLINE_FOLD_ROWS` rows,
tens of microseconds), on the drift thread when it is large. Handing every small fold to a
thread cost more than the fold: the GIL hand-offs of 100 wake-ups a second took the gateway's
1-row throughput to 0.91x of the monitor off, against 0.96x inline (medians of 10 alternating
runs, 2 cores). Reports for the gauges are computed every `report_interval_s`, and a custom
collector serves them at scrape time. One lock orders folds and reports, wherever they run.

In a worker of a group (gateway.workers), the service publishes each version's window counts
(flat histograms and rows, and its pinned rows) for its peers, keeping its share of the window
(`Group.window_share`), and every report, the gauges'
and the endpoint's, adds the peers' published counts to its own before computing statistics:
the group's report. Its counters are mirrored into the multiprocess files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.registry import Collector

from gateway.observability.drift.gauges import DriftCollector, counter_mirrors
from gateway.observability.drift.monitor import DriftMonitor, PeerCounts
from gateway.observability.drift.stats import DriftRule
from gateway.observability.drift.tracked import Tracked
from gateway.observability.reports import DriftReport
from gateway.settings import INHERIT, DriftModelSettings, DriftSettings
from gateway.tensors import Tensors, TensorSpec
from gateway.workers.group import current_group

logger = logging.getLogger("gateway.drift")

DRAIN_INTERVAL_S = 0.01
"""Short, frequent folds: a fold holds the GIL in short stretches for about its length, and at
50 ms a 32-row stream's folds (1.6 ms) showed up as the p99 of one connection (3 ms vs 0.7)."""
INLINE_FOLD_ROWS = 4096
"""Gatherings up to this many rows fold on the event loop (a 1,024-row fold takes ~0.4 ms)."""


def feature_inputs(monitor: DriftMonitor, inputs: tuple[TensorSpec, ...]) -> tuple[str, ...] | None:
    """Which inputs carry the profile's features, or None when they cannot be matched."""
    width = len(monitor.feature_names)
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and inputs[0].shape[1] in (width, -1):
        return (inputs[0].name,)
    names = {spec.name for spec in inputs}
    if all(name in names for name in monitor.feature_names):
        return tuple(monitor.feature_names)
    return None


class DriftService:
    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings
        self.max_buffer_rows = settings.max_buffer_rows
        self.report_interval_s = settings.report_interval_s
        self._tracked: dict[tuple[str, int], Tracked] = {}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-drift")
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.group = current_group()
        self.window_rows = (self.group.window_share(settings.window_rows) if self.group
                            else settings.window_rows)
        """Rows of each version's window here: a worker keeps its share of the group's."""
        if self.group is not None:
            self._mirrors = counter_mirrors()
            self.group.add_source("drift", self._group_state)
            self.group.add_counter_sync(self._copy_counters)

    async def _group_state(self) -> list[dict[str, Any]]:
        """Each version's window counts (every gathered row folded in) and pinned rows, for
        the peers' reports."""
        async with self._lock:
            await self._drain(list(self._tracked.values()), report=False)
            state = []
            for tracked in self._tracked.values():
                (features, rows), outputs = tracked.monitor.counts()
                state.append({"model": tracked.model, "version": tracked.version,
                              "features": [features.tolist(), rows],
                              "outputs": None if outputs is None
                              else [outputs[0].tolist(), outputs[1]],
                              "pinned": tracked.own_pinned()})
            return state

    def _peer_counts(self, tracked: Tracked) -> tuple[list[PeerCounts], int]:
        """The peers' window counts of `tracked`'s version and their pinned rows."""
        if self.group is None:
            return [], 0
        counts: list[PeerCounts] = []
        pinned = 0
        for peer in self.group.peers("drift"):
            for entry in peer:
                if entry["model"] != tracked.model or entry["version"] != tracked.version:
                    continue
                outputs = entry["outputs"]
                counts.append(((np.asarray(entry["features"][0], dtype=np.int64),
                                int(entry["features"][1])),
                               None if outputs is None
                               else (np.asarray(outputs[0], dtype=np.int64), int(outputs[1]))))
                pinned += int(entry["pinned"])
        return counts, pinned

    def _copy_counters(self) -> None:
        for tracked in list(self._tracked.values()):
            key = (tracked.model, str(tracked.version))
            self._mirrors["dropped"].copy(key, tracked.dropped_rows)
            self._mirrors["rows"].copy(key, tracked.reported_rows)
            self._mirrors["failed"].copy(key, tracked.failed_folds)

    def _refresh(self, tracked: Tracked) -> None:
        """Recompute `tracked`'s report (the group's, in a worker) and what the gauges show."""
        peers, peers_pinned = self._peer_counts(tracked)
        tracked.report = tracked.monitor.report(tracked.rule, peers)
        tracked.reported_rows = tracked.ingested_rows
        tracked.count_pinned(peers_pinned)
        tracked.window_bins = tracked.monitor.features.total([p[0] for p in peers]).bins.copy()

    def rule(self, model: str) -> DriftRule:
        """The model's drift rule: its own settings where it has them, else the defaults."""
        per_model = self.settings.models.get(model) or DriftModelSettings()
        return DriftRule(
            self.settings.false_alarm_rate if per_model.false_alarm_rate == INHERIT
            else per_model.false_alarm_rate,
            self.settings.psi_threshold if per_model.psi_threshold == INHERIT
            else per_model.psi_threshold)

    def track(self, model: str, version: int, reference_file: Path,
              inputs: tuple[TensorSpec, ...]) -> None:
        """Start monitoring a loaded version (no-op when disabled, already tracked, or without a
        usable profile): untracked versions cost the request path one dict lookup."""
        if not self.settings.enabled or (model, version) in self._tracked:
            return
        try:
            monitor = DriftMonitor.from_reference_file(reference_file, self.window_rows)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("model '%s' version %d: no drift monitoring (%s)", model, version, exc)
            return
        sources = feature_inputs(monitor, inputs)
        if sources is None:
            logger.warning("model '%s' version %d: inputs do not match the reference profile's "
                           "features; no drift monitoring", model, version)
            return
        self._tracked[(model, version)] = Tracked(model, version, monitor, sources,
                                                   self.rule(model))

    def sync(self, served: dict[tuple[str, int], tuple[Path, tuple[TensorSpec, ...]]]) -> None:
        """Track exactly the served versions: (model, version) -> (reference file, inputs)."""
        for key in list(self._tracked):
            if key not in served:
                del self._tracked[key]
        for (model, version), (reference, inputs) in served.items():
            self.track(model, version, reference, inputs)

    def tracked(self, model: str, version: int) -> bool:
        return (model, version) in self._tracked

    def observe(self, model: str, version: int, inputs: Tensors, outputs: Tensors,
                pinned: bool = False) -> None:
        """On the request path: queue references to the arrays, or count them dropped.
        `pinned`: the rows of a pinned request (monitored, and marked for the rollout)."""
        tracked = self._tracked.get((model, version))
        if tracked is None:
            return
        if len(tracked.feature_inputs) == 1:
            features = inputs[tracked.feature_inputs[0]]
        else:
            try:
                features = np.column_stack([inputs[n].reshape(-1)
                                            for n in tracked.feature_inputs])
            except ValueError:  # per-feature inputs of unequal lengths: not rows to monitor
                return
        rows = features.shape[0] if features.ndim == 2 else 0
        if rows == 0 or features.shape[1] != tracked.width:
            return
        if tracked.buffered_rows + rows > self.max_buffer_rows:
            tracked.dropped_rows += rows
            return
        if pinned:
            first = tracked.ingested_rows + tracked.buffered_rows
            tracked.pinned.append((first, first + rows))
        tracked.buffer.append((features, outputs))
        tracked.buffered_rows += rows

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="drift")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def _consume(self) -> None:
        since_report = 0.0
        while True:
            await asyncio.sleep(DRAIN_INTERVAL_S)
            since_report += DRAIN_INTERVAL_S
            report = since_report >= self.report_interval_s
            if report:
                since_report = 0.0
            # Taken under the lock that reports hold too, so rows are folded in arrival order.
            async with self._lock:
                await self._drain(list(self._tracked.values()), report)

    def fold_gathered(self) -> None:
        """Fold what every version gathered, now, on the calling thread: for a caller that owns
        the service and runs no consumer (a benchmark timing the fold as served)."""
        self._fold(self._take(list(self._tracked.values()))[0], report=False)

    def _take(self, versions: list[Tracked],
              ) -> tuple[list[tuple[Tracked, list[tuple[np.ndarray, Tensors]]]], int]:
        """Each version's gathered batches, emptied out of its buffer, and their rows."""
        batches = []
        rows = 0
        for tracked in versions:
            if tracked.buffer:
                rows += tracked.buffered_rows
                batches.append((tracked, list(tracked.buffer)))
                tracked.buffer.clear()
                tracked.buffered_rows = 0
        return batches, rows

    async def _drain(self, versions: list[Tracked], report: bool) -> None:
        """Fold what `versions` gathered (small gatherings inline, large ones on the drift
        thread) and, with `report`, recompute every version's report. Holds `self._lock`."""
        batches, rows = self._take(versions)
        if not (batches or report):
            return
        if rows <= INLINE_FOLD_ROWS:
            self._fold(batches, report)
        else:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._fold, batches,
                                                             report)

    def _fold(self, batches: list[tuple[Tracked, list[tuple[np.ndarray, Tensors]]]],
              report: bool) -> None:
        for tracked, taken in batches:
            try:
                features = (np.concatenate([f for f, _ in taken]) if len(taken) > 1
                            else taken[0][0])
                names = taken[0][1].keys()
                outputs = {n: np.concatenate([o[n] for _, o in taken]) if len(taken) > 1
                           else taken[0][1][n] for n in names}
                tracked.monitor.ingest(features, outputs)
                tracked.ingested_rows += features.shape[0]
            except Exception:  # a fault here must never reach requests or other versions
                tracked.failed_folds += 1
                logger.exception("drift monitor of model '%s' version %d could not fold %d "
                                 "batches; they are skipped", tracked.model, tracked.version,
                                 len(taken))
        if report:
            for tracked in list(self._tracked.values()):
                self._refresh(tracked)

    async def report(self, model: str, version: int) -> DriftReport | None:
        """A fresh report of one version, the rows still gathering included (the gauges show
        it too from now on), or None if untracked."""
        tracked = self._tracked.get((model, version))
        if tracked is None:
            return None
        async with self._lock:
            await self._drain([tracked], report=False)  # rows still gathering count too
            self._refresh(tracked)
            doc = tracked.report
            assert doc is not None  # made just now
        return DriftReport(model=model, version=str(version), window_rows=doc["window_rows"],
                           reference_rows=doc["reference_rows"], features=doc["features"],
                           outputs=doc["outputs"], dropped_rows=tracked.dropped_rows)

    def collector(self) -> Collector:
        return DriftCollector(self.tracked_reports)

    def tracked_reports(self) -> list[Tracked]:
        return list(self._tracked.values())
