"""The one definition of agreement (SPEC 9), row by row: every output both answers have, exact
for integers, booleans and text, 1e-3 absolute or relative for floats, NaN equal to NaN."""

from __future__ import annotations

import numpy as np

from gateway.protocol.agreement import agreeing_rows, equal_values


def test_a_row_agrees_only_when_every_common_output_agrees_on_it() -> None:
    """A classifier's label and probabilities both count: the same label with probabilities
    0.2 apart is not the same answer."""
    served = {"label": np.array([0, 1, 1, 0]),
              "probabilities": np.array([[.9, .1], [.4, .6], [.2, .8], [.7, .3]], np.float32)}
    other = {"label": np.array([0, 0, 1, 0]),
             "probabilities": np.array([[.9, .1], [.6, .4], [.4, .6], [.7005, .2995]],
                                       np.float32)}
    assert agreeing_rows(served, other, 4).tolist() == [True, False, False, True]


def test_floats_agree_within_1e_3_absolute_or_relative_and_nan_equals_nan() -> None:
    a = np.array([0.0, 1.0, 1e6, 1e6, 1e-9, np.nan, np.inf, -np.inf, 2.0, np.nan])
    b = np.array([9e-4, 1.0011, 1e6 + 900, 1e6 + 1100, 2e-9, np.nan, np.inf, np.inf, np.nan,
                  1.0])
    assert equal_values(a, b).tolist() == [True, False, True, False, True, True, True, False,
                                           False, False]
    assert not equal_values(np.array([1e308]), np.array([np.inf])).any()
    # float32 against float64 of the same values, and an integer output against a float one
    assert equal_values(np.float32([0.1, 0.3]), np.float64([0.1, 0.3])).all()
    assert equal_values(np.array([1, 2]), np.array([1.0004, 2.5])).tolist() == [True, False]


def test_integers_booleans_and_text_are_compared_exactly() -> None:
    assert equal_values(np.array([1, 2]), np.array([1, 3])).tolist() == [True, False]
    assert equal_values(np.array([2**62 + 1]), np.array([2**62])).tolist() == [False]
    assert equal_values(np.array([True, False]), np.array([True, True])).tolist() == [True, False]
    words = np.array(["spam", "ham"], dtype=object)
    assert equal_values(words, np.array(["spam", "hams"])).tolist() == [True, False]
    assert not equal_values(np.array(["1"], dtype=object), np.array([1])).any()


def test_outputs_only_one_side_has_are_not_compared_and_none_in_common_agrees_nowhere() -> None:
    a = {"label": np.array([1, 0]), "extra": np.array([5.0, 6.0])}
    b = {"label": np.array([1, 1]), "other": np.array(["x", "y"], dtype=object)}
    assert agreeing_rows(a, b, 2).tolist() == [True, False]
    assert agreeing_rows({"y": np.zeros(2)}, {"z": np.zeros(2)}, 2).tolist() == [False, False]


def test_an_output_of_another_shape_agrees_nowhere_and_one_without_rows_counts_whole() -> None:
    assert not agreeing_rows({"y": np.zeros((2, 3))}, {"y": np.zeros((2, 4))}, 2).any()
    scalar = {"y": np.zeros((2, 1)), "bias": np.float64(0.5)}
    assert agreeing_rows(scalar, {**scalar, "bias": np.float64(0.5)}, 2).tolist() == [True] * 2
    assert agreeing_rows(scalar, {**scalar, "bias": np.float64(0.7)}, 2).tolist() == [False] * 2
    empty = {"y": np.zeros((0, 3))}
    assert agreeing_rows(empty, empty, 0).tolist() == []


def test_rows_are_judged_apart_in_requests_of_several_rows() -> None:
    """The issue's case: requests of four rows whose rows disagree one at a time; agreement is
    the share of rows, not of requests."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 4000)
    flipped = labels.copy()
    flipped[rng.choice(4000, 72, replace=False)] ^= 1  # 1.8% of rows
    agree = agreeing_rows({"label": labels}, {"label": flipped}, 4000)
    assert agree.mean() == 1 - 72 / 4000
    by_request = agree.reshape(1000, 4).all(axis=1).mean()
    assert by_request < 0.95 < agree.mean()
