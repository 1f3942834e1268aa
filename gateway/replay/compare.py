"""What replay measures, as pure functions over arrays: how accurate were the served and the
replayed answers on labelled rows, and how sure is that. Whether a row agrees with what was
served is the one definition the shadow and the rollout use too (gateway.protocol.agreement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gateway.tensors import Tensors

Z_95 = 1.959964


def predictions(outputs: Tensors, rows: int, label: str | None) -> np.ndarray:
    """The label output's value per row (None where it has no value per row)."""
    array = outputs.get(label) if label is not None else None
    if array is None or not array.ndim or array.shape[0] != rows:
        return np.full(rows, None, dtype=object)
    return array.reshape(rows, -1)[:, 0]


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    rows: int


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> Estimate:
    """Share of rows whose prediction equals the label, with a 95% Wilson interval."""
    correct = int(np.count_nonzero(_equal(predicted, labels)))
    n = len(labels)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    p = correct / n
    z2 = Z_95 * Z_95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def mean_absolute_error(predicted: np.ndarray, labels: np.ndarray) -> Estimate:
    """Mean absolute error with a 95% normal interval (a regressor's counterpart of accuracy)."""
    n = len(labels)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    errors = np.abs(predicted.astype(np.float64) - labels.astype(np.float64))
    mae = float(errors.mean())
    half = Z_95 * float(errors.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(mae, max(0.0, mae - half), mae + half, n)


def _equal(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(predicted.astype(np.float64) == labels.astype(np.float64))
    except (TypeError, ValueError):  # text classes
        return np.asarray(predicted.astype(str) == labels.astype(str))
