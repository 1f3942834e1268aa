"""Label feedback (docs/endpoints.md): label drift per model, live accuracy or MAE per version.

Stateless by design: each label arrives with what the infer answer said (version, prediction),
so any replica can take it, after any restart. Per model, the last `drift.window_rows` labels
are binned against the reference profile's `labels` entry by the drift monitor's own `Binner`
and `SlidingWindow`, and compared with `drift_statistics` (PSI and JS); per version, the last
`drift.window_rows` labelled rows are kept as 1/0 (correct or not) or as absolute errors in a
`ValueWindow`, whose mean is the live accuracy or MAE. Counters (rows, correct rows, labels per
class) only grow, so a fleet's accuracy is a ratio of their rates across replicas.

Folding a batch is a handful of NumPy calls (a bincount per batch, a mask per version named);
it runs in the feedback request, never on the infer path. Gauges are computed at scrape time.

In a worker of a group (gateway.workers), each model's label window counts and each version's
performance window (sum and rows) are published for the peers, and the reports and gauges add
the peers' to their own: live accuracy, MAE and label drift are the group's. The counters are
mirrored into the multiprocess files, so they are the group's sums too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.observability.drift.histograms import Binner, Column, column_from_profile
from gateway.observability.drift.stats import DriftRule, drift_statistics
from gateway.observability.drift.window import SlidingWindow, ValueWindow
from gateway.observability.metrics import (
    FEEDBACK_CORRECT,
    FEEDBACK_ROWS,
    CounterMirror,
    FamilyTable,
    make_families,
)
from gateway.observability.reports import LabelsReport, PerformanceReport
from gateway.protocol.feedback import FeedbackBatch, LabelSpace
from gateway.runtime.repository import Repository
from gateway.workers.group import current_group

logger = logging.getLogger("gateway.feedback")
UNSEEN = "_unseen"
NO_VERSION = "none"


def label_profile(repository: Repository, model: str) -> dict[str, Any] | None:
    """The `labels` profile of the model's highest version that has one."""
    for version in sorted(repository.get(model, {}), reverse=True):
        path = repository[model][version].reference_file
        try:
            profile = json.loads(path.read_text()).get("labels")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(profile, dict) and profile.get("kind") in ("categorical", "numeric"):
            return profile
    return None


def _label_column(profile: dict[str, Any]) -> tuple[LabelSpace, Column]:
    if profile["kind"] == "numeric":
        column = column_from_profile({**profile, "name": "label"})
        return LabelSpace("numeric"), column
    categories = tuple(profile["categories"])
    counts = np.asarray(profile["counts"], dtype=np.float64)
    if len(counts) != len(categories) or not categories:
        raise ValueError("labels profile: one count per category needed")
    # Labels are binned by category index, so text classes bin like numeric ones.
    column = Column("label", "categorical", np.arange(len(categories), dtype=np.float64), counts)
    return LabelSpace("categorical", categories), column


@dataclass
class _VersionPerformance:
    window: ValueWindow
    rows: int = 0
    correct: int = 0


