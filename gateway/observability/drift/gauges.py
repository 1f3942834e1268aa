"""The drift gauges of /metrics, computed at scrape time from the reports the drift service last
made (docs/metrics.md): per feature PSI, JS, KS, NaN and unseen ratios and the drifted flag, per
output
PSI and its flag, the window's rows and bin
counts (for fleet-wide drift), and the drops and failed folds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.observability.drift.monitor import DriftMonitor
from gateway.observability.drift.tracked import Tracked
from gateway.observability.metrics import (
    DRIFT_PINNED_ROWS,
    DRIFT_ROWS,
    PREDICTION_PSI,
    CounterMirror,
    FamilyTable,
    ScrapeFamily,
    make_families,
)


class DriftCollector(Collector):
    """Gauges from the reports the drift thread last computed (refreshed on an interval)."""

    def __init__(self, tracked: Callable[[], list[Tracked]]) -> None:
        self.tracked = tracked

    def collect(self) -> Iterator[Any]:
        f = make_families(_FAMILIES)
        for tracked in self.tracked():
            key = [tracked.model, str(tracked.version)]
            f["dropped"].add_metric(key, tracked.dropped_rows)
            f["rows"].add_metric(key, tracked.reported_rows)
            f["pinned"].add_metric(key, tracked.pinned_in_window)
            f["threshold"].add_metric(key, tracked.rule.psi_floor)
            f["failed"].add_metric(key, tracked.failed_folds)
            if tracked.window_bins is not None:
                _add_bins(f["bins"], f["reference"], key, tracked.monitor, tracked.window_bins)
            report = tracked.report
            if report is None:
                continue
            f["window"].add_metric(key, report["window_rows"])
            for feature in report["features"]:
                labels = [*key, feature["name"]]
                for stat in ("psi", "js", "ks", "nan_ratio", "unseen_ratio"):
                    value = feature[stat]
                    if value is not None:
                        f[stat].add_metric(labels, value)
                f["drifted"].add_metric(labels, int(feature["drifted"]))
            for output in report["outputs"]:
                labels = [*key, output["name"]]
                if output["psi"] is not None:
                    f["prediction"].add_metric(labels, output["psi"])
                f["prediction_drifted"].add_metric(labels, int(output["drifted"]))
        yield from f.values()


_VERSION = ["model", "version"]
_FEATURE = ["model", "version", "feature"]
_FAMILIES: FamilyTable = {
    "psi": (GaugeMetricFamily, "gateway_drift_psi", "PSI of a feature against its reference.",
            _FEATURE),
    "js": (GaugeMetricFamily, "gateway_drift_js", "Jensen-Shannon distance of a feature.",
           _FEATURE),
    "ks": (GaugeMetricFamily, "gateway_drift_ks", "KS distance of a feature's binned CDF.",
           _FEATURE),
    "nan_ratio": (GaugeMetricFamily, "gateway_drift_nan_ratio",
                  "Share of the drift window's rows in which a feature is NaN (missing).",
                  _FEATURE),
    "unseen_ratio": (GaugeMetricFamily, "gateway_drift_unseen_ratio",
                     "Share of the drift window's rows in which a categorical feature holds a "
                     "category its training data never had.", _FEATURE),
    "drifted": (GaugeMetricFamily, "gateway_drift_drifted",
                "1 when a feature's window differs from its reference beyond chance at the "
                "configured false-alarm rate (and the PSI floor, when set), else 0.", _FEATURE),
    "prediction": (GaugeMetricFamily, PREDICTION_PSI,
                   "PSI of a model output against its reference.",
                   ["model", "version", "output"]),
    "prediction_drifted": (GaugeMetricFamily, "gateway_prediction_drift_drifted",
                           "1 when a model output's window differs from its reference beyond "
                           "chance, as gateway_drift_drifted.", ["model", "version", "output"]),
    "window": (GaugeMetricFamily, "gateway_drift_window_rows", "Rows in the drift window.",
               _VERSION),
    "threshold": (GaugeMetricFamily, "gateway_drift_psi_threshold",
                  "PSI a flagged feature must also reach to count as drifted (0: no floor).",
                  _VERSION),
    "dropped": (CounterMetricFamily, "gateway_drift_dropped_rows_total",
                "Rows not monitored because the drift buffer was full.", _VERSION),
    "pinned": (GaugeMetricFamily, DRIFT_PINNED_ROWS,
               "Rows of pinned requests in the drift window (as of the report the gauges show): "
               "the rollout's drift gate waits while there are any.", _VERSION),
    "rows": (CounterMetricFamily, DRIFT_ROWS,
             "Rows taken into the drift window, as of the report the drift gauges show (a "
             "window of N rows holds only rows taken after this counter's value minus N).",
             _VERSION),
    "failed": (CounterMetricFamily, "gateway_drift_failed_folds",
               "Gatherings the drift monitor could not fold (see the log).", _VERSION),
    "bins": (GaugeMetricFamily, "gateway_drift_window_bin_count",
             "Rows of the drift window in each bin of a feature (sum across replicas for "
             "fleet-wide drift: gateway:fleet_drift_psi).", [*_FEATURE, "bin"]),
    "reference": (GaugeMetricFamily, "gateway_drift_reference_bin_share",
                  "Share of the training rows in each bin of a feature (reference.json).",
                  [*_FEATURE, "bin"]),
}
"""The drift gauges and counters, by the name `collect` fills them under."""


def _add_bins(bins: ScrapeFamily, reference: ScrapeFamily, key: list[str],
              monitor: DriftMonitor, counts: np.ndarray) -> None:
    """One sample per feature and bin: the window's count and the reference's share."""
    binner = monitor.features.binner
    for column, start in zip(monitor.feature_columns, binner.offsets, strict=True):
        total = float(column.counts.sum()) or 1.0
        for b in range(column.bins):
            labels = [*key, column.name, str(b)]
            bins.add_metric(labels, float(counts[start + b]))
            reference.add_metric(labels, float(column.counts[b]) / total)


def counter_mirrors() -> dict[str, CounterMirror]:
    """The drift counters (drops, rows, failed folds) as mirrors, for a worker: the group's
    sums then come from the multiprocess files (gateway.observability.metrics.GroupRegistry)."""
    return {key: CounterMirror(name, text, labels)
            for key, (kind, name, text, labels) in _FAMILIES.items()
            if kind is CounterMetricFamily}
