"""One model version's drift monitor: reference profile in, live rows folded in, report out.

Pure computation with no I/O beyond reading the profile; the service (`service.py`) feeds it off
the request path. `ingest` takes the feature matrix (rows × features, in the profile's order) and
the model's outputs by tensor name; output profiles name a tensor (`label`) or one of its columns
(`probabilities[1]`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gateway.observability.drift.histograms import Binner, Column, column_from_profile
from gateway.observability.drift.pvalues import REFERENCE_MULTIPLE, ROWS_PER_BIN
from gateway.observability.drift.stats import DriftRule, drift_statistics
from gateway.observability.drift.window import SlidingWindow
from gateway.observability.reports import ColumnReport, WindowReport

logger = logging.getLogger("gateway.drift")

_COLUMN = re.compile(r"^(.*)\[(\d+)\]$")
FOLD_ROWS = 1024
"""Batches are gathered until this many rows (or a report) and then folded in one pass: a fold
has a fixed cost of some forty NumPy calls, which single rows would pay each."""


class DriftColumnReport(ColumnReport):
    """A column's report as the monitor makes it: `p_value` is Benjamini-Hochberg adjusted
    within the column's family (flagged exactly when at most the false-alarm rate)."""

    p_value_raw: float | None
    """The column's own test's p-value, before the family's adjustment."""
    tested: bool
    """False while the window holds too few rows per bin to test (p-values null, never
    drifted)."""


def _output_source(name: str) -> tuple[str, int | None]:
    match = _COLUMN.match(name)
    return (match.group(1), int(match.group(2))) if match else (name, None)


class DriftMonitor:
    def __init__(self, reference: dict[str, Any], window_rows: int = 5000,
                 source: str = "reference profile") -> None:
        """`source` names the profile in the warnings logged at load (its file, say)."""
        self.reference_rows = int(reference.get("rows", 0))
        self.feature_columns = [column_from_profile(p) for p in reference.get("features", [])]
        self.output_columns = [column_from_profile(p) for p in reference.get("outputs", [])]
        if not self.feature_columns:
            raise ValueError("the reference profile has no features")
        self.features = SlidingWindow(Binner(self.feature_columns), window_rows)
        self.outputs = (SlidingWindow(Binner(self.output_columns), window_rows)
                        if self.output_columns else None)
        self._sources = [_output_source(c.name) for c in self.output_columns]
        self._pending: list[tuple[np.ndarray, dict[str, np.ndarray] | None]] = []
        self._pending_rows = 0
        for warning in self.warnings(window_rows):
            logger.warning("%s: %s", source, warning)

    def warnings(self, window_rows: int) -> list[str]:
        """What this reference cannot do at this window size: said once, at load."""
        found = []
        if 0 < self.reference_rows * REFERENCE_MULTIPLE < window_rows:
            found.append(
                f"the profile has {self.reference_rows} reference rows, fewer than a window's "
                f"{window_rows}: the test counts a window as {self.reference_rows} rows (the "
                "reference's own sampling noise would otherwise flag the same columns window "
                "after window), so only drift a sample of that size resolves is flagged; "
                "profile more training rows to see smaller drift")
        for column in self.feature_columns + self.output_columns:
            if column.point_masses:
                found.append(
                    f"column {column.name!r}: its profile's edges repeat a value; it is "
                    "monitored with that value's share bounded by the quantiles, not known: "
                    "rebuild reference.json with gateway.observability.drift.profile."
                    "build_profile to give the value an exact bin of its own")
            bins = int((column.counts > 0).sum()) + (column.nan > 0)
            if column.counts.sum() + column.nan < ROWS_PER_BIN * max(bins, 2):
                found.append(f"column {column.name!r}: the reference has fewer than "
                             f"{ROWS_PER_BIN} rows per bin, too few to test: never flagged")
        return found

    @classmethod
    def from_reference_file(cls, path: str | Path, window_rows: int = 5000) -> DriftMonitor:
        return cls(json.loads(Path(path).read_text()), window_rows, str(path))

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.feature_columns]

    def ingest(self, features: np.ndarray, outputs: dict[str, np.ndarray] | None = None) -> None:
        """Take a batch in: `features` is rows × features; `outputs` by tensor name. Batches
        are folded together once `FOLD_ROWS` rows have gathered, and before every report."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != len(self.feature_columns):
            raise ValueError(f"features have shape {list(features.shape)}; the profile has "
                             f"{len(self.feature_columns)} features")
        if features.dtype.kind not in "biuf":  # refused here, so a fold can never fail on it
            raise ValueError(f"features must be numbers, not {features.dtype}")
        self._pending.append((features, outputs or None))
        self._pending_rows += features.shape[0]
        if self._pending_rows >= FOLD_ROWS:
            self.flush()

    def flush(self) -> None:
        """Fold every gathered batch into the windows."""
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if not pending:
            return
        features = pending[0][0] if len(pending) == 1 else np.concatenate([f for f, _ in pending])
        self.features.add(features)
        with_outputs = [(f.shape[0], o) for f, o in pending if o]
        if self.outputs is None or not with_outputs:
            return
        matrices = [self._output_matrix(o, rows) for rows, o in with_outputs]
        usable = [m for m in matrices if m is not None]
        if usable:
            self.outputs.add(usable[0] if len(usable) == 1 else np.concatenate(usable))

    def _output_matrix(self, outputs: dict[str, np.ndarray], rows: int) -> np.ndarray | None:
        columns = []
        for tensor, index in self._sources:  # one per output profile, a few at most
            array = outputs.get(tensor)
            if array is None or array.shape[0] != rows or array.dtype.kind not in "biuf":
                return None
            columns.append(array.reshape(rows, -1)[:, index or 0])
        return np.column_stack(columns)

    def report(self, rule: DriftRule | None = None, peers: Sequence[PeerCounts] = (),
               ) -> WindowReport:
        """Window size, reference size, and per feature and output: psi, js, ks, p_value
        (Benjamini-Hochberg adjusted in its family), p_value_raw, tested, drifted (by `rule`;
        the features are one family of tests, the outputs another). `peers`: other workers'
        window counts of this version (`counts()`), added in: the group's report."""
        self.flush()
        rule = rule or DriftRule()
        features = [p[0] for p in peers]
        outputs = [p[1] for p in peers if p[1] is not None]
        return {"window_rows": self.features.total(features).rows,
                "reference_rows": self.reference_rows,
                "features": _column_report(self.features, self.feature_columns, rule, features),
                "outputs": (_column_report(self.outputs, self.output_columns, rule, outputs)
                            if self.outputs is not None else [])}

    def counts(self) -> PeerCounts:
        """The windows' counts, every gathered row folded in: what a worker publishes."""
        self.flush()
        return (self.features.counts(),
                self.outputs.counts() if self.outputs is not None else None)


