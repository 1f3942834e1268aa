from __future__ import annotations

import itertools

import numpy as np

from gateway.routing.policy import ModelPolicy, ShadowEntry, TrafficEntry
from gateway.routing.shadow import choose_shadows, compare_merged, compare_outputs


def test_choose_shadows_by_percent() -> None:
    policy = ModelPolicy((TrafficEntry(1, 100),), None, (),
                         (ShadowEntry(2, 100.0), ShadowEntry(3, 25.0), ShadowEntry(4, 0.0)))
    assert choose_shadows(policy, draw=lambda: 0.2) == [2, 3]
    assert choose_shadows(policy, draw=lambda: 0.3) == [2]
    assert choose_shadows(policy, draw=lambda: 0.99) == [2]


def test_classifiers_agree_on_the_label_regressors_within_tolerance() -> None:
    a = {"label": np.array([1, 0]), "probabilities": np.array([[0.1, 0.9], [0.8, 0.2]])}
    b = {"label": np.array([1, 0]), "probabilities": np.array([[0.4, 0.6], [0.6, 0.4]])}
    assert compare_outputs(a, b, "label")
    assert not compare_outputs(a, {**b, "label": np.array([1, 1])}, "label")
    assert compare_outputs({"y": np.array([1.0, 2.0])}, {"y": np.array([1.0005, 2.0])}, None)
    assert not compare_outputs({"y": np.array([1.0, 2.0])}, {"y": np.array([1.1, 2.0])}, None)
    assert not compare_outputs({"y": np.array([1.0])}, {"y": np.array([1.0, 2.0])}, None)


def test_merged_comparison_matches_one_comparison_per_mirror() -> None:
    """Over random mirrors of 1 to 4 rows: labels, probabilities within and past tolerance,
    strings, and a shadow whose outputs have another shape."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        rows = [int(r) for r in rng.integers(1, 5, rng.integers(1, 8))]
        total = sum(rows)
        kind = rng.integers(0, 3)
        if kind == 0:
            primary = {"label": rng.integers(0, 2, total), "p": rng.random((total, 2))}
            shadow = {"label": np.where(rng.random(total) < 0.1, 1 - primary["label"],
                                        primary["label"]), "p": rng.random((total, 2))}
            label: str | None = "label"
        elif kind == 1:
            y = rng.random((total, 3))
            primary, label = {"y": y}, None
            shadow = {"y": y + rng.choice([0.0, 5e-4, 1e-2], size=(total, 3), p=[0.9, 0.05, 0.05])}
        else:
            words = np.array(["a", "b"], dtype=object)[rng.integers(0, 2, total)]
            primary, label = {"s": words}, None
            shadow = {"s": np.where(rng.random(total) < 0.2, "c", words).astype(object)}
        starts = np.concatenate(([0], np.cumsum(rows)))
        primaries = [{n: a[s:e] for n, a in primary.items()}
                     for s, e in itertools.pairwise(starts)]
        expected = [compare_outputs(p, {n: a[s:e] for n, a in shadow.items()}, label)
                    for p, s, e in zip(primaries, starts[:-1], starts[1:], strict=True)]
        assert compare_merged(primaries, shadow, rows, label) == expected


def test_merged_comparison_of_primaries_with_other_outputs_goes_one_by_one() -> None:
    """Mirrors of one shadow may come from two primary versions (a split) whose outputs differ."""
    primaries = [{"label": np.array([1])}, {"y": np.array([0.5]), "label": np.array([0])}]
    shadow = {"label": np.array([1, 1]), "y": np.array([0.5, 0.5])}
    assert compare_merged(primaries, shadow, [1, 1], "label") == [True, False]
    assert compare_merged(primaries, shadow, [1, 1], None) == [True, True]
