"""Shadow mode's decisions, pure: which shadows a request is mirrored to, whether a shadow's
outputs agree with the primary's, and the results they are counted by. The runner that mirrors
off the request path is gateway.observability.shadow."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

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


def compare_merged(primaries: Sequence[Tensors], shadow: Tensors, rows: Sequence[int],
                   label: str | None, tolerance: float = 1e-3) -> list[bool]:
    """`compare_outputs` of each mirror against its rows of one merged shadow call, in a few
    array operations instead of one comparison per mirror; every mirror has at least one row
    and the primaries are split from one merged call too, or at least share their outputs."""
    first = primaries[0]
    keys = tuple(first)
    if any(tuple(p) != keys for p in primaries):
        return _one_by_one(primaries, shadow, rows, label, tolerance)
    by_label = label is not None and label in first and label in shadow
    name = label if by_label else next(n for n in first if n in shadow)
    assert name is not None
    a = np.concatenate([p[name] for p in primaries])
    b = shadow[name]
    if a.shape != b.shape:
        return _one_by_one(primaries, shadow, rows, label, tolerance)
    if by_label or a.dtype.kind in "OUSb":
        same = a == b
        if not isinstance(same, np.ndarray) or same.shape != a.shape:
            return _one_by_one(primaries, shadow, rows, label, tolerance)
    else:
        same = np.abs(a.astype(np.float64) - b.astype(np.float64)) <= tolerance
    per_row = same.reshape(len(same), int(np.prod(same.shape[1:]))).all(axis=1)
    starts = np.concatenate(([0], np.cumsum(rows)[:-1]))
    return [bool(ok) for ok in np.logical_and.reduceat(per_row, starts)]


def _one_by_one(primaries: Sequence[Tensors], shadow: Tensors, rows: Sequence[int],
                label: str | None, tolerance: float) -> list[bool]:
    starts = np.concatenate(([0], np.cumsum(rows)))
    return [compare_outputs(primary, {n: r[start:end] for n, r in shadow.items()}, label,
                            tolerance)
            for primary, start, end in zip(primaries, starts[:-1], starts[1:], strict=True)]