WindowCounts = tuple[np.ndarray, int]
"""A window's flat histogram and rows (`SlidingWindow.counts`)."""
PeerCounts = tuple[WindowCounts, WindowCounts | None]
"""A version's feature window and output window counts, as another worker published them."""


def _column_report(window: SlidingWindow, columns: list[Column], rule: DriftRule,
                   peers: Sequence[WindowCounts] = ()) -> list[ColumnReport]:
    live = window.total(peers)
    binner = window.binner
    stats = drift_statistics(binner.reference_for(live.bins), live.bins, binner.offsets,
                             binner.reference_nan, live.nan, live.unseen)
    raw = np.where(stats["tested"], stats["p"], np.nan)
    adjusted = rule.adjusted(raw)
    flags = rule.flags(stats["psi"], raw)
    report: list[ColumnReport] = []
    for i, column in enumerate(columns):
        psi, js, ks = (float(stats[k][i]) for k in ("psi", "js", "ks"))
        entry: DriftColumnReport = {
            "name": column.name, "psi": _number(psi), "js": _number(js), "ks": _number(ks),
            "p_value": _number(float(adjusted[i])), "p_value_raw": _number(float(raw[i])),
            "tested": bool(stats["tested"][i]), "drifted": bool(flags[i]),
            "nan": int(live.nan[i]), "unseen": int(live.unseen[i]),
            "nan_ratio": _ratio(int(live.nan[i]), live.rows),
            "unseen_ratio": _ratio(int(live.unseen[i]), live.rows)}
        report.append(entry)
    return report


def _ratio(count: int, rows: int) -> float | None:
    return round(count / rows, 6) if rows else None


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)