@dataclass
class ModelFeedback:
    """One model's label window, per-version performance windows, and counters."""

    model: str
    space: LabelSpace
    labels: SlidingWindow
    window_rows: int
    reference: dict[int, float | None]
    """Version -> the manifest's held-out accuracy (classifier) or mae (regressor)."""
    unlabelled_rows: int = 0
    label_counts: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    """Rows per category, then unseen (classifiers; sized when the model is tracked)."""
    versions: dict[int, _VersionPerformance] = field(default_factory=dict)
    peers: Callable[[str], list[dict[str, Any]]] = lambda model: []
    """In a worker: the peers' published state of a model (`state`), added to reports."""

    def state(self) -> dict[str, Any]:
        """The window counts a worker publishes: label window, and per version sum and rows."""
        histogram, rows = self.labels.counts()
        return {"labels": [histogram.tolist(), rows],
                "versions": {str(v): list(p.window.sum_rows())
                             for v, p in self.versions.items()}}

    @property
    def metric_name(self) -> str:
        return "accuracy" if self.space.classifier else "mae"

    def fold(self, batch: FeedbackBatch) -> None:
        self.labels.add(batch.label_codes.reshape(-1, 1))
        if self.space.classifier:
            n = len(self.space.categories)
            codes = batch.label_codes.astype(np.int64)
            counts = np.bincount(np.where(codes < 0, n, codes), minlength=n + 1)
            self.label_counts += counts
        labelled = batch.labelled
        self.unlabelled_rows += int(batch.rows - labelled.sum())
        if not labelled.any():
            return
        if self.space.classifier:
            scores = (batch.labels == batch.predictions).astype(np.float64)
        else:
            scores = np.abs(batch.labels.astype(np.float64)
                            - batch.predictions.astype(np.float64))
        versions = batch.versions[labelled]
        scores = scores[labelled]
        for version in np.unique(versions):  # the few versions named, each one mask
            mine = scores[versions == version]
            performance = self.versions.get(int(version))
            if performance is None:
                performance = self.versions[int(version)] = _VersionPerformance(
                    ValueWindow(self.window_rows))
            performance.window.add(mine)
            performance.rows += len(mine)
            if self.space.classifier:
                performance.correct += int(mine.sum())

    def labels_report(self, rule: DriftRule) -> LabelsReport:
        """The recent labels against the training labels: PSI and JS, and `drifted` by the
        same test and rule as features (a class never seen in training is a bin of its own)."""
        counts = self.labels.total([(np.asarray(p["labels"][0], dtype=np.int64),
                                     int(p["labels"][1])) for p in self.peers(self.model)])
        binner = self.labels.binner
        stats = drift_statistics(binner.reference, counts.bins, binner.offsets,
                                 binner.reference_nan, counts.nan, counts.unseen)
        psi, js, p = (float(stats[k][0]) for k in ("psi", "js", "p"))
        empty = counts.rows == 0
        return {"window_rows": counts.rows, "psi": None if empty else round(psi, 6),
                "js": None if empty else round(js, 6),
                "p_value": None if empty else round(p, 6),
                "drifted": bool(rule.flags(stats["psi"], stats["p"])[0]),
                "unseen": int(counts.unseen[0])}

    def live(self, version: int) -> tuple[float | None, int]:
        """The version's live accuracy or MAE and its labelled rows in the window (with the
        peers', in a worker)."""
        found = self.versions.get(version)
        peers = [(float(p[0]), int(p[1])) for state in self.peers(self.model)
                 if (p := state["versions"].get(str(version))) is not None]
        if found is None:
            rows = sum(r for _, r in peers)
            return (sum(s for s, _ in peers) / rows if rows else None), rows
        return found.window.mean(peers), found.window.rows + sum(r for _, r in peers)

    def performance(self, version: int) -> PerformanceReport:
        live, rows = self.live(version)
        report: PerformanceReport = {"labelled_rows": rows,
                                     "reference": self.reference.get(version)}
        value = None if live is None else round(live, 6)
        if self.space.classifier:
            report["accuracy"] = value
        else:
            report["mae"] = value
        return report


class FeedbackService:
    def __init__(self, window_rows: int) -> None:
        self.group = current_group()
        self.window_rows = self.group.window_share(window_rows) if self.group else window_rows
        """Rows of each window here: a worker keeps its share of the group's."""
        self._models: dict[str, ModelFeedback] = {}
        self._missing: dict[str, str] = {}
        if self.group is not None:
            self._mirrors = {key: CounterMirror(name, text, labels)
                             for key, (kind, name, text, labels) in _FAMILIES.items()
                             if kind is CounterMetricFamily}
            self.group.add_source("feedback", self._group_state)
            self.group.add_counter_sync(self._copy_counters)

    async def _group_state(self) -> dict[str, Any]:
        return {model: feedback.state() for model, feedback in self._models.items()}

    def _peers_of(self, model: str) -> list[dict[str, Any]]:
        assert self.group is not None  # set only in a worker
        return [peer[model] for peer in self.group.peers("feedback") if model in peer]

    def _copy_counters(self) -> None:
        for feedback in list(self._models.values()):
            model = feedback.model
            self._mirrors["rows"].copy((model, NO_VERSION), feedback.unlabelled_rows)
            for version, performance in list(feedback.versions.items()):
                self._mirrors["rows"].copy((model, str(version)), performance.rows)
                if feedback.space.classifier:
                    self._mirrors["correct"].copy((model, str(version)), performance.correct)
            if feedback.space.classifier:
                for category, count in zip([*map(str, feedback.space.categories), UNSEEN],
                                           feedback.label_counts.tolist(), strict=True):
                    self._mirrors["label_rows"].copy((model, category), count)

    def sync(self, repository: Repository) -> None:
        """Track every model of the repository that has a labels profile; windows survive."""
        for model in list(self._models):
            if model not in repository:
                del self._models[model]
        for model, versions in repository.items():
            reference = {v: _held_out(e.manifest) for v, e in versions.items()}
            existing = self._models.get(model)
            if existing is not None:
                existing.reference = {v: r.get(existing.metric_name) for v, r in
                                      reference.items()}
                continue
            profile = label_profile(repository, model)
            if profile is None:
                self._missing[model] = ("no version of it has a 'labels' profile in its "
                                        "reference.json")
                continue
            try:
                space, column = _label_column(profile)
            except (KeyError, ValueError, TypeError) as exc:
                self._missing[model] = f"its labels profile is unusable ({exc})"
                continue
            feedback = ModelFeedback(model, space, SlidingWindow(Binner([column]),
                                                                 self.window_rows),
                                     self.window_rows, {})
            feedback.reference = {v: r.get(feedback.metric_name) for v, r in reference.items()}
            feedback.label_counts = np.zeros(len(space.categories) + 1, dtype=np.int64)
            if self.group is not None:
                feedback.peers = self._peers_of
            self._models[model] = feedback
            self._missing.pop(model, None)

    def model(self, model: str) -> ModelFeedback | None:
        return self._models.get(model)

    def why_not(self, model: str) -> str:
        return self._missing.get(model, "it has no labels profile")

    def collector(self, rules: Callable[[str], DriftRule]) -> Collector:
        return _FeedbackCollector(self, rules)

    def all(self) -> list[ModelFeedback]:
        return list(self._models.values())


