"""Shadow mode's decisions, pure: which shadows a request is mirrored to, whether a shadow's
outputs agree with the primary's, and the results they are counted by. The runner that mirrors
off the request path is gateway.observability.shadow."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from gateway.routing.policy import ModelPolicy
from gateway.tensors import Tensors

AGREE, DISAGREE, ERROR, DROPPED = "agree", "disagree", "error", "dropped"


def choose_shadows(policy: ModelPolicy, draw: Callable[[], float] = random.random) -> list[int]:
    """The shadow versions this request is mirrored to (each by its percent)."""
    return [s.version for s in policy.shadow if draw() * 100 < s.percent]


def compare_outputs(primary: Tensors, shadow: Tensors, label: str | None,
                    tolerance: float = 1e-3) -> bool:
    """Agree when the predicted labels are equal (classifiers, `label` names the output), else
    when every value of the first common output is within `tolerance` (absolute difference)."""
    if label is not None and label in primary and label in shadow:
        return bool(np.array_equal(primary[label], shadow[label]))
    name = next(n for n in primary if n in shadow)
    a, b = primary[name], shadow[name]
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "OUSb":
        return bool(np.array_equal(a, b))
    return bool(np.all(np.abs(a.astype(np.float64) - b.astype(np.float64)) <= tolerance))
