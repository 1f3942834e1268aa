from __future__ import annotations

import numpy as np

from gateway.routing.policy import ModelPolicy, ShadowEntry, TrafficEntry
from gateway.routing.shadow import choose_shadows, compare_outputs


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
