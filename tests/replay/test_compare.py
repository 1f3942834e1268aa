"""Agreement per row and accuracy with intervals, on arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.replay.compare import accuracy, agreeing_rows, mean_absolute_error, predictions


def test_rows_agree_on_the_label_when_there_is_one() -> None:
    served = {"label": np.array([0, 1, 1]), "probabilities": np.array([[.9, .1], [.4, .6],
                                                                        [.2, .8]])}
    replayed = {"label": np.array([0, 0, 1]), "probabilities": np.array([[.5, .5], [.6, .4],
                                                                          [.2, .8]])}
    assert agreeing_rows(served, replayed, 3, "label").tolist() == [True, False, True]


def test_without_a_label_every_output_must_be_within_the_tolerance() -> None:
    served = {"score": np.array([[1.0, np.nan], [2.0, 3.0]], np.float32),
              "name": np.array(["a", "b"], dtype=object)}
    replayed = {"score": np.array([[1.0 + 5e-7, np.nan], [2.0, 3.1]], np.float32),
                "name": np.array(["a", "b"], dtype=object)}
    assert agreeing_rows(served, replayed, 2, None).tolist() == [True, False]
    replayed["name"] = np.array(["a", "c"], dtype=object)
    assert agreeing_rows(served, replayed, 2, None).tolist() == [True, False]


def test_an_output_missing_or_shaped_otherwise_agrees_nowhere() -> None:
    served = {"y": np.zeros((2, 3))}
    assert not agreeing_rows(served, {}, 2, None).any()
    assert not agreeing_rows(served, {"y": np.zeros((2, 4))}, 2, None).any()


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
