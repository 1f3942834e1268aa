"""The shapes of the drift and feedback reports (README "Drift monitor" and docs/endpoints.md), as
mypy sees them.

They travel from the monitors to the services, the metric collectors and the endpoints, which
serialise them as they are: the keys are the JSON keys of `GET .../drift`.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class ColumnReport(TypedDict):
    """One feature or output against its reference profile."""

    name: str
    psi: float | None
    js: float | None
    ks: float | None
    p_value: float | None
    """How likely a difference this large is without drift (see drift.stats); None: no rows."""
    drifted: bool
    nan: int
    unseen: int
    nan_ratio: float | None
    unseen_ratio: float | None


class WindowReport(TypedDict):
    """A monitor's window: its size and every column's statistics."""

    window_rows: int
    reference_rows: int
    features: list[ColumnReport]
    outputs: list[ColumnReport]


class PerformanceReport(TypedDict):
    """A version's live performance over its last labelled rows (docs/endpoints.md)."""

    labelled_rows: int
    reference: float | None
    accuracy: NotRequired[float | None]
    """Classifiers."""
    mae: NotRequired[float | None]
    """Regressors."""


class DriftReport(WindowReport):
    """`GET /v2/models/{m}/versions/{v}/drift`."""

    model: str
    version: str
    dropped_rows: int
    performance: NotRequired[PerformanceReport]


class LabelsReport(TypedDict):
    """A model's label drift (docs/endpoints.md)."""

    window_rows: int
    psi: float | None
    js: float | None
    p_value: float | None
    drifted: bool
    unseen: int
