"""Predictions per row and accuracy with intervals, on arrays (agreement is
gateway.protocol.agreement's, tested in tests/protocol/test_agreement.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.replay.compare import accuracy, mean_absolute_error, predictions


def test_predictions_are_the_label_per_row_or_none() -> None:
    assert predictions({"label": np.array([[1], [0]])}, 2, "label").tolist() == [1, 0]
    assert predictions({"label": np.array([1])}, 2, "label").tolist() == [None, None]
    assert predictions({}, 2, None).tolist() == [None, None]


def test_accuracy_has_a_wilson_interval() -> None:
    estimate = accuracy(np.array([1] * 90 + [0] * 10), np.array([1] * 100))
    assert estimate.value == 0.9 and estimate.rows == 100
    assert estimate.low == pytest.approx(0.8256, abs=1e-3)  # Wilson, 95%
    assert estimate.high == pytest.approx(0.9448, abs=1e-3)
    text = accuracy(np.array(["spam", "ham"], dtype=object), np.array(["spam", "spam"],
                                                                      dtype=object))
    assert text.value == 0.5
    assert math.isnan(accuracy(np.array([]), np.array([])).value)


def test_mean_absolute_error_has_a_normal_interval() -> None:
    estimate = mean_absolute_error(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 4.0]))
    assert estimate.value == pytest.approx(0.375)
    assert estimate.low < 0.375 < estimate.high
