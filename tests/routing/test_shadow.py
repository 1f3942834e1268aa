from __future__ import annotations

import itertools

import numpy as np

from gateway.protocol.agreement import agreeing_rows
from gateway.routing.policy import ModelPolicy, ShadowEntry, TrafficEntry
from gateway.routing.shadow import (
    AGREE,
    DISAGREE,
    choose_shadows,
    compare_mirrors,
    request_results,
    row_results,
)


def test_choose_shadows_by_percent() -> None:
    policy = ModelPolicy((TrafficEntry(1, 100),), None, (),
                         (ShadowEntry(2, 100.0), ShadowEntry(3, 25.0), ShadowEntry(4, 0.0)))
    assert choose_shadows(policy, draw=lambda: 0.2) == [2, 3]
    assert choose_shadows(policy, draw=lambda: 0.3) == [2]
    assert choose_shadows(policy, draw=lambda: 0.99) == [2]


def test_every_common_output_is_compared_row_by_row() -> None:
    """The same label is not enough: probabilities 0.2 apart are another answer (SPEC 9); a
    probability 5e-4 off, or a NaN where the primary had NaN, is the same."""
    primary = {"label": np.array([1, 0, 1]),
               "probabilities": np.array([[0.1, 0.9], [0.8, 0.2], [np.nan, 0.5]])}
    shadow = {"label": np.array([1, 0, 1]),
              "probabilities": np.array([[0.1005, 0.8995], [0.6, 0.4], [np.nan, 0.5]])}
    assert compare_mirrors([primary], shadow, [3]).tolist() == [True, False, True]
    assert not compare_mirrors([{"y": np.array([1.0])}], {"y": np.array([1.0, 2.0])},
                               [1]).any()


def test_a_request_agrees_when_every_one_of_its_rows_does() -> None:
    agree = np.array([True, True, False, True, True, True, True, False])
    assert request_results(agree, [4, 0, 2, 2]) == [DISAGREE, AGREE, AGREE, DISAGREE]
    assert row_results(agree) == {AGREE: 6, DISAGREE: 2}


def test_merged_comparison_matches_one_comparison_per_mirror() -> None:
    """Over random mirrors of 1 to 4 rows: labels with probabilities, floats within and past
    tolerance, strings."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        rows = [int(r) for r in rng.integers(1, 5, rng.integers(1, 8))]
        total = sum(rows)
        kind = rng.integers(0, 3)
        if kind == 0:
            p = rng.random((total, 2))
            primary = {"label": rng.integers(0, 2, total), "p": p}
            shadow = {"label": np.where(rng.random(total) < 0.1, 1 - primary["label"],
                                        primary["label"]),
                      "p": p + rng.choice([0.0, 1e-2], size=(total, 2), p=[0.95, 0.05])}
        elif kind == 1:
            y = rng.random((total, 3))
            primary = {"y": y}
            shadow = {"y": y + rng.choice([0.0, 5e-4, 1e-2], size=(total, 3), p=[0.9, 0.05, 0.05])}
        else:
            words = np.array(["a", "b"], dtype=object)[rng.integers(0, 2, total)]
            primary = {"s": words}
            shadow = {"s": np.where(rng.random(total) < 0.2, "c", words).astype(object)}
        starts = np.concatenate(([0], np.cumsum(rows)))
        primaries = [{n: a[s:e] for n, a in primary.items()}
                     for s, e in itertools.pairwise(starts)]
        expected = np.concatenate([
            agreeing_rows(p, {n: a[s:e] for n, a in shadow.items()}, e - s)
            for p, s, e in zip(primaries, starts[:-1], starts[1:], strict=True)])
        assert compare_mirrors(primaries, shadow, rows).tolist() == expected.tolist()


def test_primaries_with_other_outputs_are_compared_one_by_one() -> None:
    """Mirrors of one shadow may come from two primary versions (a split) whose outputs differ:
    each is compared on the outputs it shares with the shadow."""
    primaries = [{"label": np.array([1])}, {"y": np.array([0.5]), "label": np.array([0])}]
    shadow = {"label": np.array([1, 1]), "y": np.array([0.5, 0.5])}
    assert compare_mirrors(primaries, shadow, [1, 1]).tolist() == [True, False]
    primaries[1]["label"] = np.array([1])
    assert compare_mirrors(primaries, shadow, [1, 1]).tolist() == [True, True]