def _held_out(manifest: dict[str, Any]) -> dict[str, float | None]:
    metrics = manifest.get("metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    return {name: float(metrics[name]) if isinstance(metrics.get(name), int | float) else None
            for name in ("accuracy", "mae")}


class _FeedbackCollector(Collector):
    def __init__(self, service: FeedbackService, rules: Callable[[str], DriftRule]) -> None:
        self.service = service
        self.rules = rules
        """model -> its drift rule (the drift settings' per-model values)."""

    def collect(self) -> Iterator[Any]:
        f = make_families(_FAMILIES)
        for feedback in self.service.all():
            model = feedback.model
            f["rows"].add_metric([model, NO_VERSION], feedback.unlabelled_rows)
            live_family, ref_family = ((f["accuracy"], f["ref_accuracy"])
                                       if feedback.space.classifier
                                       else (f["mae"], f["ref_mae"]))
            for version, reference in sorted(feedback.reference.items()):
                if reference is not None:
                    ref_family.add_metric([model, str(version)], reference)
            for version, performance in sorted(feedback.versions.items()):
                key = [model, str(version)]
                f["rows"].add_metric(key, performance.rows)
                if feedback.space.classifier:
                    f["correct"].add_metric(key, performance.correct)
            for version in sorted(set(feedback.versions) | _peer_versions(feedback)):
                key = [model, str(version)]
                live, rows = feedback.live(version)
                if live is not None:
                    live_family.add_metric(key, live)
                f["window"].add_metric(key, rows)
            if feedback.space.classifier:
                for category, count in zip([*map(str, feedback.space.categories), UNSEEN],
                                           feedback.label_counts, strict=True):
                    f["label_rows"].add_metric([model, category], int(count))
            rule = self.rules(model)
            report = feedback.labels_report(rule)
            f["label_window"].add_metric([model], report["window_rows"])
            f["label_threshold"].add_metric([model], rule.psi_floor)
            f["label_drifted"].add_metric([model], int(report["drifted"]))
            psi, js = report["psi"], report["js"]
            if psi is not None and js is not None:
                f["label_psi"].add_metric([model], psi)
                f["label_js"].add_metric([model], js)
        yield from f.values()


def _peer_versions(feedback: ModelFeedback) -> set[int]:
    """The versions the peers hold performance windows of (a worker may have none itself)."""
    return {int(v) for state in feedback.peers(feedback.model) for v in state["versions"]}


_MV = ["model", "version"]
_FAMILIES: FamilyTable = {
    "rows": (CounterMetricFamily, FEEDBACK_ROWS, "Labelled rows received.", _MV),
    "correct": (CounterMetricFamily, FEEDBACK_CORRECT,
                "Labelled rows whose prediction equals the label.", _MV),
    "accuracy": (GaugeMetricFamily, "gateway_live_accuracy",
                 "Accuracy over the version's last labelled rows.", _MV),
    "mae": (GaugeMetricFamily, "gateway_live_mae",
            "Mean absolute error over the version's last labelled rows.", _MV),
    "ref_accuracy": (GaugeMetricFamily, "gateway_reference_accuracy",
                     "The manifest's held-out accuracy.", _MV),
    "ref_mae": (GaugeMetricFamily, "gateway_reference_mae", "The manifest's held-out MAE.", _MV),
    "window": (GaugeMetricFamily, "gateway_feedback_window_rows",
               "Labelled rows in the version's performance window.", _MV),
    "label_rows": (CounterMetricFamily, "gateway_label_rows", "Labels received, by class.",
                   ["model", "label"]),
    "label_psi": (GaugeMetricFamily, "gateway_label_drift_psi",
                  "PSI of the recent labels against the training labels.", ["model"]),
    "label_js": (GaugeMetricFamily, "gateway_label_drift_js",
                 "Jensen-Shannon distance of the recent labels.", ["model"]),
    "label_window": (GaugeMetricFamily, "gateway_label_window_rows",
                     "Labels in the model's label drift window.", ["model"]),
    "label_threshold": (GaugeMetricFamily, "gateway_label_drift_psi_threshold",
                        "PSI the labels must also reach to count as drifted (0: no floor).",
                        ["model"]),
    "label_drifted": (GaugeMetricFamily, "gateway_label_drift_drifted",
                      "1 when the recent labels differ from the training labels beyond chance "
                      "at the configured false-alarm rate, else 0.", ["model"]),
}
"""The feedback counters and gauges, by the name `collect` fills them under."""
