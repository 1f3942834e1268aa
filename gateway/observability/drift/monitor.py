"""One model version's drift monitor: reference profile in, live rows folded in, report out.

Pure computation with no I/O beyond reading the profile; the service (`service.py`) feeds it off
the request path. `ingest` takes the feature matrix (rows × features, in the profile's order) and
the model's outputs by tensor name; output profiles name a tensor (`label`) or one of its columns
(`probabilities[1]`).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from gateway.observability.drift.histograms import Binner, Column, column_from_profile
from gateway.observability.drift.stats import drift_statistics
from gateway.observability.drift.window import SlidingWindow

_COLUMN = re.compile(r"^(.*)\[(\d+)\]$")


def _output_source(name: str) -> tuple[str, int | None]:
    match = _COLUMN.match(name)
    return (match.group(1), int(match.group(2))) if match else (name, None)


class DriftMonitor:
    def __init__(self, reference: dict[str, Any], window_rows: int = 5000) -> None:
        self.reference_rows = int(reference.get("rows", 0))
        self.feature_columns = [column_from_profile(p) for p in reference.get("features", [])]
        self.output_columns = [column_from_profile(p) for p in reference.get("outputs", [])]
        if not self.feature_columns:
            raise ValueError("the reference profile has no features")
        self.features = SlidingWindow(Binner(self.feature_columns), window_rows)
        self.outputs = (SlidingWindow(Binner(self.output_columns), window_rows)
                        if self.output_columns else None)
        self._sources = [_output_source(c.name) for c in self.output_columns]

    @classmethod
    def from_reference_file(cls, path: str | Path, window_rows: int = 5000) -> DriftMonitor:
        return cls(json.loads(Path(path).read_text()), window_rows)

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.feature_columns]

    def ingest(self, features: np.ndarray, outputs: dict[str, np.ndarray] | None = None) -> None:
        """Fold a batch in: `features` is rows × features; `outputs` by tensor name."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != len(self.feature_columns):
            raise ValueError(f"features have shape {list(features.shape)}; the profile has "
                             f"{len(self.feature_columns)} features")
        self.features.add(features)
        if self.outputs is not None and outputs:
            rows = features.shape[0]
            matrix = self._output_matrix(outputs, rows)
            if matrix is not None:
                self.outputs.add(matrix)

    def _output_matrix(self, outputs: dict[str, np.ndarray], rows: int) -> np.ndarray | None:
        columns = []
        for tensor, index in self._sources:  # one per output profile, a few at most
            array = outputs.get(tensor)
            if array is None or array.shape[0] != rows or array.dtype.kind not in "biuf":
                return None
            columns.append(array.reshape(rows, -1)[:, index or 0])
        return np.column_stack(columns)

    def report(self, psi_threshold: float = 0.2) -> dict[str, Any]:
        """Window size, reference size, and per feature and output: psi, js, ks, drifted."""
        doc: dict[str, Any] = {"window_rows": self.features.total().rows,
                               "reference_rows": self.reference_rows}
        doc["features"] = _column_report(self.features, self.feature_columns, psi_threshold)
        doc["outputs"] = (_column_report(self.outputs, self.output_columns, psi_threshold)
                          if self.outputs is not None else [])
        return doc


def _column_report(window: SlidingWindow, columns: list[Column],
                   psi_threshold: float) -> list[dict[str, Any]]:
    live = window.total()
    binner = window.binner
    stats = drift_statistics(binner.reference, live.bins, binner.offsets)
    report = []
    for i, column in enumerate(columns):
        psi, js, ks = (float(stats[k][i]) for k in ("psi", "js", "ks"))
        report.append({"name": column.name, "psi": _number(psi), "js": _number(js),
                       "ks": _number(ks), "drifted": bool(psi >= psi_threshold),
                       "nan": int(live.nan[i]), "unseen": int(live.unseen[i])})
    return report


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)
