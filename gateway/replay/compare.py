"""What replay measures, as pure functions over arrays: does each row agree with what was served,
how accurate were the served and the replayed answers on labelled rows, and how sure is that.

Agreement (SPEC 10): a row agrees when it gets the same label (a model with a label output), else
when every output is within `TOLERANCE` of what was served (NaN agrees with NaN; text must be
equal). Requests are compared many at a time, their outputs concatenated along the batch
dimension, so the work per row is a few array operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gateway.tensors import Tensors

TOLERANCE = 1e-6
Z_95 = 1.959964


def agreeing_rows(served: Tensors, replayed: Tensors, rows: int,
                  label: str | None) -> np.ndarray:
    """One bool per row of `rows` rows whose outputs (concatenated along the batch dimension,
    or one request's) were served and replayed."""
    names = [label] if label is not None and label in served else list(served)
    agree = np.ones(rows, dtype=bool)
    for name in names:
        a, b = served[name], replayed.get(name)
        if b is None or a.shape != b.shape:
            agree[:] = False
            continue
        if a.dtype.kind in "OUS" or b.dtype.kind in "OUS":
            same = a.astype(str) == b.astype(str)
        elif a.dtype.kind in "biu" and b.dtype.kind in "biu":
            same = a == b
        else:
            x, y = a.astype(np.float64), b.astype(np.float64)
            with np.errstate(invalid="ignore"):
                same = (np.abs(x - y) <= TOLERANCE) | (np.isnan(x) & np.isnan(y))
        if a.ndim and a.shape[0] == rows:
            agree &= same.reshape(rows, -1).all(axis=1)
        elif not same.all():
            agree[:] = False
    return agree


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
